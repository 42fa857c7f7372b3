"""Write the hand-made packaged scenario files (``sim/scenarios/``).

Each says what it is and how it differs from the calibrated study, ``[meta] base =
"paper"`` plus its own keys, and nothing else: a calibrated number is written in
``paper.toml`` only (``credsim calibrate`` writes that file, not this script), and a
schema default in ``sim/params.py`` only. ``uncalibrated`` has no base: the study's
population with the schema's defaults, the round starting values of the calibration.
``credsim run`` still writes the fully resolved scenario, every key explicit, into its
run folder.

    uv run python experiments/make_scenarios.py
"""

from __future__ import annotations

import textwrap
from typing import Any

from sim import scenarios
from sim.params import BASE_KEY, dumps_toml

#: name -> (description, base scenario or None, dotted keys that differ from the base).
SCENARIOS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    "baseline": (
        "The study's population (~880,000 learners) in the calibrated market: the paper "
        "scenario under its everyday name.",
        "paper",
        {},
    ),
    "small": (
        "About 20,000 learners in the calibrated market, for quick exploration.",
        "paper",
        {"population.n_learners": 20_000},
    ),
    "no_nudge": (
        "A/A check: the nudge does nothing (no notification effect, no two-click "
        "friction change); assignment still happens.",
        "paper",
        {
            "population.n_learners": 100_000,
            "sharing.nudge_strength": 0.0,
            "sharing.two_click_multiplier": 1.0,
        },
    ),
    "no_channels": (
        "Sharing has no channel to jobs: employers never read the credential (signal "
        "off: neither the fact of completion nor its content) and visibility off. The "
        "nudge still raises sharing; its effect on jobs must be zero up to noise.",
        "paper",
        {
            "population.n_learners": 100_000,
            "signal.enabled": False,
            "visibility.enabled": False,
        },
    ),
    "uncalibrated": (
        "The study's population with the schema's defaults: the round pre-calibration "
        "values where `credsim calibrate` starts (the fitted ones are in paper.toml).",
        None,
        {},
    ),
}


def scenario_text(name: str) -> str:
    """The TOML of one hand-made scenario file."""
    description, base, overrides = SCENARIOS[name]
    meta: dict[str, Any] = {BASE_KEY: base} if base is not None else {}
    meta.update(name=name, description=description)
    data: dict[str, dict[str, Any]] = {"meta": meta}
    for key, value in overrides.items():
        section, _, field = key.partition(".")
        data.setdefault(section, {})[field] = value
    what = f"the {base} scenario plus the keys below" if base else "the schema's defaults"
    header = (
        f"{description}\n\nWritten by experiments/make_scenarios.py: {what}. `credsim run` "
        "writes every key of the resolved scenario into its run folder."
    )
    lines = [textwrap.fill(p, 88) for p in header.split("\n\n")]
    comment = "\n#\n".join(textwrap.indent(p, "# ") for p in lines)
    return f"{comment}\n\n{dumps_toml(data)}"


def main() -> None:
    for name in SCENARIOS:
        path = scenarios.PACKAGED / f"{name}.toml"
        path.write_text(scenario_text(name), encoding="utf-8")
        scenarios.load(path)  # what was written is valid, its base included
        print(f"wrote sim/scenarios/{name}.toml")


if __name__ == "__main__":
    main()
