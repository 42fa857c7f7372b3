"""credsim: credential sharing, visibility and signalling on a professional network."""

__version__ = "0.1.0"
