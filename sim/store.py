"""Writing run results to disk: the run folder, its manifest and its headline summary.

A run folder holds everything needed to know what produced it::

    scenario.toml     the resolved scenario, every parameter explicit
    manifest.json     seed, package versions, git commit, platform, command, timestamp
    series.parquet    the weekly time series
    learners.parquet  one row per learner: traits, assignment and final state
    hires.parquet     every hire of a learner (background fills are counted in the series)
    summary.json      the headline numbers of :func:`summarize`

Folders are written through :func:`atomic_run_dir`, so a folder under its final name is
always complete: an interrupted or failed write leaves nothing behind.

Nothing here reads ``sys.argv`` or a clock: the caller (``sim.cli``) passes the
timestamp and the command line in. The only outside process is ``git`` (for the commit
of the checkout the package lives in).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # sim.model pulls in mesa and networkx; only the types are needed here
    from sim.model import RunResult
    from sim.params import Scenario

__all__ = [
    "RUN_FILES",
    "atomic_run_dir",
    "git_info",
    "jsonable",
    "manifest",
    "package_versions",
    "safe_name",
    "summarize",
    "write_run",
]

#: The files :func:`write_run` writes, in order.
RUN_FILES = (
    "scenario.toml",
    "manifest.json",
    "series.parquet",
    "learners.parquet",
    "hires.parquet",
    "summary.json",
)

#: Distributions whose versions a manifest records (when installed).
_PACKAGES = (
    "credsim",
    "numpy",
    "pandas",
    "mesa",
    "networkx",
    "scipy",
    "statsmodels",
    "scikit-learn",
    "pyarrow",
    "pydantic",
)

#: The checkout the package lives in (the folder holding ``sim/``).
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


# ---- provenance ---------------------------------------------------------------------


def package_versions(names: Sequence[str] = _PACKAGES) -> dict[str, str]:
    """Installed version of each distribution in ``names``; missing ones are left out."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_info(root: str | Path = _PROJECT_ROOT) -> dict[str, Any]:
    """The git commit of the checkout at ``root`` and whether it has uncommitted changes.

    ``commit`` is ``"unknown"`` (and ``dirty`` ``None``) when git is not installed or
    ``root`` is not the top of a git checkout (e.g. the package was installed into a
    virtual environment that happens to sit inside some other repository). ``dirty``
    counts modified tracked files and untracked files that are not git-ignored.
    """
    root = Path(root).resolve()
    unknown: dict[str, Any] = {"commit": "unknown", "dirty": None}
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != root:
        return unknown
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:  # a repository without commits
        return unknown
    status = _git(root, "status", "--porcelain")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def manifest(
    scenario: Scenario,
    seed: int | np.random.SeedSequence,
    extra: Mapping[str, Any] | None = None,
    *,
    timestamp: str | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Provenance of one run, as a JSON-ready dict.

    Parameters
    ----------
    scenario:
        The resolved scenario (its name is recorded; the full scenario goes to
        ``scenario.toml`` next to the manifest).
    seed:
        The root seed the run actually used. A ``SeedSequence`` (e.g. one replication of
        ``SeedSequence.spawn``) is recorded as its entropy plus ``spawn_key``, since the
        entropy alone is shared by all its siblings.
    extra:
        More entries (e.g. timings, the scenario's source file); they are added last
        and may override the keys above.
    timestamp:
        When the run was made (ISO 8601), read from the clock by the caller.
    command:
        The command line that made the run, as a list of words.
    """
    spawn_key: list[int] = []
    if isinstance(seed, np.random.SeedSequence):
        seed, spawn_key = seed.entropy, list(seed.spawn_key)
    out: dict[str, Any] = {
        "seed": int(seed),
        "spawn_key": spawn_key,
        "scenario": scenario.meta.name,
        "timestamp": timestamp,
        "command": list(command) if command is not None else None,
        "git": git_info(),
        "python": sys.version.split()[0],
        "packages": package_versions(),
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "python_implementation": platform.python_implementation(),
        },
    }
    if extra:
        out.update(extra)
    return out


# ---- the run folder -------------------------------------------------------------------


def safe_name(name: str) -> str:
    """A scenario name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "scenario"


def _remove(path: Path) -> None:
    """Delete a file or folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_run_dir(final_path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Write a folder under a temporary name and give it its final name only at the end.

    Yields an empty sibling folder ``.<name>.partial-<pid>``. When the block finishes
    without error it is renamed to ``final_path``; on any error, including
    ``KeyboardInterrupt``, the partial folder is deleted and the exception re-raised,
    so a folder under ``final_path`` is always complete.

    Parameters
    ----------
    final_path:
        The folder to create. Its parent folders are created as needed.
    overwrite:
        Replace an existing ``final_path``: the new folder is written first, the old one
        renamed aside, the new one renamed in, then the old one deleted (if the last
        rename fails, the old folder is put back).

    Raises
    ------
    FileExistsError
        ``final_path`` exists (checked on entry and again before the rename) and
        ``overwrite`` is false.
    """
    final = Path(final_path)
    if final.exists() and not overwrite:
        raise FileExistsError(f"{final} already exists (pass overwrite=True to replace it)")
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    _remove(partial)  # a leftover of an earlier process with the same pid
    partial.mkdir()
    try:
        yield partial
        if not final.exists():
            partial.rename(final)
            return
        if not overwrite:
            raise FileExistsError(f"{final} appeared while the run was being written")
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        _remove(old)
        final.rename(old)
        try:
            partial.rename(final)
        except BaseException:
            old.rename(final)
            raise
        _remove(old)
    except BaseException:
        _remove(partial)
        raise


def jsonable(obj: Any) -> Any:
    """NaN and infinities as ``null``, numpy scalars as Python numbers."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    text = json.dumps(jsonable(data), indent=2, allow_nan=False, default=str)
    path.write_text(text + "\n", encoding="utf-8")


def write_run(result: RunResult, path: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write one run's files (:data:`RUN_FILES`) into the existing folder ``path``.

    ``path`` is normally the folder yielded by :func:`atomic_run_dir`. Returns it.
    """
    path = Path(path)
    (path / "scenario.toml").write_text(result.scenario.to_toml(), encoding="utf-8")
    _write_json(path / "manifest.json", manifest)
    for name, table in (
        ("series", result.series),
        ("learners", result.learners),
        ("hires", result.hires),
    ):
        write_parquet(table, path / f"{name}.parquet")
    _write_json(path / "summary.json", summarize(result))
    return path


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df.to_parquet`` without an index, dictionary-encoding only the columns that
    can profit: not floats nor 64-bit integers, whose values are nearly all distinct
    (Arrow would build each one's dictionary and then drop it: half the writing time of
    the learners table, and a larger file)."""

    def distinct(dtype: Any) -> bool:
        if pd.api.types.is_float_dtype(dtype):
            return True
        if pd.api.types.is_integer_dtype(dtype):
            return np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize >= 8
        return False

    keep = [str(c) for c, t in df.dtypes.items() if not distinct(t)]
    df.to_parquet(path, index=False, use_dictionary=keep)


# ---- the headline numbers -----------------------------------------------------------


def _rate(flag: pd.Series, among: pd.Series) -> float:
    """Mean of ``flag`` among the rows where ``among`` holds (NaN if there are none)."""
    k = int(among.sum())
    return float(flag[among].sum()) / k if k else math.nan


def summarize(result: RunResult) -> dict[str, Any]:
    """The headline numbers of one run (a run summary, not the study's estimator).

    Rates are shares in [0, 1]; ``*_diff_pp`` is the naive difference treated − control
    in percentage points. By arm, in the matched sample (the learners whose profile the
    study observes):

    * ``shared``: share who shared the credential by the collection date;
    * ``new_job``: share with a new job that counts and is reported on the profile by the
      collection date (``seen_job_week`` set);
    * ``new_job_in_scope``: the same for tech or managerial jobs.

    By arm, in the whole population: ``any_view``, share whose certificate was viewed at
    least once (own views excluded). Market totals: final employment rate, hires of
    learners and of background applicants, mean open vacancies per week.
    """
    lf, series, hires = result.learners, result.series, result.hires
    treated = lf["treated"].astype(bool)
    matched = lf["matched"].astype(bool)
    mt, mc = matched & treated, matched & ~treated
    out: dict[str, Any] = {
        "scenario": result.scenario.meta.name,
        "seed": int(result.seed),
        "learners": len(lf),
        "matched_learners": int(matched.sum()),
        "matched_treated": int(mt.sum()),
        "matched_control": int(mc.sum()),
        "weeks": len(series),
        "followup_weeks": result.scenario.calendar.n_weeks,
    }
    rates = {
        "shared": (lf["shared"].astype(bool), mt, mc),
        "new_job": (lf["seen_job_week"].notna(), mt, mc),
        "new_job_in_scope": (lf["seen_scope_job_week"].notna(), mt, mc),
        "any_view": (lf["views"] > 0, treated, ~treated),
    }
    for name, (flag, t, c) in rates.items():
        rt, rc = _rate(flag, t), _rate(flag, c)
        out[f"{name}_treated"] = rt
        out[f"{name}_control"] = rc
        out[f"{name}_diff_pp"] = 100.0 * (rt - rc)
    out["employment_final"] = float(lf["employed"].mean()) if len(lf) else math.nan
    out["hires_learners"] = len(hires)  # the hires log holds learners' hires only
    out["hires_background"] = int(series["hires_background"].sum()) if len(series) else 0
    out["vacancies_open_mean"] = float(series["vacancies_open"].mean()) if len(series) else math.nan
    out.update({f"flow_{k}": v for k, v in result.flows.items()})
    return out
