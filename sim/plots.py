"""Figures: data in, ``matplotlib.figure.Figure`` out (no files, no global state).

Used by the CLI, the notebooks and the app alike, so that a figure looks the same
wherever it is drawn: labelled axes with units, arms in fixed colours, confidence
intervals wherever there is uncertainty.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "ARM_COLORS",
    "GROUP_COLORS",
    "channel_effects",
    "crowding_by_share",
    "crowding_out_bars",
    "cumulative_new_jobs",
    "effect_curves",
    "effect_heatmap",
    "external_predictions",
    "network_sample",
    "new_jobs_by_arm",
    "sample_neighbourhood",
    "sharing_by_arm",
    "targeting_totals",
    "targeting_who_gains",
    "tertile_effects",
    "weekly_series",
]

ARM_COLORS = {0: "#4c72b0", 1: "#dd8452"}
ARM_LABELS = {0: "control", 1: "nudged (treated)"}


def cumulative_new_jobs(curves: pd.DataFrame) -> Figure:
    """Share reporting a new job by months since randomization, by arm (paper Fig. 2).

    ``curves`` has columns ``months``, ``treated``, ``share`` and optionally ``rep``
    (replications are averaged; the band is the 95% range of one study's curve, a
    Student-t prediction interval from the ``R`` replications: mean +- t(R - 1) sd
    sqrt(1 + 1/R)).
    """
    from sim.analysis.common import t95

    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for arm in (0, 1):
        c = curves[curves["treated"] == arm]
        g = c.groupby("months")["share"]
        mean = 100 * g.mean()
        ax.plot(
            mean.index, mean.values, marker="o", ms=3, color=ARM_COLORS[arm], label=ARM_LABELS[arm]
        )
        if "rep" in c and c["rep"].nunique() > 1:
            n = g.count().astype(float)
            half = 100 * t95(n) * g.std() * np.sqrt(1 + 1 / n)
            lo, hi = mean - half, mean + half
            ax.fill_between(
                mean.index, lo.values, hi.values, color=ARM_COLORS[arm], alpha=0.2, lw=0
            )
    ax.set_xlabel("months since randomization")
    ax.set_ylabel("share reporting a new job (%)")
    ax.set_title("Cumulative new jobs by arm (matched sample)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig


def tertile_effects(table: pd.DataFrame) -> Figure:
    """ITT on a new job by tertile of predicted employability: simulated beside paper.

    ``table`` is the reproduce table (``id``, ``itt_pp``, ``itt_se``, ``sim_sd``,
    ``paper_itt_pp``, ``paper_se``, ``true_itt_pp``; optionally ``replications``).
    Intervals are 95%: for the paper its reported SE (normal, 1.96); for the simulation
    the range of one study's estimate around the mean estimate, a Student-t prediction
    interval from the ``R`` replications, ``t(R - 1) sim_sd sqrt(1 + 1/R)`` (1.96
    ``sim_sd`` when ``replications`` is not given).
    """
    from sim.analysis.common import Z95, t95

    t = table.set_index("id")
    groups = ["new_job_low", "new_job_medium", "new_job_high", "new_job"]
    labels = ["low", "medium", "high", "all"]
    x = np.arange(len(groups))
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    paper = t.loc[groups, "paper_itt_pp"].to_numpy(float)
    pse = t.loc[groups, "paper_se"].to_numpy(float)
    sim = t.loc[groups, "itt_pp"].to_numpy(float)
    ssd = t.loc[groups, "sim_sd"].to_numpy(float)
    half = Z95 * ssd
    if "replications" in t:
        reps = t.loc[groups, "replications"].to_numpy(float)
        half = t95(reps) * ssd * np.sqrt(1 + 1 / reps)
    ax.errorbar(
        x - 0.12, paper, yerr=1.96 * pse, fmt="s", color="black", capsize=3, label="paper (95% CI)"
    )
    ax.errorbar(
        x + 0.12,
        sim,
        yerr=half,
        fmt="o",
        color=ARM_COLORS[1],
        capsize=3,
        label="simulated: mean estimate, 95% range of one study (Student t)",
    )
    true = t.loc[groups, "true_itt_pp"].to_numpy(float)
    if np.isfinite(true).any():
        ax.scatter(
            x + 0.12, true, marker="x", color="crimson", zorder=3, label="model's true effect"
        )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(x, labels)
    ax.set_xlabel("predicted baseline employability (tertile)")
    ax.set_ylabel("ITT on new job (percentage points)")
    ax.set_title("Effect of the nudge on new jobs by employability")
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


def weekly_series(series: pd.DataFrame) -> Figure:
    """A run's weekly series: sharing by arm, employment, hires and open vacancies."""
    fig = Figure(figsize=(9, 6), layout="constrained")
    axs = fig.subplots(2, 2)
    s = series
    ax = axs[0, 0]
    ax.plot(s["week"], 100 * s["shared_control"], color=ARM_COLORS[0], label="control")
    ax.plot(s["week"], 100 * s["shared_treated"], color=ARM_COLORS[1], label="treated")
    ax.set_ylabel("shared, among granted (%)")
    ax.legend(frameon=False)
    ax = axs[0, 1]
    ax.plot(s["week"], 100 * s["employed"], color="black")
    ax.set_ylabel("learners employed (%)")
    ax = axs[1, 0]
    ax.plot(s["week"], s["hires_learners"], label="learners")
    ax.plot(s["week"], s["hires_background"], label="background seekers")
    ax.set_ylabel("hires per week")
    ax.legend(frameon=False)
    ax = axs[1, 1]
    ax.plot(s["week"], s["vacancies_open"], color="grey")
    ax.set_ylabel("open vacancies")
    for a in axs.flat:
        a.set_xlabel("week since first graduation")
        a.grid(alpha=0.3)
    return fig


