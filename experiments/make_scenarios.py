"""Write the hand-made packaged scenario files (``sim/scenarios/``) from the schema's defaults.

Every parameter is written out explicitly, so a scenario file is complete on its own.
``sim/scenarios/paper.toml`` is not made here: ``credsim calibrate`` writes it.

    uv run python experiments/make_scenarios.py
"""

from sim import scenarios
from sim.params import Scenario

SCENARIOS = {
    "baseline": ("The study's population (~880,000 learners) with the schema's defaults.", {}),
    "small": (
        "About 20,000 learners, for quick exploration.",
        {"population.n_learners": 20_000},
    ),
    "no_nudge": (
        "A/A check: the nudge does nothing (no notification effect, no two-click "
        "friction change); assignment still happens.",
        {"population.n_learners": 100_000, "sharing.nudge_strength": 0.0,
         "sharing.two_click_multiplier": 1.0},
    ),
    "no_channels": (
        "Sharing has no channel to jobs: credibility 0 and visibility off. The nudge "
        "still raises sharing; its effect on jobs must be zero up to noise.",
        {"population.n_learners": 100_000, "signal.credibility": 0.0,
         "visibility.enabled": False},
    ),
}


def main() -> None:
    out = scenarios.PACKAGED
    for name, (description, overrides) in SCENARIOS.items():
        scn = Scenario().with_overrides(
            {"meta.name": name, "meta.description": description, **overrides}
        )
        (out / f"{name}.toml").write_text(
            f"# {description}\n# Written by experiments/make_scenarios.py; every key is "
            "explicit.\n\n" + scn.to_toml(), encoding="utf-8"
        )
        print(f"wrote sim/scenarios/{name}.toml")


if __name__ == "__main__":
    main()
