"""Process-wide memory settings for runs of large arrays, made once by ``credsim``.

A run at the study's scale allocates and frees arrays of a million entries every week.
Two defaults of the platform make that slower than it needs to be on Linux, and
:func:`tune` changes both for the calling process (and, through the environment, for the
worker processes it starts); the results do not change, only the time.

* **Huge pages.** numpy asks the kernel to back every large array with 2 MB transparent
  huge pages (``madvise``). Where the kernel compacts memory to find such a page at its
  first touch (``transparent_hugepage/defrag = madvise``), or where a virtual machine's
  host supplies fresh memory lazily, that first touch can cost milliseconds a page once
  memory is fragmented: building a model of 880,000 learners then took 4 to 8 s
  instead of 1.5 to 1.8 s on a shared 2-core virtual machine, where a fresh 1 GB array
  took 16 s to fill with huge pages and 0.8 s without. With small pages there is no such stall.
  numpy reads the switch, ``NUMPY_MADVISE_HUGEPAGE``, when it is imported; a value set in
  the environment wins over this module's default of ``0``.
* **Freed memory.** glibc returns freed memory at the top of its heaps to the kernel
  once a few megabytes are free, and serves arrays above a threshold it moves as it goes
  with fresh memory maps; either way the next week's arrays fault their pages in again
  (40,000 to 140,000 page faults over the weekly steps of an 880,000-learner run).
  Serving arrays up to 32 MB from the heap and keeping up to 256 MB of freed memory for
  reuse (:data:`MALLOC_SETTINGS`) removes nearly all of them, for about 5% more peak
  memory. The settings are glibc's own environment variables, so a value set in the
  environment wins here too.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["HUGEPAGE_VAR", "MALLOC_SETTINGS", "keep_freed_memory", "small_pages", "tune"]

#: numpy's switch for ``madvise``-ing large arrays into huge pages (read at its import).
HUGEPAGE_VAR = "NUMPY_MADVISE_HUGEPAGE"
#: glibc's malloc settings: environment variable (read when a process starts), the
#: ``mallopt`` parameter that makes the same setting in a running process, the value.
MALLOC_SETTINGS = (
    ("MALLOC_MMAP_THRESHOLD_", -3, 32 * 2**20),  # arrays up to 32 MB from the heap
    ("MALLOC_TRIM_THRESHOLD_", -1, 256 * 2**20),  # keep up to 256 MB freed for reuse
    ("MALLOC_TOP_PAD_", -2, 64 * 2**20),  # grow the heap in 64 MB steps
)


def small_pages() -> bool:
    """Back this process's new large arrays with ordinary pages, unless the environment
    says otherwise (``NUMPY_MADVISE_HUGEPAGE=1``), and pass the choice on to child
    processes through the environment. Returns whether huge pages are off."""
    import numpy as np  # here: ``credsim --help`` imports this module, not numpy

    os.environ.setdefault(HUGEPAGE_VAR, "0")
    off = os.environ[HUGEPAGE_VAR] == "0"
    switch = getattr(getattr(np, "_core", None), "multiarray", None)
    switch = getattr(switch, "_set_madvise_hugepage", None)
    if switch is not None:
        switch(not off)
    return off


def keep_freed_memory() -> bool:
    """Make :data:`MALLOC_SETTINGS` in this process (``mallopt``) and, through the
    environment, in the child processes it starts; a setting already in the environment
    is left as it is (glibc applied it at start-up). A no-op off Linux and off glibc.
    Returns whether every setting this call made took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own C library
    except (OSError, AttributeError):
        return False
    ok = True
    for var, param, value in MALLOC_SETTINGS:
        if var not in os.environ:
            os.environ[var] = str(value)
            ok = bool(mallopt(param, value)) and ok
    return ok


def tune() -> None:
    """Both settings, for a process about to run models (``credsim`` does it first)."""
    small_pages()
    keep_freed_memory()