# ---- the interactive app and the quickstart notebook ---------------------------------


def _arm_curves_axes(curves: pd.DataFrame, column: str, ylabel: str, title: str) -> Figure:
    # Fixed margins rather than a layout engine: the app redraws these every week, and
    # constrained layout would make each redraw ~1.5x slower.
    fig = Figure(figsize=(6.4, 4.0))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.92)
    ax = fig.add_subplot()
    for arm in (0, 1):
        c = curves[curves["treated"] == arm].sort_values("weeks")
        ax.plot(
            c["weeks"],
            100 * c[column],
            marker="o",
            ms=2.5,
            color=ARM_COLORS[arm],
            label=ARM_LABELS[arm],
        )
    ax.set_xlabel("weeks since the credential was granted")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(curves):
        ax.set_ylim(0, max(ax.get_ylim()[1], 1.0))  # all zeros: 0-1%, not 0-0.05%
        ax.legend(frameon=False, loc="upper left")
    else:
        ax.text(
            0.5,
            0.5,
            "no credential granted yet (burn-in)",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="grey",
        )
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
    ax.grid(alpha=0.3)
    return fig


def sharing_by_arm(curves: pd.DataFrame) -> Figure:
    """Share of learners who have shared their credential, by weeks since the grant and arm.

    ``curves`` has columns ``weeks`` (weeks since the credential was granted), ``treated``
    (0/1) and ``shared`` (share in [0, 1] of the learners of that arm followed at least
    that many weeks who shared within them), as from :func:`sim.app.arm_curves`.
    """
    return _arm_curves_axes(
        curves, "shared", "credential shared (% of arm)", "Sharing by arm (all learners)"
    )


def new_jobs_by_arm(curves: pd.DataFrame) -> Figure:
    """Cumulative share with a new job, by weeks since the grant and arm.

    ``curves`` has columns ``weeks``, ``treated`` and ``new_job`` (share in [0, 1] of the
    learners of that arm followed at least that many weeks whose first new job, counted
    as the study counts it, started within them), as from :func:`sim.app.arm_curves`.
    Unlike the study, every job counts, reported or not.
    """
    return _arm_curves_axes(
        curves,
        "new_job",
        "started a new job (% of arm)",
        "Cumulative new jobs by arm (all learners)",
    )


