"""Figures, tables and conclusions of the policy experiments (the sweeps of experiments/sweeps).

    uv run python experiments/analyze.py [--results results/sweeps] [--out results/figures]
                                         [--only NAME ...]

For each experiment whose sweep results exist (``<results>/<name>/results.parquet``, as
written by ``credsim sweep experiments/sweeps/<name>.toml``) this draws the figures
(300-dpi PNG and SVG into ``--out``, with the data behind a figure as CSV beside it where
the analysis gives it), prints a short table and a one-paragraph conclusion; missing
experiments are skipped with a message. The analysis itself, one module per experiment,
is :mod:`sim.analysis` (notebooks 03 and 04 use it too); this script only reads the
arguments, calls it and prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.analysis import EXPERIMENTS, analyze_experiment, load_experiment, save_figures


def main(argv: Sequence[str] | None = None) -> int:
    """``python experiments/analyze.py``: analyse the sweeps that exist."""
    p = argparse.ArgumentParser(
        description="Figures, tables and conclusions of the policy experiments "
        "(experiments/sweeps/*.toml); missing sweeps are skipped."
    )
    p.add_argument(
        "--results",
        type=Path,
        default=Path("results/sweeps"),
        help="folder of the sweep results (default: results/sweeps)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("results/figures"),
        help="folder for the figures, PNG and SVG (default: results/figures)",
    )
    p.add_argument(
        "--only",
        action="append",
        choices=EXPERIMENTS,
        metavar="NAME",
        help=f"analyse only this experiment (repeatable): {', '.join(EXPERIMENTS)}",
    )
    args = p.parse_args(argv)
    names = list(dict.fromkeys(args.only or EXPERIMENTS))
    n = 0
    for name in names:
        res = load_experiment(name, args.results)
        if res is None or res.n_ok == 0:
            why = "no results" if res is None else "no finished task"
            print(
                f"skip {name}: {why} in {args.results / name} (run `uv run credsim "
                f"sweep experiments/sweeps/{name}.toml`)"
            )
            continue
        a = analyze_experiment(name, res)
        print(f"\n== {res.describe()}")
        paths = save_figures(a, args.out)
        print(f"figures: {', '.join(str(path) for path in paths)}")
        print(a.report())
        n += 1
    print(
        f"\n{n} of {len(names)} experiment(s) analysed" + (f"; figures in {args.out}" if n else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
