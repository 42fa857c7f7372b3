"""Where the project's files are: the project root, and scenario files (through
:mod:`sim.scenarios`, the one place that finds them).

Shared by the command line (:mod:`sim.cli`), the app (:mod:`sim.app`) and the
analysis (:mod:`sim.analysis`), so that none of them imports another for a path.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PROJECT_ROOT", "resolve_scenario"]

#: The project root: the folder holding the ``sim`` package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_scenario(name_or_path: str | Path) -> Path:
    """The scenario file for a path or a bare name: :func:`sim.scenarios.find`.

    Raises
    ------
    ScenarioError
        Nothing matches; the message lists the places tried and the names available.
    """
    from sim import scenarios

    return scenarios.find(name_or_path)
