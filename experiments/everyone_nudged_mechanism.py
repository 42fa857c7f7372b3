"""Where the jobs of nudging everyone come from: learners, background job seekers, vacancies.

The ``everyone_nudged`` sweep sets the total effect of nudging every learner against what
the 50/50 study predicts; crowding out would show there as a shortfall. This script
opens the market up: for the calibrated scenario with everyone nudged
(``study.treated_share = 1``) and its twin with no one nudged, and again with each
channel switched off, it prints

- the learners' share with a new job (matched learners, and all learners),
- the hires of learners and of background job seekers, and the vacancies filled,
- the distinct learners hired and the hires per hired learner (repeat job moves).

    uv run python experiments/everyone_nudged_mechanism.py [--learners N] [--seed S]
                                   [--set market.applications_employed=0 ...]
"""

from __future__ import annotations

import argparse
import tomllib

import pandas as pd

from sim.params import load_scenario
from sim.study import run_twins

CONFIGS = {
    "both channels": {},
    "visibility only": {"signal.enabled": False},
    "signal only": {"visibility.enabled": False},
}


def world_row(result, matched_new_job: float, all_new_job: float) -> dict[str, float]:
    """Market totals of one world over the whole run (burn-in included)."""
    hires = result.hires
    by_learner = hires.groupby("learner").size()  # the hires log holds learners only
    s = result.series
    return {
        "new job, matched (%)": 100 * matched_new_job,
        "new job, all (%)": 100 * all_new_job,
        "learner hires": int(s["hires_learners"].sum()),
        "background hires": int(s["hires_background"].sum()),
        "vacancies filled": int(s["vacancies_filled"].sum()),
        "learners hired": int(by_learner.size),
        "hires per hired learner": float(by_learner.mean()),
    }


def _assignment(text: str) -> tuple[str, object]:
    """argparse type: ``section.key=value`` with a TOML value."""
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError as err:
        raise argparse.ArgumentTypeError(f"{text!r}: the value is not TOML ({err})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="paper", help="scenario name or file")
    parser.add_argument(
        "--learners", type=int, default=None, help="population size (default: the scenario's)"
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the twin pair")
    parser.add_argument(
        "--set",
        type=_assignment,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a scenario parameter, e.g. market.applications_employed=0 (repeatable)",
    )
    args = parser.parse_args(argv)
    base = load_scenario(args.scenario)
    if args.set:
        base = base.with_overrides(dict(args.set), source=f"{args.scenario} (--set)")
    over = {"study.treated_share": 1.0}
    if args.learners:
        over["population.n_learners"] = args.learners
    rows = []
    for label, channels in CONFIGS.items():
        scn = base.with_overrides({**over, **channels}, source=f"{args.scenario} ({label})")
        tw = run_twins(scn, args.seed)
        po = tw.potential_outcomes()
        m = po[po["matched"]]
        for world, result, k in (("everyone", tw.study, "1"), ("no one", tw.mirror, "0")):
            rows.append(
                {
                    "channels": label,
                    "nudged": world,
                    **world_row(result, m[f"new_job_{k}"].mean(), po[f"new_job_{k}"].mean()),
                }
            )
        print(f"{label}: done", flush=True)
    table = pd.DataFrame(rows).set_index(["channels", "nudged"])
    with pd.option_context("display.width", 160, "display.float_format", "{:.3f}".format):
        changes = "".join(f", {k} = {v}" for k, v in args.set)
        print(
            f"\n{args.learners or base.population.n_learners:,} learners, seed "
            f"{args.seed}{changes}; whole run ({base.calendar.burn_in_weeks} burn-in "
            "weeks included) for the market totals"
        )
        print(table.to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
