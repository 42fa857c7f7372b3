"""Figures: data in, ``matplotlib.figure.Figure`` out (no files, no global state).

Used by the CLI, the notebooks and the app alike, so that a figure looks the same
wherever it is drawn: labelled axes with units, arms in fixed colours, confidence
intervals wherever there is uncertainty.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = [
    "ARM_COLORS",
    "cumulative_new_jobs",
    "network_sample",
    "new_jobs_by_arm",
    "sample_neighbourhood",
    "sharing_by_arm",
    "tertile_effects",
    "weekly_series",
]

ARM_COLORS = {0: "#4c72b0", 1: "#dd8452"}
ARM_LABELS = {0: "control", 1: "nudged (treated)"}


def cumulative_new_jobs(curves: pd.DataFrame) -> Figure:
    """Share reporting a new job by months since randomization, by arm (paper Fig. 2).

    ``curves`` has columns ``months``, ``treated``, ``share`` and optionally ``rep``
    (replications are averaged; the band is the 2.5-97.5% range across them).
    """
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for arm in (0, 1):
        c = curves[curves["treated"] == arm]
        g = c.groupby("months")["share"]
        mean = 100 * g.mean()
        ax.plot(mean.index, mean.values, marker="o", ms=3, color=ARM_COLORS[arm],
                label=ARM_LABELS[arm])
        if "rep" in c and c["rep"].nunique() > 1:
            lo, hi = 100 * g.quantile(0.025), 100 * g.quantile(0.975)
            ax.fill_between(mean.index, lo.values, hi.values, color=ARM_COLORS[arm],
                            alpha=0.2, lw=0)
    ax.set_xlabel("months since randomization")
    ax.set_ylabel("share reporting a new job (%)")
    ax.set_title("Cumulative new jobs by arm (matched sample)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return fig


def tertile_effects(table: pd.DataFrame) -> Figure:
    """ITT on a new job by tertile of predicted employability: simulated beside paper.

    ``table`` is the reproduce table (``id``, ``itt_pp``, ``itt_se``, ``sim_sd``,
    ``paper_itt_pp``, ``paper_se``, ``true_itt_pp``). Intervals are 95%: for the paper
    its reported SE, for the simulation one study's spread (``sim_sd``) around the mean
    estimate over replications.
    """
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
    ax.errorbar(x - 0.12, paper, yerr=1.96 * pse, fmt="s", color="black", capsize=3,
                label="paper (95% CI)")
    ax.errorbar(x + 0.12, sim, yerr=1.96 * ssd, fmt="o", color=ARM_COLORS[1], capsize=3,
                label="simulated: mean estimate, 95% range of one study")
    true = t.loc[groups, "true_itt_pp"].to_numpy(float)
    if np.isfinite(true).any():
        ax.scatter(x + 0.12, true, marker="x", color="crimson", zorder=3,
                   label="model's true effect")
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
        ax.plot(c["weeks"], 100 * c[column], marker="o", ms=2.5, color=ARM_COLORS[arm],
                label=ARM_LABELS[arm])
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
        ax.text(0.5, 0.5, "no credential granted yet (burn-in)", ha="center", va="center",
                transform=ax.transAxes, color="grey")
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
    return _arm_curves_axes(curves, "shared", "credential shared (% of arm)",
                            "Sharing by arm (all learners)")


def new_jobs_by_arm(curves: pd.DataFrame) -> Figure:
    """Cumulative share with a new job, by weeks since the grant and arm.

    ``curves`` has columns ``weeks``, ``treated`` and ``new_job`` (share in [0, 1] of the
    learners of that arm followed at least that many weeks whose first new job, counted
    as the study counts it, started within them), as from :func:`sim.app.arm_curves`.
    Unlike the study, every job counts, reported or not.
    """
    return _arm_curves_axes(curves, "new_job", "started a new job (% of arm)",
                            "Cumulative new jobs by arm (all learners)")


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
        g.add_edges_from((i, int(j)) for j in network.learner_neighbors(i)
                         if int(j) in members and i < j)
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
        segs = [(pos[u], pos[v]) for u, v in sample.edges
                if (isinstance(u, str) or isinstance(v, str)) == employer_link]
        ax.add_collection(LineCollection(segs, colors="#b0b0b0", linewidths=0.8,
                                         linestyles=style, zorder=1))
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
                    ax.scatter(xy[sel, 0], xy[sel, 1], marker=marker,
                               s=(170 if big else 55) * (1.15 if sel_shared else 1.0),
                               facecolors=list(face[sel]), edgecolors=list(edge[sel]),
                               linewidths=2.0 if big else 1.4, zorder=3)
    handles = [
        Line2D([], [], ls="", marker="o", ms=8, color=ARM_COLORS[1], label=ARM_LABELS[1]),
        Line2D([], [], ls="", marker="o", ms=8, color=ARM_COLORS[0], label=ARM_LABELS[0]),
        Line2D([], [], ls="", marker="o", ms=8, mfc="black", mec="black",
               label="employed (filled)"),
        Line2D([], [], ls="", marker="o", ms=8, mfc="white", mec="black",
               label="no job (hollow)"),
        Line2D([], [], ls="", marker="D", ms=8, mfc="white", mec="black",
               label="credential shared"),
        Line2D([], [], ls="", marker="o", ms=12, mfc="white", mec="black", mew=2,
               label="seed learner"),
    ]
    if emp_nodes:
        handles.append(Line2D([], [], ls="", marker="s", ms=8, color="#7f7f7f",
                              label="employer (its recruiters\nfollow the learner)"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.70, 0.5),
               frameon=False, fontsize=8)
    ax.set_title(title or f"{len(learners)} learners around {len(seeds)} seed learners",
                 fontsize=10)
    ax.set_axis_off()
    ax.autoscale_view()
    ax.margins(0.05)
    return fig


def _connected_seeds(network, treated: np.ndarray, n_seeds: int,
                     rng: np.random.Generator) -> list[int]:
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
