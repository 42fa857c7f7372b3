"""Reduced-scale versions of the experiments, for readers without the full-scale results.

:func:`small_sweep` cuts a sweep file of ``experiments/sweeps/`` down (fewer learners,
more of them matched, fewer replications, a coarser grid); :func:`run_small` runs it
and loads the results (resumable, one folder per setting); :func:`load_or_run_small`
prefers the full-scale results of ``credsim sweep`` when they exist. Notebooks 03 and 04
use them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tomllib
from pathlib import Path
from typing import Any

from sim import scenarios
from sim.analysis.common import (
    PROJECT_ROOT,
    SWEEPS_DIR,
    SweepResults,
    load_experiment,
    load_results,
)

__all__ = ["SMALL_DIR", "load_or_run_small", "run_small", "small_sweep"]

logger = logging.getLogger(__name__)

#: Where :func:`run_small` keeps its reduced-scale runs (git-ignored, like results/).
SMALL_DIR = PROJECT_ROOT / "results" / "notebook_sweeps"


def small_sweep(
    name: str,
    *,
    n_learners: int = 30_000,
    matched_share: float = 0.3,
    replications: int = 2,
    grid_points: int | None = None,
    sweeps_dir: str | Path = SWEEPS_DIR,
):
    """A reduced-scale version of ``experiments/sweeps/<name>.toml`` (not run).

    The same design with ``population.n_learners`` and ``population.matched_share`` set
    (more of a smaller population matched, so each study still has thousands of matched
    learners), ``replications`` per point, and every ``grid`` (or longer list of
    ``values``) cut to ``grid_points`` values (same ends) when given. The base ``paper``
    falls back to ``baseline`` until ``credsim calibrate`` has written it. Returns a
    validated :class:`sim.sweep.SweepSpec` named ``<name>_small``.
    """
    import tomli_w  # imported here: only this function writes TOML

    from sim import sweep

    path = Path(sweeps_dir) / f"{name}.toml"
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    sw = dict(data["sweep"])
    base = sw["base"]
    if "/" not in base and not base.endswith(".toml") and base not in scenarios.names():
        base = "baseline"
    sw.update(
        name=f"{name}_small",
        base=base,
        replications=replications,
        description=f"Reduced scale ({n_learners:,} learners, matched share "
        f"{matched_share}) of {path.name}: {sw.get('description', '')}",
    )
    sw["overrides"] = {
        **sw.get("overrides", {}),
        "population.n_learners": n_learners,
        "population.matched_share": matched_share,
    }
    params = {}
    for key, spec in data.get("parameters", {}).items():
        spec = dict(spec)
        if grid_points is not None and "grid" in spec:
            lo, hi, _ = spec["grid"]
            spec["grid"] = [lo, hi, grid_points]
        elif grid_points is not None and len(spec.get("values", ())) > grid_points:
            vals = spec["values"]  # evenly spaced picks, the ends kept
            last, steps = len(vals) - 1, max(grid_points - 1, 1)
            keep = sorted({round(i * last / steps) for i in range(grid_points)})
            spec["values"] = [vals[i] for i in keep]
        params[key] = spec
    doc = {
        "sweep": sw,
        "parameters": params,
        **({"sample": data["sample"]} if "sample" in data else {}),
    }
    text = f"# Written by sim.analysis.small_sweep from {path.name}.\n" + tomli_w.dumps(doc)
    return sweep.parse_sweep(text, source=f"{path} (reduced scale)", folder=path.parent)


def run_small(
    name: str,
    *,
    workers: int | None = None,
    executor: Any = None,
    out_root: str | Path = SMALL_DIR,
    **kwargs: Any,
) -> SweepResults:
    """Run :func:`small_sweep` (``kwargs`` go to it) and load its results.

    The folder is ``<out_root>/<name>_small-<hash of the sweep and its base>``: a rerun
    with the same settings resumes (finished tasks are not run again), other settings
    get their own folder. The tasks run on ``executor`` when given (left open, so that
    several sweeps can share one pool), else on ``workers`` local processes (default:
    up to 2; with 1 they run in this process). Progress goes to this module's logger.
    """
    import contextlib
    from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

    from sim import sweep

    spec = small_sweep(name, **kwargs)
    # the sweep as read back (not its text, which depends on the TOML writer) and its base
    design = json.dumps(spec.data, sort_keys=True, default=str) + spec.base.to_toml()
    digest = hashlib.sha256(design.encode()).hexdigest()[:10]
    out = Path(out_root) / f"{spec.name}-{digest}"
    say = logger.info
    say(
        f"{spec.name}: {spec.n_points} points x {spec.replications} replication(s), "
        f"{spec.base.population.n_learners:,} learners, base {spec.base_ref!r} -> {out}"
    )

    def progress(done: int, total: int) -> None:
        if done and (done == total or done % max(1, total // 4) == 0):
            say(f"  {done}/{total} tasks")

    with contextlib.ExitStack() as stack:
        if executor is None:
            workers = workers or min(2, os.cpu_count() or 1)
            if workers > 1:
                import multiprocessing

                executor = stack.enter_context(
                    ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
                )
            else:
                executor = stack.enter_context(ThreadPoolExecutor(1))
        outcome = sweep.run_sweep(
            spec,
            out,
            executor,
            progress=progress,
            log=say,
            executor_info="sim.analysis.run_small",
        )
    if outcome.failed:
        logger.warning(f"  {len(outcome.failed)} task(s) failed; see {out}/tasks")
    res = load_results(
        out,
        name=name,
        label="a reduced-scale version run here (sim.analysis.run_small), NOT the full-scale sweep",
    )
    assert res is not None  # run_sweep always writes results.parquet
    return res


def load_or_run_small(
    name: str,
    results_dir: str | Path = PROJECT_ROOT / "results" / "sweeps",
    **small: Any,
) -> SweepResults:
    """The full-scale results of ``name`` if ``credsim sweep`` has written them, else a
    reduced-scale version run now (:func:`run_small` with ``small``); logs which."""
    say = logger.info
    res = load_experiment(name, results_dir)
    if res is not None and res.n_ok:
        say(f"{name}: using the full-scale sweep results in {res.folder}")
        return res
    say(
        f"{name}: no sweep results in {Path(results_dir) / name}; running a reduced-scale "
        "version instead"
    )
    return run_small(name, **small)
