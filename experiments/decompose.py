"""Where the nudge's effect on jobs comes from: visibility, news of completion, content.

Runs the twin worlds of a scenario with channels switched off (:mod:`sim.mechanism`) and
prints the true effects; writes the table beside the figures::

    uv run python experiments/decompose.py                 # paper, seeds 1 and 2
    uv run python experiments/decompose.py --seeds 1,2,3,4 --scenario small
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pandas as pd

from sim.mechanism import decompose, share_of_effect
from sim.scenarios import load

OUT = Path(__file__).resolve().parent / "figures" / "mechanism.csv"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="paper", help="scenario name or file (default: paper)")
    p.add_argument("--seeds", default="1,2", help="comma-separated seeds (default: 1,2)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (default: 2)")
    p.add_argument("--out", type=Path, default=OUT, help=f"CSV to write (default: {OUT.name})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("sim").setLevel(logging.INFO)  # progress, not Mesa's every step
    seeds = [int(s) for s in args.seeds.split(",")]
    table = decompose(load(args.scenario), seeds, workers=args.workers)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    with pd.option_context("display.width", 160, "display.max_rows", 100):
        print(table.round(3).to_string(index=False))
    shares = share_of_effect(table)
    print(
        "share of the all-channels effect on a new job:",
        {k: round(v, 2) for k, v in shares.items()},
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
