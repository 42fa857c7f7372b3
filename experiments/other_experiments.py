"""Other published experiments predicted out of sample by re-parametrizing the intervention.

For each experiment of :mod:`sim.analysis.other_experiments` (Athey & Palikot's Challenges
portfolios in Poland; Carranza et al.'s skill reports in South Africa, shown to employers
or not; Wheeler et al.'s LinkedIn training) this runs R twin replications of the
calibrated scenario with the experiment's mapping, then prints the model's prediction
beside the published number and writes the table, the mapping, the figure and its data::

    uv run python experiments/other_experiments.py --workers 2          # the full run
    uv run python experiments/other_experiments.py --learners 110000 --replications 1

The scenario is read when the script runs (default ``paper``), never copied. Results go
to ``--out`` (default ``results/other_experiments``) through the project's result store:
each finished task is written at once, and rerunning the same command resumes
(finished tasks are not run again). A folder made with another base scenario, mapping
or seed is refused: use another ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from sim import scenarios
from sim.analysis import other_experiments as ox
from sim.analysis.common import save_figures
from sim.cli import progress_bar
from sim.runner import Record, open_executor, open_store, run_tasks, scenario_record

#: Replications per experiment: a Student-t interval over 8 worlds (t = 2.36).
REPLICATIONS = 8
SEED = 20260413


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="paper", help="the calibrated scenario (default: paper)")
    p.add_argument(
        "--replications",
        type=int,
        default=REPLICATIONS,
        help=f"twin replications per experiment (default: {REPLICATIONS})",
    )
    p.add_argument(
        "--learners",
        type=int,
        default=None,
        help="learners per world (default: the scenario's, the study's scale)",
    )
    p.add_argument("--seed", type=int, default=SEED, help=f"master seed (default: {SEED})")
    p.add_argument("--workers", type=int, default=None, help="local worker processes")
    p.add_argument("--scheduler", default=None, help="address of a Dask scheduler instead")
    p.add_argument(
        "--only",
        action="append",
        choices=[e.key for e in ox.EXTERNAL],
        metavar="KEY",
        help="run only this experiment (repeatable)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/other_experiments"),
        help="result folder (default: results/other_experiments)",
    )
    args = p.parse_args(argv)
    from rich.console import Console

    console = Console(highlight=False)
    base = scenarios.load(args.scenario)
    extra = {"population.n_learners": args.learners} if args.learners else {}
    chosen = [e for e in ox.EXTERNAL if not args.only or e.key in args.only]
    tasks = ox.build_tasks(base, args.replications, args.seed, chosen, extra)
    # what the folder holds: the mapping of every experiment, the seed and the scale
    spec = {
        "seed": args.seed,
        "extra": extra,
        "experiments": {e.key: ox.overrides(e, base) for e in ox.EXTERNAL},
    }
    records = [
        Record(
            "other_experiments.json",
            json.dumps(spec, indent=2, default=str, sort_keys=True),
            "experiments/other_experiments.py",
            json.loads,
        ),
        scenario_record("base.toml", base, args.scenario),
    ]
    n = base.population.n_learners if not args.learners else args.learners
    console.print(
        f"{len(chosen)} experiment(s) x {args.replications} replication(s) = {len(tasks)} "
        f"twin tasks, {n:,} learners each, base {args.scenario!r} -> {args.out}",
        markup=False,
    )
    t0 = time.monotonic()
    with open_store(args.out, "other_experiments", records, {"seed": args.seed}) as store:
        done = sum(store.done(t) for t in tasks)
        if done:
            console.print(f"{done} of {len(tasks)} tasks already done; resuming", markup=False)
        with open_executor(args.workers, args.scheduler, in_process=True) as pool:
            try:
                with progress_bar(console, "tasks", len(tasks) - done) as advance:
                    run = run_tasks(
                        tasks,
                        store,
                        pool.executor,
                        ox.run_external,
                        progress=advance,
                        log=lambda msg: console.print(msg, markup=False),
                    )
            except KeyboardInterrupt:
                console.print(
                    f"interrupted: finished tasks are kept in {args.out}/tasks; rerun the "
                    "same command to run the rest",
                    markup=False,
                )
                return 130
        results = store.consolidate(tasks)
        store.record_session(
            {
                "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": list(sys.argv),
                "executor": pool.where,
                "ran": run.ran,
                "already_done": run.already_done,
                "failed": len(run.failed),
                "wall_seconds": round(time.monotonic() - t0, 3),
            }
        )
    ok = results[results["status"] == "ok"]
    walls = ok.groupby("task_id")["wall_seconds"].first()
    console.print(
        f"{run.ran} task(s) run in {time.monotonic() - t0:.1f} s on {pool.where} "
        f"(median {walls.median():.1f} s per task)"
        if len(walls)
        else "no finished task",
        markup=False,
    )
    a = ox.analyze(results)
    paths = save_figures(a, args.out)
    a.extra["table"].to_csv(args.out / "predictions.csv", index=False)
    a.extra["mapping"].to_csv(args.out / "mapping.csv", index=False)
    (args.out / "conclusions.md").write_text(a.conclusion + "\n", encoding="utf-8")
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        console.print(a.table.to_string(index=False), markup=False)
    console.print("\n" + a.conclusion, markup=False)
    console.print(
        f"\nwrote {', '.join(str(p) for p in paths)}, predictions.csv, mapping.csv and "
        f"conclusions.md in {args.out}",
        markup=False,
    )
    return 1 if run.failed else 0


if __name__ == "__main__":
    sys.exit(main())
