"""Where the project's files are: the project root and the scenario files.

Shared by the command line (:mod:`sim.cli`), the app (:mod:`sim.app`) and the
analysis (:mod:`sim.analysis`), so that none of them imports another for a path.
"""

from __future__ import annotations

from pathlib import Path

from sim.params import ScenarioError

__all__ = ["PROJECT_ROOT", "resolve_scenario"]

#: The project root: the folder holding the ``sim`` package (and ``scenarios/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def resolve_scenario(name_or_path: str | Path) -> Path:
    """The scenario file for a path or a bare name.

    An existing file is used as given. Otherwise a bare name (``small`` or
    ``small.toml``, no folder part) is looked up as ``scenarios/<name>.toml`` in the
    current directory, then in the project root next to the ``sim`` package.

    Raises
    ------
    ScenarioError
        Nothing matches; the message lists the places tried and the names available.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent != Path(".") or path.suffix not in ("", ".toml"):
        raise ScenarioError(f"{path}: no such scenario file")
    stem = path.stem if path.suffix == ".toml" else path.name
    folders = list(dict.fromkeys([Path.cwd() / "scenarios", PROJECT_ROOT / "scenarios"]))
    for folder in folders:
        candidate = folder / f"{stem}.toml"
        if candidate.is_file():
            return candidate
    names = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.toml")})
    tried = ", ".join(str(f / f"{stem}.toml") for f in folders)
    known = f"; known scenarios: {', '.join(names)}" if names else ""
    raise ScenarioError(f"{name_or_path}: no such scenario file or name (tried {tried}){known}")
