"""Benchmark: where the time of one run goes, and how it grows with population size.

Every measurement runs in a fresh child process (BLAS/OpenMP threads set to 1 before
numpy is imported; the model itself uses a second core, if there is one, for the graph
and for recruiter search: :func:`sim.model.second_core`), so start-up is measured as a
user meets it and peak RSS is that run's alone. A child does what ``credsim run`` does,
through public API only:

1. start-up: interpreter and the imports of ``credsim run`` (``sim.cli``, ``sim.model``,
   ``sim.store``), counted from the process's start; then the process settings ``credsim``
   makes before any command (:func:`sim.process.tune`: small pages, freed memory kept);
2. build: ``CredentialMarket(scenario, rng=seed, agents=False)``;
3. steps: ``model.step()`` while ``model.running`` (burn-in and follow-up weeks);
4. result: ``model.result()`` (the series, per-learner and hires tables);
5. write: ``sim.store.write_run`` of that result (Parquet) into a temporary run folder,
   with its manifest, as ``credsim run`` writes it.

The build is split further in a second child: the population (``draw_learners``,
``draw_employers``) and the graph (``build_graph``) drawn on their own, the rest being
the difference (assignment, initial state, vacancies). Times are wall seconds with CPU
seconds beside them: the CPU figures are the ones to compare on a shared machine.

The split is for the scenario's own size (baseline: 880,000 learners); the table after
it repeats the end-to-end child for each size; the last line is the growth exponent
(slope of log time against log size; 1 = linear).

    uv run python experiments/bench.py
    uv run python experiments/bench.py --sizes 40000,110000 --repeat 3
    uv run python experiments/bench.py --sizes none          # the split only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["DEFAULT_SIZES", "fit_exponent", "main", "measure", "measure_build"]

#: One core: set before numpy (imported only in the child, inside :func:`measure`).
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
for _var in _THREAD_VARS:
    os.environ[_var] = "1"

DEFAULT_SIZES = (40_000, 110_000, 220_000, 440_000, 880_000)
#: A scenario name or file, found by sim.scenarios (the packaged baseline by default).
DEFAULT_SCENARIO = Path("baseline")
_KIB = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB (Linux), B (macOS)


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _KIB / 1024


def _since_start() -> float:
    """Wall seconds since this process started (psutil; NaN without it)."""
    try:
        import psutil

        return time.time() - psutil.Process().create_time()
    except Exception:
        return math.nan


def _bytecode_cached(module) -> bool:
    """Whether ``module`` was loaded from cached bytecode (not compiled at import)."""
    spec = getattr(module, "__spec__", None)
    return bool(spec and spec.cached and Path(spec.cached).is_file())


class _Clock:
    """Wall and CPU time of consecutive phases."""

    def __init__(self) -> None:
        self.out: dict[str, float] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        self.out[f"{name}_s"] = wall - self._wall
        self.out[f"{name}_cpu_s"] = cpu - self._cpu
        self.out[f"{name}_peak_mib"] = _peak_mib()
        self._wall, self._cpu = wall, cpu


def _scenario(scenario_path: str | Path, n_learners: int | None):
    from sim import scenarios

    scenario = scenarios.load(scenario_path)
    if n_learners is not None:
        scenario = scenario.with_overrides(
            {"population.n_learners": n_learners}, source=f"{scenario_path} (bench)"
        )
    return scenario


def measure(scenario_path: str | Path, n_learners: int | None, seed: int = 0) -> dict:
    """One end-to-end run in this process, phase by phase (see the module docstring).

    Meant to run in a fresh process: start-up counts from the process's start and
    ``peak_rss_mib`` is the process's high-water mark.
    """
    import tempfile

    # What `credsim run` imports before it starts working.
    import numpy  # noqa: F401  (the rest imports it anyway; named for the bytecode check)
    import pandas

    import sim.cli  # noqa: F401
    from sim import process, store
    from sim.model import CredentialMarket

    process.tune()  # as `credsim` does before any command

    startup = {
        "startup_s": _since_start(),
        "startup_cpu_s": time.process_time(),
        "startup_peak_mib": _peak_mib(),
        "bytecode_cached": _bytecode_cached(pandas),
        "dont_write_bytecode": bool(sys.dont_write_bytecode),
    }
    scenario = _scenario(scenario_path, n_learners)
    clock = _Clock()
    model = CredentialMarket(scenario, rng=seed, agents=False)
    clock.lap("build")
    steps = 0
    while model.running:
        model.step()
        steps += 1
    clock.lap("steps")
    result = model.result()
    clock.lap("result")
    with tempfile.TemporaryDirectory(prefix="credsim-bench-") as tmp:
        meta = store.manifest(scenario, seed, extra={"bench": True})
        with store.atomic_run_dir(Path(tmp) / "run") as run_dir:
            store.write_run(result, run_dir, meta)
        clock.lap("write")
    out = {"n": len(result.learners), "steps": steps, **startup, **clock.out}
    phases = ("startup", "build", "steps", "result", "write")
    out["total_s"] = sum(out[f"{p}_s"] for p in phases)
    out["total_cpu_s"] = sum(out[f"{p}_cpu_s"] for p in phases)
    out["learner_weeks_per_s"] = (
        out["n"] * steps / out["steps_s"] if out["steps_s"] > 0 else math.nan
    )
    out["peak_rss_mib"] = _peak_mib()
    return out


def measure_build(scenario_path: str | Path, n_learners: int | None, seed: int = 0) -> dict:
    """The population and the graph drawn on their own, as a model of ``seed`` draws them."""
    from sim import process
    from sim.model import Streams, second_core
    from sim.network import build_graph
    from sim.population import draw_employers, draw_learners

    process.tune()
    scenario = _scenario(scenario_path, n_learners)
    streams = Streams(seed)
    clock = _Clock()
    learners = draw_learners(scenario, streams.rng("population"))
    employers = draw_employers(scenario, streams.rng("employers"))
    clock.lap("population")
    graph = build_graph(scenario, learners, employers, streams.rng("graph"), second_core())
    clock.lap("graph")
    return {
        "n": len(learners),
        "learner_links": graph.n_learner_links,
        "employer_links": graph.n_employer_links,
        **clock.out,
    }


def _best(runs: list[dict]) -> dict:
    """Best of repeated measurements: least time, most throughput, highest peak RSS."""
    out = dict(runs[0])
    for key in out:
        values = [r[key] for r in runs]
        if key.endswith("_s"):
            out[key] = min(values)
        elif key == "learner_weeks_per_s" or key.endswith("_mib"):
            out[key] = max(values)
    return out


def _run_child(mode: str, scenario: Path, n: int | None, seed: int) -> dict:
    cmd = [sys.executable, __file__, mode, "--scenario", str(scenario), "--seed", str(seed)]
    if n is not None:
        cmd += ["--n", str(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench: the {mode} child ({n or 'scenario size'}) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_exponent(sizes: list[float], times: list[float]) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _sizes(text: str) -> list[int]:
    if text.strip().lower() in ("none", "0", ""):
        return []
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        msg = f"expected comma-separated integers or 'none', got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if min(sizes) < 200:
        raise argparse.ArgumentTypeError("sizes must be integers >= 200")
    return sizes


def _fmt(r: dict, phase: str) -> str:
    return f"{r[f'{phase}_s']:.2f} ({r[f'{phase}_cpu_s']:.2f})"


def _split_table(e2e: dict, build: dict):
    from rich.table import Table

    table = Table(
        title=f"one run, {e2e['n']:,} learners, {e2e['steps']} weekly steps "
        "(wall s, CPU s in brackets; peak RSS so far)",
        title_justify="left",
    )
    for col in ("phase", "time s", "share", "peak RSS MiB"):
        table.add_column(col, justify="left" if col == "phase" else "right")

    def row(label: str, wall: float, cpu: float, peak: float | None) -> None:
        share = f"{100 * wall / e2e['total_s']:.0f}%" if e2e["total_s"] > 0 else ""
        table.add_row(
            label, f"{wall:.2f} ({cpu:.2f})", share, "" if peak is None else f"{peak:,.0f}"
        )

    cached = "cached" if e2e["bytecode_cached"] else "NOT cached: compiled at every start"
    row(
        f"start-up (interpreter, imports; bytecode {cached})",
        e2e["startup_s"],
        e2e["startup_cpu_s"],
        e2e["startup_peak_mib"],
    )
    row("build", e2e["build_s"], e2e["build_cpu_s"], e2e["build_peak_mib"])
    pop, graph = build["population_s"], build["graph_s"]
    pop_cpu, graph_cpu = build["population_cpu_s"], build["graph_cpu_s"]
    row("  population (learners, employers)", pop, pop_cpu, None)
    row(
        f"  graph ({build['learner_links']:,} + {build['employer_links']:,} links)",
        graph,
        graph_cpu,
        None,
    )
    row(
        "  rest (assignment, state, vacancies)",
        e2e["build_s"] - pop - graph,
        e2e["build_cpu_s"] - pop_cpu - graph_cpu,
        None,
    )
    row("steps", e2e["steps_s"], e2e["steps_cpu_s"], e2e["steps_peak_mib"])
    row("result (tables)", e2e["result_s"], e2e["result_cpu_s"], e2e["result_peak_mib"])
    row("write (manifest, Parquet)", e2e["write_s"], e2e["write_cpu_s"], e2e["write_peak_mib"])
    row("total", e2e["total_s"], e2e["total_cpu_s"], e2e["peak_rss_mib"])
    return table


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (parent), or one measurement (the ``--child-*`` modes)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated learner counts for the scaling table, or 'none' "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="scenario name or file (default: baseline); the split runs at its size, the table "
        "overrides n_learners",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed (default: 0)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="fresh processes per measurement; report the best (default: 1)",
    )
    p.add_argument("--no-split", action="store_true", help="only the scaling table")
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--child-run", action="store_true", help=argparse.SUPPRESS)
    mode.add_argument("--child-build", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child_run:
        print(json.dumps(measure(args.scenario, args.n, args.seed)))
        return 0
    if args.child_build:
        print(json.dumps(measure_build(args.scenario, args.n, args.seed)))
        return 0

    from rich.console import Console
    from rich.table import Table

    from sim.model import second_core

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 130)
    repeat = max(args.repeat, 1)
    console.print(
        f"scenario {args.scenario.name}, seed {args.seed}, agents off, BLAS/OpenMP "
        f"threads = 1, the model's second core {'on' if second_core() else 'off'}, "
        f"Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs visible, load average "
        f"{os.getloadavg()[0]:.1f}; best of {repeat}",
        markup=False,
    )

    def best(mode: str, n: int | None) -> dict:
        return _best([_run_child(mode, args.scenario, n, args.seed) for _ in range(repeat)])

    if not args.no_split:
        console.print("  running the split ...", markup=False)
        e2e, build = best("--child-run", None), best("--child-build", None)
        console.print(_split_table(e2e, build))
        if not e2e["bytecode_cached"]:
            console.print(
                "note: packages have no cached bytecode "
                f"(PYTHONDONTWRITEBYTECODE={'set' if e2e['dont_write_bytecode'] else 'unset'}"
                "), so every start compiles them again; `uv sync --compile-bytecode` "
                "caches it once.",
                markup=False,
            )

    if not args.sizes:
        return 0
    rows = []
    for n in args.sizes:
        console.print(f"  running {n:,} learners ...", markup=False)
        rows.append(best("--child-run", n))

    table = Table(
        title=f"by size, {rows[0]['steps']} weekly steps (one fresh process per size; "
        "wall s, CPU s in brackets)",
        title_justify="left",
    )
    for col in (
        "learners",
        "start-up",
        "build",
        "steps",
        "result+write",
        "total",
        "learner-weeks/s",
        "peak RSS MiB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['n']:,}",
            _fmt(r, "startup"),
            _fmt(r, "build"),
            _fmt(r, "steps"),
            f"{r['result_s'] + r['write_s']:.2f} ({r['result_cpu_s'] + r['write_cpu_s']:.2f})",
            _fmt(r, "total"),
            f"{r['learner_weeks_per_s']:,.0f}",
            f"{r['peak_rss_mib']:,.0f}",
        )
    console.print(table)
    if len(rows) >= 2:
        sizes = [r["n"] for r in rows]
        for label, suffix in (("wall", "_s"), ("CPU", "_cpu_s")):
            e = {
                k: fit_exponent(sizes, [r[f"{k}{suffix}"] for r in rows])
                for k in ("total", "build", "steps")
            }
            console.print(
                f"time growth exponent ({label} time; slope of log time vs log size): "
                f"total {e['total']:.2f} (build {e['build']:.2f}, steps {e['steps']:.2f})",
                markup=False,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
