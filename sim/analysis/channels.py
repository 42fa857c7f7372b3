"""Visibility versus signal (``experiments/sweeps/channels.toml``).

The new-job effect with each of the two channels of a shared credential, visibility
(employers see the learner more often) and signal (employers believe more of the
learner's skill), on or off; with neither, sharing has no path to a job and the true
effect is exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from sim import plots
from sim.analysis.common import (
    SIGNAL,
    VISIBILITY,
    Analysis,
    SweepResults,
    point_table,
    pp,
    short_table,
)

__all__ = ["CHANNEL_LABELS", "analyze", "channels_table", "conclude_channels"]

#: (visibility.enabled, signal.enabled) -> label.
CHANNEL_LABELS = {
    (True, True): "both",
    (True, False): "visibility only",
    (False, True): "signal only",
    (False, False): "neither",
}


def channels_table(res: SweepResults, groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per channel configuration and group (``all``, ``low``; ``shared``).

    Columns: ``label`` (both / visibility only / signal only / neither), ``visibility``,
    ``signal``, ``group``, ``id``, ``n``, ``effect``, ``effect_lo``, ``effect_hi``,
    ``true``, ``rel``, ``true_rel``.
    """
    groups = groups or {"all": "new_job", "low": "new_job_low", "shared": "shared"}
    pt = point_table(res.results, res.keys)
    back = {rid: g for g, rid in groups.items()}
    t = pt[pt["id"].isin(list(back))].copy()
    t["visibility"] = t[VISIBILITY].astype(bool)
    t["signal"] = t[SIGNAL].astype(bool)
    t["label"] = [
        CHANNEL_LABELS[(bool(v), bool(s))]
        for v, s in zip(t["visibility"], t["signal"], strict=True)
    ]
    t["group"] = t["id"].map(back)
    order = {lab: i for i, lab in enumerate(CHANNEL_LABELS.values())}
    gorder = {g: i for i, g in enumerate(groups)}
    t = t.sort_values(
        ["label", "group"], key=lambda s: s.map(order if s.name == "label" else gorder)
    )
    cols = [
        "label",
        "visibility",
        "signal",
        "group",
        "id",
        "n",
        "effect",
        "effect_lo",
        "effect_hi",
        "true",
        "rel",
        "true_rel",
    ]
    return t[cols].reset_index(drop=True)


def conclude_channels(table: pd.DataFrame) -> str:
    """One paragraph on :func:`channels_table`."""

    def get(label: str, group: str, col: str) -> float:
        r = table[(table["label"] == label) & (table["group"] == group)]
        return float(r[col].iloc[0]) if len(r) else math.nan

    use = "true" if table["true"].notna().any() else "effect"
    kind = "true effects" if use == "true" else "mean estimates"
    both = get("both", "all", use)

    def of_both(v: float) -> str:
        return (
            f"{100 * v / both:.0f}% of the joint effect"
            if both and np.isfinite(v) and np.isfinite(both) and abs(both) > 1e-9
            else "n/a of the joint effect"
        )

    vis, sig, nei = (get(lab, "all", use) for lab in ("visibility only", "signal only", "neither"))
    text = [
        f"With both channels the nudge adds {pp(get('both', 'all', 'effect'))} of new "
        f"jobs (mean estimate; true {pp(get('both', 'all', 'true'))}) and "
        f"{pp(get('both', 'low', 'effect'))} in the low-employability tertile (true "
        f"{pp(get('both', 'low', 'true'))}).",
        f"In {kind}: visibility alone gives {pp(vis)} ({of_both(vis)}), the signal alone "
        f"{pp(sig)} ({of_both(sig)}); with neither channel {pp(nei)}, which should be zero "
        "up to noise (the nudge still raises sharing by "
        f"{pp(get('neither', 'shared', 'effect'))}, but a shared credential then has no "
        "path to a job).",
    ]
    if all(np.isfinite(v) for v in (vis, sig, both)) and abs(both) > 1e-9:
        total = (vis + sig) / both
        how = "more than" if total > 1.1 else "less than" if total < 0.9 else "about"
        meaning = {
            "more than": "the channels overlap (each alone does part of the other's work)",
            "less than": "the channels reinforce each other (a credential that is "
            "both seen and believed is worth more than the sum)",
            "about": "the channels add up",
        }[how]
        text.append(
            f"Taken at face value, the two channels alone sum to {100 * total:.0f}% "
            f"of the joint effect ({how} 100%): {meaning}; check the intervals "
            "before reading much into it."
        )
    low_vis, low_sig = get("visibility only", "low", use), get("signal only", "low", use)
    if np.isfinite(low_vis) and np.isfinite(low_sig):
        text.append(
            f"For the low tertile, visibility alone gives {pp(low_vis)} and the "
            f"signal alone {pp(low_sig)}."
        )
    return " ".join(text)


def analyze(res: SweepResults, name: str = "channels") -> Analysis:
    """The bars per configuration (all learners and the low tertile), the table and
    the conclusion."""
    t = channels_table(res)
    fig = plots.channel_effects(
        t[t["group"].isin(["all", "low"])],
        title=f"Visibility versus signal ({res.replications} replication(s) per configuration)",
    )
    table = short_table(
        t, ["label", "group", "n", "effect", "effect_lo", "effect_hi", "true", "rel", "true_rel"]
    )
    return Analysis(
        name,
        {"channels": fig},
        table,
        conclude_channels(t),
        {"channels": t},
        figure_data={"channels": t},
    )