def sample_neighbourhood(
    network,
    treated: np.ndarray,
    *,
    seeds: list[int] | np.ndarray | None = None,
    n_seeds: int = 4,
    max_nodes: int = 60,
    employers: bool = True,
    seed: int = 0,
):
    """A small, connected piece of the professional graph, laid out for drawing.

    ``network`` is a :class:`sim.network.ProfessionalGraph` and ``treated`` the boolean
    assignment (one entry per learner). ``seeds`` are the learners to centre on; by
    default ``n_seeds`` learners of moderate degree (4 to 14 links), each a neighbour of
    an earlier one so that the piece is connected, with the arms balanced where possible.
    Each seed brings its learner neighbours (a random subset if there are too many) and,
    with ``employers``, up to two employers whose recruiters follow it; links among all
    the sampled learners are kept. At most ``max_nodes`` nodes in all.

    Returns a ``networkx.Graph``: learner nodes are their ids (``int``), employer nodes
    ``"e<id>"``; node attribute ``pos`` is a seeded spring layout (unitless) and
    ``graph.graph["seeds"]`` the seed learners. Every draw comes from ``seed``; the same
    inputs give the same sample and layout, so a drawing of it stays put while the model
    steps (see :func:`network_sample`).
    """
    import networkx as nx

    rng = np.random.default_rng(seed)
    treated = np.asarray(treated, bool)
    if seeds is None:
        seeds = _connected_seeds(network, treated, n_seeds, rng)
    seeds = [int(s) for s in seeds]

    g = nx.Graph(seeds=seeds)
    g.add_nodes_from(seeds)
    emp_links = []
    if employers:
        for s in seeds:
            emp_links += [(s, f"e{int(e)}") for e in network.employer_neighbors(s)[:2]]
    n_emp = len({e for _, e in emp_links})
    per_seed = max(0, max_nodes - len(seeds) - n_emp) // max(len(seeds), 1)
    for s in seeds:
        nb = np.setdiff1d(network.learner_neighbors(s), seeds)
        if len(nb) > per_seed:
            nb = np.sort(rng.choice(nb, size=per_seed, replace=False))
        g.add_nodes_from(nb.tolist())
    learners = sorted(g.nodes)
    members = set(learners)
    for i in learners:
        g.add_edges_from(
            (i, int(j)) for j in network.learner_neighbors(i) if int(j) in members and i < j
        )
    g.add_edges_from(emp_links)
    pos = nx.spring_layout(g, seed=seed, iterations=200, k=1.5 / np.sqrt(max(len(g), 1)))
    nx.set_node_attributes(g, {v: tuple(map(float, p)) for v, p in pos.items()}, "pos")
    return g


