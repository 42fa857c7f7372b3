"""Benchmark: the sweep runner's wall time with 1 and 2 local workers, and its overhead.

Three measurements of the same 100-task sweep (``experiments/sweeps/bench_small.toml``):

1. **in-process**: every task's study run by :func:`sim.sweep.task_rows` in one process,
   one after another, with no pool, no pickling and no files. The sum is the model's own
   time (build, 60 weeks, twins if any, the study's estimators).
2. **1 worker** and **2 workers**: ``credsim sweep FILE --workers N`` as a user runs it, in
   a fresh process, timed from the command's start to its exit (interpreter start, spawning
   and importing the workers, one atomic Parquet file per task, consolidation included).

It prints the wall times, the speed-up of 2 workers over 1, and the runner's overhead per
task: ``(wall with 1 worker - the tasks' own time in the worker) / tasks``, which does not
move with the machine's speed the way a difference from the in-process run does. BLAS
threads are pinned to 1, so one worker is one core. Run it on an idle machine.

    uv run python experiments/bench_sweep.py
    uv run python experiments/bench_sweep.py --tasks 20      # the first 20 tasks only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["in_process", "main", "timed_sweep"]

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SWEEP = ROOT / "experiments" / "sweeps" / "bench_small.toml"


def _subset(sweep_file: Path, n_tasks: int | None, folder: Path) -> Path:
    """The sweep file itself, or a copy with fewer replications (``n_tasks`` a multiple)."""
    if n_tasks is None:
        return sweep_file
    from sim.sweep import load_sweep

    spec = load_sweep(sweep_file)
    if n_tasks % spec.n_points:
        raise SystemExit(
            f"--tasks {n_tasks}: must be a multiple of the sweep's {spec.n_points} points"
        )
    text = sweep_file.read_text(encoding="utf-8")
    text = text.replace(
        f"replications = {spec.replications}", f"replications = {n_tasks // spec.n_points}", 1
    )
    path = folder / sweep_file.name
    path.write_text(text, encoding="utf-8")
    return path


def in_process(sweep_file: Path) -> tuple[float, list[float]]:
    """Run every task in this process, serially; (wall seconds, per-task seconds)."""
    from sim.sweep import expand, load_sweep, task_rows

    tasks = expand(load_sweep(sweep_file))
    per_task = []
    t0 = time.perf_counter()
    for task in tasks:
        t = time.perf_counter()
        task_rows(task)  # as in a worker: the task's warnings are recorded, not printed
        per_task.append(time.perf_counter() - t)
    return time.perf_counter() - t0, per_task


def timed_sweep(sweep_file: Path, workers: int, out: Path) -> dict[str, float]:
    """``credsim sweep`` in a fresh process; its wall time and the tasks' own times."""
    import pandas as pd

    cmd = [
        sys.executable,
        "-m",
        "sim.cli",
        "sweep",
        str(sweep_file),
        "--workers",
        str(workers),
        "--out",
        str(out),
    ]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    results = pd.read_parquet(out / "results.parquet")
    per_task = results.groupby("task_id")["wall_seconds"].first()
    return {"wall": wall, "task_sum": float(per_task.sum()), "tasks": len(per_task)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sweep", type=Path, default=DEFAULT_SWEEP, help="sweep file")
    parser.add_argument(
        "--tasks", type=int, default=None, help="run only this many tasks (fewer replications)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="credsim-bench-sweep-") as tmp:
        folder = Path(tmp)
        sweep_file = _subset(args.sweep, args.tasks, folder)
        print(
            f"{sweep_file.name}: {platform.python_implementation()} "
            f"{platform.python_version()}, {os.cpu_count()} cores",
            flush=True,
        )
        serial, per_task = in_process(sweep_file)
        n = len(per_task)
        print(
            f"in-process, no runner : {n} tasks in {serial:7.1f} s ({serial / n:.2f} s per task)",
            flush=True,
        )
        runs = {}
        for workers in (1, 2):
            out = folder / f"w{workers}"
            runs[workers] = r = timed_sweep(sweep_file, workers, out)
            shutil.rmtree(out)
            print(
                f"credsim sweep, {workers} worker{'s' if workers > 1 else ' '}: {n} tasks "
                f"in {r['wall']:7.1f} s (tasks' own time {r['task_sum']:.1f} s)",
                flush=True,
            )
    w1, w2 = runs[1]["wall"], runs[2]["wall"]
    overhead = (w1 - runs[1]["task_sum"]) / n
    drift = runs[1]["task_sum"] / serial - 1
    print(f"speed-up, 2 workers over 1: {w1 / w2:.2f}x")
    print(
        f"runner overhead per task (1 worker, wall minus the tasks' own time): "
        f"{overhead:.3f} s ({100 * overhead / (serial / n):.1f}% of a task)"
    )
    print(
        f"the tasks' own time in the worker vs in-process: {100 * drift:+.1f}% (first-task "
        "imports, and the machine's own speed drifting between the runs)"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tasks": n,
                    "in_process": serial,
                    "w1": w1,
                    "w2": w2,
                    "w1_tasks": runs[1]["task_sum"],
                    "w2_tasks": runs[2]["task_sum"],
                    "speedup": w1 / w2,
                    "overhead_per_task": overhead,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
