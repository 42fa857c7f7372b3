"""Benchmark: build and step time, throughput and peak memory against population size.

Each size runs in a fresh child process (so peak RSS is that size's alone) on one core
(BLAS/OpenMP threads set to 1 before numpy is imported). A child builds
``CredentialMarket(scenario, rng=seed, agents=True)`` -- population, graph and agent
views -- then steps it to the data-collection date (burn-in + follow-up weeks, from the
scenario's calendar), and reports wall times, learner-weeks per second of stepping and
``ru_maxrss``. The last line is the growth exponent: the slope of log time against log
size (1 = linear).

    uv run python experiments/bench.py
    uv run python experiments/bench.py --sizes 40000,110000
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

__all__ = ["DEFAULT_SIZES", "fit_exponent", "main", "measure"]

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


def measure(scenario_path: str | Path, n_learners: int, seed: int = 0) -> dict[str, float]:
    """Build and step one model in this process; return timings and peak RSS.

    Meant to run in a fresh process: ``peak_rss_mib`` is the process's high-water mark.
    """
    from sim import scenarios
    from sim.model import CredentialMarket

    scenario = scenarios.load(scenario_path).with_overrides(
        {"population.n_learners": n_learners}, source=f"{scenario_path} (bench)"
    )
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0, c0 = time.perf_counter(), time.process_time()
    model = CredentialMarket(scenario, rng=seed, agents=True)
    build, build_cpu = time.perf_counter() - t0, time.process_time() - c0
    steps = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while model.running:
        model.step()
        steps += 1
    step_time, step_cpu = time.perf_counter() - t0, time.process_time() - c0
    kib = 1 if sys.platform != "darwin" else 1 / 1024  # ru_maxrss: KiB (Linux), B (macOS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib
    return {
        "n": n_learners,
        "steps": steps,
        "build_s": build,
        "steps_s": step_time,
        "total_s": build + step_time,
        "build_cpu_s": build_cpu,
        "steps_cpu_s": step_cpu,
        "total_cpu_s": build_cpu + step_cpu,
        "learner_weeks_per_s": n_learners * steps / step_time if step_time > 0 else math.nan,
        "peak_rss_mib": peak / 1024,
        "rss_at_start_mib": rss_start * kib / 1024,
    }


def _best(runs: list[dict[str, float]]) -> dict[str, float]:
    """Best of repeated measurements: least time, most throughput, highest peak RSS."""
    out = dict(runs[0])
    for key in out:
        values = [r[key] for r in runs]
        if key.endswith("_s"):
            out[key] = min(values)
        elif key in ("learner_weeks_per_s", "peak_rss_mib"):
            out[key] = max(values)
    return out


def _run_child(scenario: Path, n: int, seed: int) -> dict[str, float]:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(n),
        "--scenario",
        str(scenario),
        "--seed",
        str(seed),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=os.environ.copy())
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"bench: the run with {n:,} learners failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def fit_exponent(sizes: list[float], times: list[float]) -> float:
    """Least-squares slope of log(time) on log(size)."""
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        msg = f"expected comma-separated integers, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None
    if not sizes or min(sizes) < 200:
        raise argparse.ArgumentTypeError("sizes must be integers >= 200")
    return sizes


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (parent) or one measurement (``--child N``)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--sizes",
        type=_sizes,
        default=list(DEFAULT_SIZES),
        help="comma-separated learner counts (default: %(default)s)",
    )
    p.add_argument(
        "--scenario",
        type=Path,
        default=DEFAULT_SCENARIO,
        help="scenario file or name whose n_learners is overridden (default: baseline)",
    )
    p.add_argument("--seed", type=int, default=0, help="root seed (default: 0)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="fresh processes per size; report the best (default: 1)",
    )
    p.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child is not None:
        print(json.dumps(measure(args.scenario, args.child, args.seed)))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 110)
    console.print(
        f"scenario {args.scenario.name}, seed {args.seed}, agents on, one core "
        f"(BLAS/OpenMP threads = 1), Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs visible, load average "
        f"{os.getloadavg()[0]:.1f}; best of {max(args.repeat, 1)}",
        markup=False,
    )
    rows = []
    for n in args.sizes:
        console.print(f"  running {n:,} learners ...", markup=False)
        rows.append(
            _best([_run_child(args.scenario, n, args.seed) for _ in range(max(args.repeat, 1))])
        )

    table = Table(
        title="credsim benchmark (one fresh process per size; wall s, CPU s in brackets)",
        title_justify="left",
    )
    for col in (
        "learners",
        "steps",
        "build s",
        "steps s",
        "total s",
        "learner-weeks/s",
        "peak RSS MiB",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            f"{r['n']:,}",
            f"{r['steps']}",
            f"{r['build_s']:.2f} ({r['build_cpu_s']:.2f})",
            f"{r['steps_s']:.2f} ({r['steps_cpu_s']:.2f})",
            f"{r['total_s']:.2f} ({r['total_cpu_s']:.2f})",
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