def network_sample(
    sample,
    *,
    treated: np.ndarray,
    shared: np.ndarray,
    employed: np.ndarray,
    title: str | None = None,
) -> Figure:
    """A readable drawing of a sampled neighbourhood, styled by the learners' state.

    ``sample`` is a graph from :func:`sample_neighbourhood`; ``treated``, ``shared`` and
    ``employed`` are boolean arrays with one entry per learner of the model (its state
    now). Colour is the arm; a filled marker is an employed learner, a hollow one a
    learner without a job; a diamond is a learner who has shared the credential; seed
    learners are drawn larger; grey squares are employers and dotted lines their
    recruiters' links. The layout has no units, so the axes are hidden.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    pos = {v: d["pos"] for v, d in sample.nodes(data=True)}
    seeds = list(sample.graph.get("seeds", []))
    treated = np.asarray(treated, bool)
    fig = Figure(figsize=(6.4, 4.6))
    fig.subplots_adjust(left=0.01, right=0.70, bottom=0.01, top=0.93)
    ax = fig.add_subplot()
    for employer_link, style in ((False, "solid"), (True, "dotted")):
        segs = [
            (pos[u], pos[v])
            for u, v in sample.edges
            if (isinstance(u, str) or isinstance(v, str)) == employer_link
        ]
        ax.add_collection(
            LineCollection(segs, colors="#b0b0b0", linewidths=0.8, linestyles=style, zorder=1)
        )
    emp_nodes = [v for v in sample.nodes if isinstance(v, str)]
    if emp_nodes:
        xy = np.array([pos[v] for v in emp_nodes])
        ax.scatter(xy[:, 0], xy[:, 1], marker="s", s=60, color="#7f7f7f", zorder=2)
    learners = np.array(sorted(v for v in sample.nodes if not isinstance(v, str)), np.int64)
    if len(learners):
        xy = np.array([pos[int(i)] for i in learners])
        is_seed = np.isin(learners, seeds)
        sh = np.asarray(shared, bool)[learners]
        edge = np.array([ARM_COLORS[int(t)] for t in treated[learners]], dtype=object)
        face = np.where(np.asarray(employed, bool)[learners], edge, "white")
        for marker, sel_shared in (("o", False), ("D", True)):
            for big in (False, True):
                sel = (sh == sel_shared) & (is_seed == big)
                if sel.any():
                    ax.scatter(
                        xy[sel, 0],
                        xy[sel, 1],
                        marker=marker,
                        s=(170 if big else 55) * (1.15 if sel_shared else 1.0),
                        facecolors=list(face[sel]),
                        edgecolors=list(edge[sel]),
                        linewidths=2.0 if big else 1.4,
                        zorder=3,
                    )
    handles = [
        Line2D([], [], ls="", marker="o", ms=8, color=ARM_COLORS[1], label=ARM_LABELS[1]),
        Line2D([], [], ls="", marker="o", ms=8, color=ARM_COLORS[0], label=ARM_LABELS[0]),
        Line2D(
            [], [], ls="", marker="o", ms=8, mfc="black", mec="black", label="employed (filled)"
        ),
        Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="black", label="no job (hollow)"),
        Line2D(
            [], [], ls="", marker="D", ms=8, mfc="white", mec="black", label="credential shared"
        ),
        Line2D(
            [], [], ls="", marker="o", ms=12, mfc="white", mec="black", mew=2, label="seed learner"
        ),
    ]
    if emp_nodes:
        handles.append(
            Line2D(
                [],
                [],
                ls="",
                marker="s",
                ms=8,
                color="#7f7f7f",
                label="employer (its recruiters\nfollow the learner)",
            )
        )
    fig.legend(
        handles=handles, loc="center left", bbox_to_anchor=(0.70, 0.5), frameon=False, fontsize=8
    )
    ax.set_title(
        title or f"{len(learners)} learners around {len(seeds)} seed learners", fontsize=10
    )
    ax.set_axis_off()
    ax.autoscale_view()
    ax.margins(0.05)
    return fig


def _connected_seeds(
    network, treated: np.ndarray, n_seeds: int, rng: np.random.Generator
) -> list[int]:
    """Seed learners of moderate degree, each linked to an earlier one when possible."""
    deg = np.diff(network.ll_indptr)
    moderate = (deg >= 4) & (deg <= 14)
    pool = np.flatnonzero(moderate) if moderate.any() else np.arange(len(deg))
    seeds = [int(rng.choice(pool))]
    while len(seeds) < n_seeds:
        want = bool(treated[seeds].sum() < len(seeds) / 2)  # balance the arms
        near = np.unique(np.concatenate([network.learner_neighbors(s) for s in seeds]))
        near = near[moderate[near] & ~np.isin(near, seeds)]
        same_arm = near[treated[near] == want]
        options = same_arm if len(same_arm) else near
        if len(options) == 0:  # an isolated corner: start a new neighbourhood
            options = np.setdiff1d(pool, seeds)
            if len(options) == 0:
                break
        seeds.append(int(rng.choice(options)))
    return seeds


# ---- policy experiments (experiments/analyze.py and notebooks 03, 04) -----------------

#: Colours of the employability tertiles (and of the whole matched sample).
GROUP_COLORS = {"all": "black", "low": "#c44e52", "medium": "#8172b2", "high": "#55a868"}
GROUP_LABELS = {
    "all": "all matched learners",
    "low": "low employability",
    "medium": "medium employability",
    "high": "high employability",
}


def effect_heatmap(
    grid: pd.DataFrame,
    x: str,
    y: str,
    value: str,
    *,
    levels: tuple[float, ...] = (6.0, 11.0),
    level_fmt: str = "{:g}%",
    marker: tuple[float, float] | None = None,
    marker_label: str = "calibrated point",
    xlabel: str = "",
    ylabel: str = "",
    colorbar_label: str = "",
    title: str = "",
    surface: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Figure:
    """An effect over a two-parameter grid, with labelled contour lines at ``levels``.

    ``grid`` has one row per grid point with columns ``x``, ``y`` and ``value`` (the
    values of ``value`` in the unit of ``colorbar_label``, e.g. % for a relative
    effect); points missing from the full ``x`` by ``y`` grid are left blank. Colours
    are centred on zero (red positive, blue negative). Each contour level inside the
    range of the values is drawn and labelled with ``level_fmt`` (levels outside the
    range are skipped: they have no line on this grid). ``marker`` is an ``(x, y)``
    point drawn as a star (e.g. the calibrated scenario). With ``surface`` (a smooth fit
    ``surface(x, y) -> value``, vectorized) the contours are those of the surface on a
    fine mesh over the grid's range rather than of the noisy cells.
    """
    from matplotlib.colors import CenteredNorm
    from matplotlib.lines import Line2D

    table = grid.pivot_table(index=y, columns=x, values=value, aggfunc="mean", dropna=False)
    table = table.sort_index().sort_index(axis=1)
    xs = table.columns.to_numpy(float)
    ys = table.index.to_numpy(float)
    z = np.ma.masked_invalid(table.to_numpy(float))
    fig = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = fig.add_subplot()
    finite = z.compressed()
    halfrange = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1
    mesh = ax.pcolormesh(
        xs, ys, z, shading="nearest", cmap="RdBu_r", norm=CenteredNorm(0.0, halfrange)
    )
    fig.colorbar(mesh, ax=ax, label=colorbar_label)
    handles = []
    if finite.size and len(xs) >= 2 and len(ys) >= 2:
        cx, cy, cz = xs, ys, z
        if surface is not None:
            cx = np.linspace(xs.min(), xs.max(), 200)
            cy = np.linspace(ys.min(), ys.max(), 200)
            mx, my = np.meshgrid(cx, cy)
            cz = np.asarray(surface(mx, my), dtype=float)
        styles = ("solid", "dashed", "dashdot", "dotted")
        what = "contour (fitted surface)" if surface is not None else "contour"
        for i, level in enumerate(levels):
            if not np.nanmin(cz) <= level <= np.nanmax(cz):
                continue  # no line on this grid (and no matplotlib warning)
            style = styles[i % len(styles)]
            cs = ax.contour(
                cx, cy, cz, levels=[level], colors="black", linewidths=1.6, linestyles=style
            )
            ax.clabel(cs, fmt=lambda v: level_fmt.format(v), fontsize=9)
            handles.append(
                Line2D([], [], color="black", ls=style, label=f"{level_fmt.format(level)} {what}")
            )
    if marker is not None:
        ax.scatter(
            [marker[0]],
            [marker[1]],
            marker="*",
            s=260,
            color="gold",
            edgecolors="black",
            linewidths=1.0,
            zorder=5,
        )
        handles.append(
            Line2D([], [], ls="", marker="*", ms=14, mfc="gold", mec="black", label=marker_label)
        )
    if handles:
        wide = sum(len(h.get_label()) for h in handles) > 70
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=2 if wide else len(handles),
            frameon=False,
            fontsize=8,
        )
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or y)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def effect_curves(
    table: pd.DataFrame,
    x: str,
    *,
    xlabel: str = "",
    title: str = "",
    groups: tuple[str, ...] = ("all", "low", "medium", "high"),
) -> Figure:
    """Effects of the nudge against a swept parameter, by employability group.

    ``table`` has one row per value of ``x`` and group (column ``group``: ``all`` for
    the whole matched sample, or ``low``/``medium``/``high`` tertiles; ``shared`` for the
    effect on sharing), with columns ``effect`` (mean estimate, pp), ``effect_lo`` and
    ``effect_hi`` (its 95% interval), ``true`` (the twins' true effect, pp), ``rel``,
    ``rel_lo``, ``rel_hi`` and ``true_rel`` (the same relative to the control mean, as
    fractions). Three panels: the new-job effect in pp, the same relative to the control
    mean (%), and the effect on sharing (pp, when the ``shared`` rows are there). Solid
    lines with bars are mean estimates and their 95% intervals; dashed lines with
    crosses the true effects.
    """
    from matplotlib.lines import Line2D

    has_shared = (table["group"] == "shared").any()
    fig = Figure(figsize=(13 if has_shared else 9, 4.2), layout="constrained")
    axs = fig.subplots(1, 3 if has_shared else 2)
    n = len(groups)
    for ax, (col, lo, hi, true, scale, ylabel) in zip(
        axs,
        (
            (
                "effect",
                "effect_lo",
                "effect_hi",
                "true",
                1.0,
                "effect on a new job (percentage points)",
            ),
            (
                "rel",
                "rel_lo",
                "rel_hi",
                "true_rel",
                100.0,
                "effect on a new job, relative to control (%)",
            ),
        ),
        strict=False,
    ):
        span = table[x].max() - table[x].min() if len(table) else 0.0
        for i, g in enumerate(groups):
            t = table[table["group"] == g].sort_values(x)
            if t.empty:
                continue
            dx = (i - (n - 1) / 2) * 0.012 * (span or 1.0)  # keep the bars apart
            xv = t[x].to_numpy(float) + dx
            mean = scale * t[col].to_numpy(float)
            err = np.vstack(
                [mean - scale * t[lo].to_numpy(float), scale * t[hi].to_numpy(float) - mean]
            )
            ax.errorbar(
                xv,
                mean,
                yerr=np.where(np.isfinite(err), err, 0),
                marker="o",
                ms=4,
                capsize=2,
                color=GROUP_COLORS.get(g),
                label=GROUP_LABELS.get(g, g),
            )
            tv = scale * t[true].to_numpy(float)
            if np.isfinite(tv).any():
                ax.plot(xv, tv, ls="--", marker="x", ms=5, color=GROUP_COLORS.get(g), alpha=0.8)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if has_shared:
        ax = axs[2]
        t = table[table["group"] == "shared"].sort_values(x)
        mean = t["effect"].to_numpy(float)
        err = np.vstack(
            [mean - t["effect_lo"].to_numpy(float), t["effect_hi"].to_numpy(float) - mean]
        )
        ax.errorbar(
            t[x],
            mean,
            yerr=np.where(np.isfinite(err), err, 0),
            marker="o",
            ms=4,
            capsize=2,
            color=ARM_COLORS[1],
            label="mean estimate (95% CI)",
        )
        if np.isfinite(t["true"].to_numpy(float)).any():
            ax.plot(
                t[x],
                t["true"],
                ls="--",
                marker="x",
                color=ARM_COLORS[1],
                label="true effect (twins)",
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel("effect on sharing the credential (pp)")
        ax.legend(frameon=False, fontsize=8)
        ax.grid(alpha=0.3)
    handles = axs[0].get_legend_handles_labels()[0]
    handles += [
        Line2D([], [], color="grey", marker="o", ms=4, label="mean estimate, 95% CI"),
        Line2D([], [], color="grey", ls="--", marker="x", label="true effect (twins)"),
    ]
    axs[0].legend(handles=handles, frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def crowding_out_bars(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Aggregate new jobs from nudging: what the 50/50 study predicts versus the total.

    ``table`` has one row per bar with columns ``label``, ``jobs`` (extra new jobs in
    the population, reported ones as the study measures them), ``lo`` and ``hi`` (its
    95% interval; NaN for none) and optionally ``kind`` (``"prediction"`` or
    ``"total"``, for the colour).
    """
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    xs = np.arange(len(table))
    jobs = table["jobs"].to_numpy(float)
    err = np.vstack([jobs - table["lo"].to_numpy(float), table["hi"].to_numpy(float) - jobs])
    kinds = table["kind"] if "kind" in table else pd.Series(["prediction"] * len(table))
    colors = [ARM_COLORS[0] if k == "prediction" else ARM_COLORS[1] for k in kinds]
    ax.bar(xs, jobs, color=colors, width=0.6)
    ax.errorbar(
        xs, jobs, yerr=np.where(np.isfinite(err), err, 0), fmt="none", ecolor="black", capsize=4
    )
    for xi, j in zip(xs, jobs, strict=True):
        if np.isfinite(j):
            ax.annotate(f"{j:,.0f}", (xi, j), xytext=(8, 3), textcoords="offset points", fontsize=9)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(xs, table["label"], fontsize=9)
    ax.set_ylabel("extra learners with a new job (count)")
    ax.set_title(
        title or "Nudging everyone: the study's prediction and the total effect", fontsize=10
    )
    ax.grid(axis="y", alpha=0.3)
    return fig


def channel_effects(table: pd.DataFrame, *, title: str = "") -> Figure:
    """The nudge's effect on a new job with each channel from sharing to jobs on or off.

    ``table`` has one row per configuration and group, with columns ``label`` (e.g.
    ``"both"``, ``"visibility only"``), ``group`` (``all`` or ``low``, ...), ``effect``,
    ``effect_lo``, ``effect_hi`` (mean estimate and 95% interval, pp) and ``true`` (the
    twins' true effect, pp). Bars are mean estimates, crosses true effects.
    """
    labels = list(dict.fromkeys(table["label"]))
    groups = list(dict.fromkeys(table["group"]))
    fig = Figure(figsize=(7.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(len(groups), 1)
    xs = np.arange(len(labels))
    for i, g in enumerate(groups):
        t = table[table["group"] == g].set_index("label").reindex(labels)
        pos = xs + (i - (len(groups) - 1) / 2) * width
        mean = t["effect"].to_numpy(float)
        err = np.vstack(
            [mean - t["effect_lo"].to_numpy(float), t["effect_hi"].to_numpy(float) - mean]
        )
        ax.bar(
            pos,
            np.nan_to_num(mean),
            width=width * 0.9,
            color=GROUP_COLORS.get(g),
            alpha=0.75,
            label=f"{GROUP_LABELS.get(g, g)}: mean estimate, 95% CI",
        )
        ax.errorbar(
            pos,
            mean,
            yerr=np.where(np.isfinite(err), err, 0),
            fmt="none",
            ecolor="black",
            capsize=3,
        )
        tv = t["true"].to_numpy(float)
        if np.isfinite(tv).any():
            ax.scatter(
                pos,
                tv,
                marker="x",
                s=50,
                color="black",
                zorder=3,
                label="true effect (twins)" if i == 0 else None,
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(xs, labels)
    ax.set_xlabel("channels from a shared credential to a job")
    ax.set_ylabel("effect of the nudge on a new job (pp)")
    ax.set_title(title or "Visibility versus signal", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return fig


# ---- crowding out by market share, targeted nudging, other experiments ----------------

RULE_COLORS = {"random": "#7f7f7f", "low_employability": "#c44e52", "predicted_effect": "#4c72b0"}
RULE_LABELS = {
    "random": "random",
    "low_employability": "lowest predicted employability",
    "predicted_effect": "highest predicted effect",
}


def _yerr(mean: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Asymmetric error bars from an interval (0 where the interval is missing)."""
    err = np.vstack([mean - lo, hi - mean])
    return np.where(np.isfinite(err), err, 0)


def crowding_by_share(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Nudging everyone, by the learners' share of the job seekers in their market.

    ``table`` has one row per share with columns ``learner_share`` (a fraction),
    ``predicted`` (extra new jobs that the 50/50 study's ITT predicts for nudging
    everyone), ``total`` (extra new jobs when everyone is nudged, from the twins),
    ``crowding`` (``1 - total / predicted``), each with ``_lo`` / ``_hi`` 95% intervals,
    and optionally ``base`` (True on the scenario's own share, marked). Left: the two
    counts; right: the crowding-out share (%), where the prediction's interval is above 0
    (elsewhere the ratio is not informative).
    """
    t = table.sort_values("learner_share")
    x = 100 * t["learner_share"].to_numpy(float)
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    lines = [
        ("predicted", ARM_COLORS[0], "-", "50/50 ITT over all learners x all (prediction)"),
        ("total", ARM_COLORS[1], "-", "everyone nudged vs no one (twins: total)"),
    ]
    for col, color, ls, label in lines:
        m = t[col].to_numpy(float)
        ax.errorbar(
            x,
            m,
            yerr=_yerr(m, t[f"{col}_lo"].to_numpy(float), t[f"{col}_hi"].to_numpy(float)),
            marker="o",
            ms=4,
            capsize=3,
            color=color,
            ls=ls,
            label=label,
        )
    # the share crowded out means something only where the predicted gain is clearly > 0
    keep = t["predicted_lo"].to_numpy(float) > 0
    c = 100 * t["crowding"].to_numpy(float)
    bx.errorbar(
        x[keep],
        c[keep],
        yerr=_yerr(
            c[keep],
            100 * t["crowding_lo"].to_numpy(float)[keep],
            100 * t["crowding_hi"].to_numpy(float)[keep],
        ),
        marker="o",
        ms=4,
        capsize=3,
        color="black",
        label="crowding out, 95% CI"
        + ("" if keep.all() else "\n(left out where the prediction's CI reaches 0)"),
    )
    bx.axhline(100, color="grey", lw=0.8, ls=":")
    if "base" in t and t["base"].any():
        xb = 100 * t.loc[t["base"], "learner_share"].to_numpy(float)
        for a in (ax, bx):
            for v in xb:
                a.axvline(v, color="goldenrod", lw=1.2, ls="--", label="the scenario's share")
    for a in (ax, bx):
        a.set_xscale("log")
        a.set_xticks(x, [f"{v:g}" for v in x])
        a.minorticks_off()
        a.set_xlabel("learners' share of the job seekers in their market (%)")
        a.axhline(0, color="grey", lw=0.8)
        a.grid(alpha=0.3)
        a.legend(frameon=False, fontsize=8)
    ax.set_ylabel("extra learners with a new job (count)")
    bx.set_ylabel("crowding out: share of the predicted gain lost (%)")
    fig.suptitle(title or "Nudging everyone: prediction and total by market share", fontsize=11)
    return fig


def targeting_totals(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Extra new jobs from a fixed number of nudges, by who gets them.

    ``table`` has one row per treated share and rule, with columns ``treated_share``,
    ``rule`` (a key of :data:`RULE_LABELS`), ``nudges`` (how many), ``total`` (extra new
    jobs over every learner, crowding out included), ``gross`` (the extra new jobs of
    the learners nudged), each with ``_lo`` / ``_hi`` 95% intervals. Solid: total (net);
    dashed: the nudged learners' own gain (gross).
    """
    fig = Figure(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.add_subplot()
    rules = list(dict.fromkeys(table["rule"]))
    span = table["nudges"].max() - table["nudges"].min() if len(table) else 0.0
    for i, rule in enumerate(rules):
        t = table[table["rule"] == rule].sort_values("nudges")
        dx = (i - (len(rules) - 1) / 2) * 0.012 * (span or 1.0)
        x = t["nudges"].to_numpy(float) + dx
        color = RULE_COLORS.get(rule)
        for col, ls, suffix in (
            ("total", "-", "total (net)"),
            ("gross", "--", "gain of the nudged"),
        ):
            m = t[col].to_numpy(float)
            ax.errorbar(
                x,
                m,
                yerr=_yerr(m, t[f"{col}_lo"].to_numpy(float), t[f"{col}_hi"].to_numpy(float)),
                marker="o" if ls == "-" else "x",
                ms=4,
                capsize=3,
                ls=ls,
                color=color,
                alpha=1.0 if ls == "-" else 0.6,
                label=f"{RULE_LABELS.get(rule, rule)}: {suffix}",
            )
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("nudges given (learners)")
    ax.set_ylabel("extra learners with a new job (count)")
    ax.set_title(title or "Targeted nudging: extra new jobs net of crowding out", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=7)
    return fig


def targeting_who_gains(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Who gains from each targeting rule: extra new jobs by third of baseline
    employability, one panel per treated share.

    ``table`` has one row per treated share, rule and tertile (``low``, ``medium``,
    ``high``) with columns ``treated_share``, ``rule``, ``tertile``, ``jobs`` (extra new
    jobs of the learners of that third, nudged or not), ``jobs_lo`` and ``jobs_hi``.
    """
    shares = sorted(table["treated_share"].unique())
    rules = list(dict.fromkeys(table["rule"]))
    tertiles = ["low", "medium", "high"]
    fig = Figure(figsize=(4.0 * max(len(shares), 1), 4.2), layout="constrained")
    axs = np.atleast_1d(fig.subplots(1, max(len(shares), 1), sharey=True))
    width = 0.8 / max(len(rules), 1)
    xs = np.arange(len(tertiles))
    for ax, share in zip(axs, shares, strict=False):
        t = table[table["treated_share"] == share]
        for i, rule in enumerate(rules):
            r = t[t["rule"] == rule].set_index("tertile").reindex(tertiles)
            pos = xs + (i - (len(rules) - 1) / 2) * width
            m = r["jobs"].to_numpy(float)
            ax.bar(
                pos,
                np.nan_to_num(m),
                width=width * 0.9,
                color=RULE_COLORS.get(rule),
                alpha=0.8,
                label=RULE_LABELS.get(rule, rule),
            )
            ax.errorbar(
                pos,
                m,
                yerr=_yerr(m, r["jobs_lo"].to_numpy(float), r["jobs_hi"].to_numpy(float)),
                fmt="none",
                ecolor="black",
                capsize=2,
            )
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(xs, tertiles)
        ax.set_xlabel("baseline employability (third)")
        ax.set_title(f"{100 * share:g}% of learners nudged", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axs[0].set_ylabel("extra learners with a new job (count)")
    axs[0].legend(frameon=False, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def external_predictions(table: pd.DataFrame, *, title: str = "") -> Figure:
    """Other experiments predicted out of sample: the model's relative effect beside the
    published one.

    ``table`` has one row per experiment with columns ``label``, ``published_rel`` (the
    published relative effect, a fraction; NaN if none), ``predicted_rel`` with
    ``predicted_rel_lo`` / ``predicted_rel_hi`` (the model's true relative effect and its
    95% interval over replications).
    """
    t = table.reset_index(drop=True)
    y = np.arange(len(t))[::-1]
    fig = Figure(figsize=(7.2, 0.9 + 0.6 * len(t)), layout="constrained")
    ax = fig.add_subplot()
    m = 100 * t["predicted_rel"].to_numpy(float)
    lo, hi = (
        100 * t["predicted_rel_lo"].to_numpy(float),
        100 * t["predicted_rel_hi"].to_numpy(float),
    )
    err = np.vstack([m - lo, hi - m])
    ax.errorbar(
        m,
        y,
        xerr=np.where(np.isfinite(err), err, 0),
        fmt="o",
        color=ARM_COLORS[1],
        capsize=3,
        label="model (twins), 95% CI over replications",
    )
    pub = 100 * t["published_rel"].to_numpy(float)
    ax.scatter(pub, y + 0.15, marker="s", color="black", zorder=3, label="published")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(y, t["label"], fontsize=8)
    ax.set_xlabel("effect relative to the control group (%)")
    ax.set_title(title or "Other experiments, predicted out of sample", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(frameon=False, fontsize=8, loc="best")
    return fig
