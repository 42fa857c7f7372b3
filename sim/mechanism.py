"""Where the effect comes from: visibility, the news of completion, and the signal's content.

A shared credential acts through two channels (MODEL.md, "Two channels, one exclusion"):
*visibility* (recruiters find the learner more often, employers see the post) and the
*signal* (employers think more of the learner). With rational employers the signal itself
has two parts: the fact of completion, which moves the prior by ``course_skill_gain``
for everyone whose credential is seen, and the content, which revises that prior up for
some learners and down for others (:func:`sim.dynamics.posterior_mean`).

:func:`decompose` runs the same worlds (same seeds: common random numbers) with channels
switched off and reports the true effect of the nudge on a new job (the twins' mean of
``Y(1) - Y(0)``, pp) in each:

===================  ==========================================================
``all channels``     the scenario as it is
``visibility only``  ``signal.enabled = false``
``signal only``      ``visibility.enabled = false``: completion news + content
``completion news``  visibility off and ``signal.credibility = 0``
``no channel``       both off: zero up to noise (the exclusion restriction)
===================  ==========================================================

The content's contribution is ``signal only - completion news``. Channels interact (a
learner found more often also gets more belief updates), so the parts need not add up to
the whole; the table shows the interaction as the remainder.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd

from sim.params import Scenario

__all__ = ["VARIANTS", "decompose", "share_of_effect"]

log = logging.getLogger(__name__)

#: Variant name -> overrides of the scenario.
VARIANTS: dict[str, dict[str, object]] = {
    "all channels": {},
    "visibility only": {"signal.enabled": False},
    "signal only": {"visibility.enabled": False},
    "completion news": {"visibility.enabled": False, "signal.credibility": 0.0},
    "no channel": {"visibility.enabled": False, "signal.enabled": False},
}

_OUTCOMES = ("shared", "new_job", "new_job_low", "new_job_medium", "new_job_high")


def _one(args: tuple[Scenario, str, int]) -> pd.DataFrame:
    from sim.study import run_study

    scenario, variant, seed = args
    scn = scenario.with_overrides(VARIANTS[variant], source=f"mechanism:{variant}")
    truth = run_study(scn, seed, twin=True, estimate=False).truth
    truth = truth[truth["id"].isin(_OUTCOMES)]
    return truth.assign(variant=variant, seed=seed)[
        ["variant", "seed", "id", "n", "control_mean", "true_effect"]
    ]


def decompose(scenario: Scenario, seeds: list[int], workers: int = 2) -> pd.DataFrame:
    """True effects (pp and % of the control mean) of the nudge by variant, averaged over
    ``seeds``, with the content's share and the interaction as extra rows."""
    jobs = [(scenario, v, s) for s in seeds for v in VARIANTS]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        parts = []
        for k, part in enumerate(pool.map(_one, jobs), 1):
            log.info("mechanism: %d/%d twin runs done", k, len(jobs))
            parts.append(part)
    runs = pd.concat(parts, ignore_index=True)
    mean = runs.groupby(["variant", "id"], sort=False)[["control_mean", "true_effect"]].mean()
    sd = runs.groupby(["variant", "id"], sort=False)["true_effect"].std()
    table = mean.assign(sd_across_worlds=sd).reset_index()
    wide = table.pivot(index="variant", columns="id", values="true_effect")
    extra = []
    for oid in wide.columns.drop("shared", errors="ignore"):  # sharing has no channel
        full = wide.loc["all channels", oid]
        content = wide.loc["signal only", oid] - wide.loc["completion news", oid]
        inter = full - wide.loc["visibility only", oid] - wide.loc["signal only", oid]
        for name, val in (("signal content", content), ("interaction", inter)):
            extra.append({"variant": name, "id": oid, "true_effect": val})
    out = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    base = table[table["variant"] == "all channels"].set_index("id")["control_mean"]
    out["relative_pct"] = 100 * out["true_effect"] / out["id"].map(base)
    out["n_seeds"] = len(seeds)
    return out[["variant", "id", "true_effect", "relative_pct", "sd_across_worlds", "n_seeds"]]


def share_of_effect(table: pd.DataFrame, outcome: str = "new_job") -> dict[str, float]:
    """Each part's share of the all-channels effect on ``outcome``."""
    t = table[table["id"] == outcome].set_index("variant")["true_effect"]
    full = float(t["all channels"])
    if not np.isfinite(full) or full == 0:
        return {}
    return {
        v: float(t[v] / full)
        for v in ("visibility only", "signal only", "completion news", "signal content")
    }
