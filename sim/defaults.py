"""The defaults of the commands and of the library functions behind them, written once.

``sim.cli`` builds its options and their help from these without importing the model;
:func:`sim.reproduce.replicate`, :func:`sim.calibrate.calibrate` and :mod:`sim.sweep` take
the same values. Local worker processes default to the machine's cores
(:func:`sim.runner.default_workers`).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CALIBRATE_BASE",
    "CALIBRATE_DIR",
    "CALIBRATE_MAX_ITERATIONS",
    "CALIBRATE_MAX_MINUTES",
    "CALIBRATE_SCENARIO_OUT",
    "CALIBRATE_SEED",
    "CALIBRATE_SEEDS",
    "REPRODUCE_DIR",
    "REPRODUCE_REPLICATIONS",
    "REPRODUCE_SEED",
    "REPRODUCE_TRUE_REPS",
    "SWEEPS_DIR",
]

# ---- credsim reproduce ------------------------------------------------------------------

#: Simulated studies: enough to average one study's noise down (SE of the mean
#: ~ 0.45 / sqrt(R) pp) while finishing in about five minutes here.
REPRODUCE_REPLICATIONS = 24
#: Replications also run as twins, for the true effects.
REPRODUCE_TRUE_REPS = 4
#: The master seed.
REPRODUCE_SEED = 2024
#: The output folder is ``<REPRODUCE_DIR>/reproduce-<scenario name>``.
REPRODUCE_DIR = Path("results")

# ---- credsim calibrate ------------------------------------------------------------------

#: The scenario the calibration starts from (the schema's round starting values).
CALIBRATE_BASE = "uncalibrated"
#: The master seed of the calibration's twin runs.
CALIBRATE_SEED = 20260101
#: The folder of its twin runs and calibration.json.
CALIBRATE_DIR = Path("results") / "calibration"
#: The calibrated scenario it writes.
CALIBRATE_SCENARIO_OUT = Path(__file__).resolve().parent / "scenarios" / "paper.toml"
#: Evaluations of the market block (scipy least_squares' max_nfev).
CALIBRATE_MAX_ITERATIONS = 16
#: Twin runs (seeds) averaged per evaluation: one full-scale world (37,000 matched
#: learners, common random numbers); the standard errors add the simulation noise.
CALIBRATE_SEEDS = 1
#: Minutes after which it stops stepping and keeps the best point.
CALIBRATE_MAX_MINUTES = 55.0

# ---- credsim sweep ----------------------------------------------------------------------

#: A sweep's folder is ``<SWEEPS_DIR>/<sweep name>``.
SWEEPS_DIR = Path("results") / "sweeps"
