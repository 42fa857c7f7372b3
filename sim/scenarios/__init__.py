"""Scenario files: the ones that ship with credsim and the user's own, found in one place.

The packaged scenarios are the TOML files of this folder (``sim/scenarios/<name>.toml``,
inside the installed wheel too): ``paper`` (the calibrated study, written by ``credsim
calibrate``, the only file with calibrated numbers), ``baseline``, ``small``,
``no_nudge`` and ``no_channels`` (``[meta] base = "paper"`` plus their own differences,
written by ``experiments/make_scenarios.py``) and ``uncalibrated`` (the schema's
defaults: where calibration starts). Every command, the app, sweeps, notebooks and
scripts find scenarios through :func:`find` and read them through :func:`load`; nothing
else knows where they are.

A *reference* to a scenario is resolved so:

* an existing file, or a path with a folder part or a ``.toml`` suffix, is that file;
  a relative path is taken from ``folder`` (the folder of the file that refers to it:
  a sweep file's ``base``, a scenario's ``[meta] base``) or else from the current folder;
* a bare name (``small``) is looked up as ``<name>.toml`` in ``folder`` (next to the
  referring file), then in ``./scenarios/`` of the current folder (the user's own
  scenarios, which may also shadow a packaged name), then among the packaged files.
  So ``credsim run small`` works from any folder and after ``pip install``, and a
  packaged scenario always extends a packaged one;
* anything else is a :class:`~sim.params.ScenarioError` listing the known names.
"""

from __future__ import annotations

from pathlib import Path

from sim.params import Scenario, ScenarioError

__all__ = ["LOCAL", "PACKAGED", "find", "load", "names"]

#: The folder of the scenarios that ship with the package.
PACKAGED = Path(__file__).resolve().parent
#: The user's own scenarios: ``scenarios/`` of the current folder (relative on purpose).
LOCAL = Path("scenarios")


def names() -> list[str]:
    """Bare names of every scenario :func:`find` knows: the user's and the packaged."""
    folders = [f for f in (LOCAL, PACKAGED) if f.is_dir()]
    return sorted({p.stem for f in folders for p in f.glob("*.toml")})


def find(ref: str | Path, folder: str | Path | None = None) -> Path:
    """The scenario file of a path or a bare name (see the module docstring).

    Raises
    ------
    ScenarioError
        Nothing matches; the message names the reference, the places tried and the
        known scenario names.
    """
    path = Path(ref)
    base = Path(folder) if folder is not None else None
    here = base / path if base is not None and not path.is_absolute() else path
    if here.is_file():
        return here
    if path.parent != Path(".") or path.suffix not in ("", ".toml"):
        raise ScenarioError(f"no such scenario file '{here}'")
    stem = path.stem if path.suffix == ".toml" else path.name
    folders = [*([base] if base is not None else []), LOCAL, PACKAGED]
    tried = list(dict.fromkeys(f / f"{stem}.toml" for f in folders))
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise ScenarioError(
        f"no such scenario file or name '{ref}' (tried {', '.join(map(str, tried))}); "
        f"known scenarios: {', '.join(names())}"
    )


def load(ref: str | Path, folder: str | Path | None = None) -> Scenario:
    """Find and read a scenario (validated; ``[meta] base`` applied)."""
    return Scenario.from_toml(find(ref, folder))
