"""The interactive app: a Mesa ``SolaraViz`` page over :class:`~sim.model.CredentialMarket`.

Run it with ``uv run credsim app`` (a Solara server on http://127.0.0.1:8765), or in a
notebook::

    from sim.app import page
    page

The page has, in the sidebar, Mesa's controls (reset, play/pause, step) and the model
parameters: the scenario file, the number of learners, a seed and five sliders
(nudge strength, credibility, search boost, learners' share of job seekers, share
nudged). Moving a slider takes effect at the next *Reset*, as everywhere in Mesa. The
main area shows a sampled neighbourhood of the professional graph, sharing and new jobs
by arm as the weeks pass, and the week's headline numbers.

The main area is laid out by :func:`Dashboard` rather than by Mesa's ``components``
grid, which does not render under the locked Solara/ipyvue 3 (see its docstring); the
sidebar, the controls and *Reset* are Mesa's own ``SolaraViz``. Solara's page loads its
browser code from a CDN; :func:`sim.frontend.install_frontend_assets` (run by ``credsim
app``) puts it in Solara's cache from the npm registry for machines that cannot reach the
CDN.

This module holds no model logic. :class:`AppMarket` only turns the page's keyword
arguments into a validated :class:`~sim.params.Scenario` and hands it to
``CredentialMarket``; the figures come from :mod:`sim.plots`. Every slider's default,
range and unit are read from the schema (:func:`sim.params.field_info`), never written
here a second time; where the schema's upper bound is far above any sensible value, the
slider stops at :data:`SLIDER_MAX_MULTIPLE` times the default. The number of learners
defaults to, and is capped at, the ``small`` scenario's size, so that a week steps in a
few milliseconds and the page redraws in well under a second.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import markdown  # Solara's own Markdown renderer, used server-side
import numpy as np
import pandas as pd
import solara
from mesa.visualization import Slider, SolaraViz
from mesa.visualization.utils import update_counter

from sim import plots, scenarios
from sim.model import NO_WEEK, CredentialMarket
from sim.params import Scenario, field_info

__all__ = [
    "DEFAULT_SCENARIO",
    "DEFAULT_SEED",
    "MODEL_PARAMS",
    "SLIDERS",
    "SLIDER_MAX_MULTIPLE",
    "AppMarket",
    "Dashboard",
    "FigureView",
    "Headline",
    "Page",
    "arm_curves",
    "headline",
    "model_params",
    "neighbourhood",
    "network_figure",
    "page",
    "scenario_names",
    "slider_spec",
]

#: The scenario the page starts from (its file sets every parameter the sliders leave).
DEFAULT_SCENARIO = "small"
#: Root seed of the first model on the page.
DEFAULT_SEED = 42
#: The fewest learners the page offers (fewer make the arms' curves mostly noise).
MIN_LEARNERS = 10_000
#: Narrower slider ranges than the schema allows: with MIN_LEARNERS learners a share
#: nudged in [0.1, 0.9] leaves both arms of the study at least the matched learners its
#: estimators need (``sim.params.MIN_ARM_LEARNERS``), so no slider position is invalid.
SLIDER_BOUNDS = {"study.treated_share": (0.1, 0.9)}
#: Sliders of fields whose schema bound is above this multiple of the default stop there.
SLIDER_MAX_MULTIPLE = 10
#: Steps across a slider's range.
SLIDER_STEPS = 100

#: Keyword of :class:`AppMarket` -> (scenario key, label). Starting values come from the
#: default scenario's file (the calibrated market), ranges and units from
#: :func:`sim.params.field_info` of the key.
SLIDERS: dict[str, tuple[str, str]] = {
    "nudge_strength": ("sharing.nudge_strength", "Nudge strength"),
    "credibility": ("signal.credibility", "Credibility"),
    "search_boost": ("visibility.search_boost", "Search boost"),
    "learner_share": ("market.learner_share", "Learners' share of job seekers"),
    "treated_share": ("study.treated_share", "Share nudged"),
}


def _base_scenario(name: str) -> Scenario:
    return scenarios.load(name)


#: The scenario the page starts from, read once (the schema's defaults are uncalibrated).
_START = _base_scenario(DEFAULT_SCENARIO)
_DEFAULTS = {
    kw: getattr(getattr(_START, key.partition(".")[0]), key.partition(".")[2])
    for kw, (key, _) in SLIDERS.items()
}

#: Learners on the first page: the default scenario's size (also the slider's maximum).
DEFAULT_LEARNERS = _START.population.n_learners


class AppMarket(CredentialMarket):
    """``CredentialMarket`` built from the page's keyword arguments (Mesa re-instantiates
    the model with them on *Reset*).

    Parameters
    ----------
    scenario_name:
        A scenario's bare name (:mod:`sim.scenarios`) or a TOML path; it sets every parameter
        that the arguments below do not.
    n_learners:
        ``population.n_learners`` (learners).
    nudge_strength, credibility, search_boost, learner_share, treated_share:
        ``sharing.nudge_strength``, ``signal.credibility``, ``visibility.search_boost``,
        ``market.learner_share``, ``study.treated_share`` (units in
        :func:`sim.params.field_info`); they override the scenario's values.
    seed:
        Root seed of the run (an integer >= 0, or its text from the page's input box).
    """

    def __init__(
        self,
        scenario_name: str = DEFAULT_SCENARIO,
        n_learners: int = DEFAULT_LEARNERS,
        nudge_strength: float = _DEFAULTS["nudge_strength"],
        credibility: float = _DEFAULTS["credibility"],
        search_boost: float = _DEFAULTS["search_boost"],
        learner_share: float = _DEFAULTS["learner_share"],
        treated_share: float = _DEFAULTS["treated_share"],
        seed: int | str = DEFAULT_SEED,
    ) -> None:
        try:
            seed = int(str(seed).strip())
        except ValueError:
            raise ValueError(f"seed: expected an integer >= 0, got {seed!r}") from None
        if seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {seed}")
        base = _base_scenario(scenario_name)
        values = {
            "nudge_strength": float(nudge_strength),
            "credibility": float(credibility),
            "search_boost": float(search_boost),
            "learner_share": float(learner_share),
            "treated_share": float(treated_share),
        }
        overrides: dict[str, Any] = {"population.n_learners": int(n_learners)}
        overrides.update({SLIDERS[kw][0]: v for kw, v in values.items()})
        scenario = base.with_overrides(overrides, source="app")
        #: Scenario keys where a slider replaced the file's own value: (slider, file).
        self.overridden = {
            key: (v, _get(base, key))
            for key, v in overrides.items()
            if key != "population.n_learners" and not math.isclose(v, _get(base, key))
        }
        self.scenario_name = scenario_name
        super().__init__(scenario, rng=seed)


def _get(scenario: Scenario, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(scenario, section), name)


# ---- the model's parameters on the page ------------------------------------------------


def slider_spec(key: str) -> dict[str, float]:
    """``value``, ``min``, ``max`` and ``step`` of the slider of a scenario key.

    The starting value is the default scenario's (:data:`DEFAULT_SCENARIO`: the calibrated
    values, which the schema's defaults are not), the bounds come from
    :func:`sim.params.field_info`. A field whose upper bound is more than
    :data:`SLIDER_MAX_MULTIPLE` times its starting value gets a slider to that multiple
    (so the starting value lies on its grid, unless the lower bound is exclusive: the
    slider then starts a step above it); any other field spans its bounds. Either way in
    :data:`SLIDER_STEPS` steps. The page starts at the exact default even
    where it falls between two steps (a calibrated value such as a credibility of
    0.9363); moving the slider picks values on the grid.
    """
    info = field_info(key)
    default = float(_get(_START, key))
    hi = float(info.get("le", info.get("lt", math.inf)))
    capped = default > 0 and hi > SLIDER_MAX_MULTIPLE * default
    if capped:
        hi = SLIDER_MAX_MULTIPLE * default
    lo = float(info.get("ge", info.get("gt", 0.0)))
    step = (hi - lo) / SLIDER_STEPS
    if "gt" in info:  # an exclusive bound: start a step above it, still in SLIDER_STEPS steps
        lo += step
        step = (hi - lo) / SLIDER_STEPS
    if key in SLIDER_BOUNDS:
        lo, hi = SLIDER_BOUNDS[key]
        step = (hi - lo) / SLIDER_STEPS
    return {"value": default, "min": lo, "max": hi, "step": step}


def scenario_names() -> list[str]:
    """The scenarios :mod:`sim.scenarios` knows (bare names), the default first."""
    names = scenarios.names()
    return [DEFAULT_SCENARIO, *[n for n in names if n != DEFAULT_SCENARIO]]


def model_params() -> dict[str, Any]:
    """The ``model_params`` of the ``SolaraViz`` page (keyword -> input)."""
    learners = field_info("population.n_learners")
    params: dict[str, Any] = {
        "scenario_name": {
            "type": "Select",
            "value": DEFAULT_SCENARIO,
            "values": scenario_names(),
            "label": "Scenario (sets all other parameters)",
        },
        "n_learners": Slider(
            "Learners",
            value=DEFAULT_LEARNERS,
            min=max(MIN_LEARNERS, learners.get("ge", 0)),
            max=DEFAULT_LEARNERS,
            step=1_000,
            dtype=int,
        ),
        "seed": {"type": "InputText", "value": str(DEFAULT_SEED), "label": "Seed"},
    }
    for kw in SLIDERS:
        spec = slider_spec(SLIDERS[kw][0])
        params[kw] = Slider(SLIDERS[kw][1], dtype=float, **spec)
    return params


# ---- what the page shows ---------------------------------------------------------------


def arm_curves(model: CredentialMarket, min_learners: int = 100) -> pd.DataFrame:
    """Sharing and new jobs by weeks since the credential was granted, by arm, so far.

    One row per arm and ``weeks`` = k from 0 to the longest follow-up so far: among the
    learners of that arm granted at least k weeks before the last finished week,
    ``shared`` is the share who shared within k weeks of their grant and ``new_job`` the
    share whose first new job (as the study counts it, reported or not) started within k
    weeks; ``n`` is that number of learners (rows with fewer than ``min_learners`` are
    left out: too noisy to read). All learners, matched or not.
    """
    last = model.week - 1
    grant = model.population.grant_week.astype(np.int64)
    followed = last - grant
    st = model.state
    events = {}
    for col, weeks in (("shared", st.share_week), ("new_job", st.first_job_week)):
        w = weeks.astype(np.int64)
        events[col] = np.where(w == NO_WEEK, np.iinfo(np.int64).max, w - grant)
    rows = []
    k_max = int(followed.max()) if len(followed) else -1
    for arm in (0, 1):
        sel = model.treated == bool(arm)
        f = followed[sel]
        ev = {c: e[sel] for c, e in events.items()}
        for k in range(k_max + 1):
            at_risk = f >= k
            n = int(at_risk.sum())
            if n < max(min_learners, 1):
                continue
            rows.append(
                {
                    "weeks": k,
                    "treated": arm,
                    "n": n,
                    **{c: float((at_risk & (e <= k)).sum() / n) for c, e in ev.items()},
                }
            )
    return pd.DataFrame(rows, columns=["weeks", "treated", "n", "shared", "new_job"])


def _pct(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{100 * x:.1f}%"


def headline(model: CredentialMarket) -> str:
    """The week and the headline numbers, as Markdown."""
    scn, st, pop = model.params, model.state, model.population
    last = model.week - 1
    granted = pop.grant_week <= last
    n = len(pop)
    lines = []
    if model.steps == 0:
        first = model.week
        lines.append(
            f"**Not started.** The first step runs week {first} of the burn-in "
            f"({-first} weeks of market before the first credential, week 0)."
        )
        phase = None
    elif last < 0:
        phase = f"burn-in ({-last} weeks before the first credential)"
    elif model.running:
        phase = f"follow-up; data collection at week {model.end_week}"
    else:
        phase = "finished: data-collection date reached"
    if phase is not None:
        date = scn.calendar.start_date + timedelta(weeks=last)
        lines.append(f"**Week {last}** ({date:%Y-%m-%d}), {phase}")
    lines.append("")
    rows = [
        ("credential shared", st.shared),
        ("new job since the credential", st.first_job_week != NO_WEEK),
        ("employed now", st.employed),
    ]
    lines.append("| among learners granted so far | nudged | control | difference |")
    lines.append("|---|---:|---:|---:|")
    for label, flag in rows:
        t = _mean(flag, granted & model.treated)
        c = _mean(flag, granted & ~model.treated)
        d = f"{100 * (t - c):+.2f} pp" if math.isfinite(t - c) else "–"
        lines.append(f"| {label} | {_pct(t)} | {_pct(c)} | {d} |")
    lines.append("")
    s = model.series()
    week_row = s.iloc[-1] if len(s) else None
    lines.append(
        f"{int(granted.sum()):,} of {n:,} learners granted; "
        f"{int(model.treated.sum()):,} nudged. "
        + (
            f"This week: {int(week_row['hires_learners'])} learners and "
            f"{int(week_row['hires_background'])} background seekers hired, "
            f"{int(week_row['vacancies_open'])} vacancies open."
            if week_row is not None
            else "Press *Step* or ▶ to run the weeks."
        )
    )
    lines.append("")
    lines.append(
        f"This run: scenario `{getattr(model, 'scenario_name', scn.meta.name)}`, {n:,} "
        f"learners, seed {model.seed}; "
        + "; ".join(
            f"{SLIDERS[kw][1].lower()} {_get(scn, SLIDERS[kw][0]):g}" + _unit(SLIDERS[kw][0])
            for kw in SLIDERS
        )
        + ". Moved sliders apply at *Reset*."
    )
    overridden = getattr(model, "overridden", {})
    if overridden:
        lines.append("")
        name = getattr(model, "scenario_name", "the scenario")
        lines.append(
            f"Sliders override `{name}`: "
            + ", ".join(f"`{k}` = {v:g} (file: {f:g})" for k, (v, f) in overridden.items())
        )
    return "\n".join(lines)


def _unit(key: str) -> str:
    unit = field_info(key)["unit"]
    return "" if unit in ("", "-", "share", "ratio") else f" {unit}"


def _mean(flag: np.ndarray, among: np.ndarray) -> float:
    k = int(among.sum())
    return float(flag[among].sum() / k) if k else math.nan


def network_figure(model: CredentialMarket, sample: Any) -> Any:
    """The sampled neighbourhood (from :func:`sim.plots.sample_neighbourhood`) now."""
    st = model.state
    when = f"week {model.week - 1}" if model.steps else "before the first week"
    return plots.network_sample(
        sample,
        treated=model.treated,
        shared=st.shared,
        employed=st.employed,
        title=f"A sampled neighbourhood of the graph, {when}",
    )


def neighbourhood(model: CredentialMarket) -> Any:
    """The app's sample of the graph: fixed for a model (its layout is seeded by the
    model's seed), so the drawing stays put while the weeks pass."""
    return plots.sample_neighbourhood(model.network, model.treated, seed=int(model.seed) % 2**32)


@solara.component
def FigureView(make: Callable[[], Any], dependencies: list) -> None:
    """A matplotlib figure from ``make()``, rebuilt only when ``dependencies`` change."""
    fig = solara.use_memo(make, dependencies=dependencies)
    solara.FigureMatplotlib(fig, format="png", dependencies=dependencies)


_HEADLINE_CSS = (
    "<style>.credsim-headline table {border-collapse: collapse; margin: 6px 0;}"
    ".credsim-headline th, .credsim-headline td {padding: 2px 12px 2px 0;"
    " border-bottom: 1px solid #ddd;}</style>"
)


@solara.component
def Headline(model: CredentialMarket) -> None:
    """The week, its headline numbers and the run's parameters."""
    update_counter.get()
    # Rendered here rather than by solara.Markdown, whose browser side always loads
    # mermaid and KaTeX from the CDN (megabytes, and not reachable everywhere).
    html = _HEADLINE_CSS + markdown.markdown(headline(model), extensions=["tables"])
    with solara.Card("This week"):
        solara.HTML(
            unsafe_innerHTML=html, style="font-size: 0.95rem;", classes=["credsim-headline"]
        )


#: The page's inputs (built once, so that re-rendering the page keeps the same widgets).
MODEL_PARAMS = model_params()
TITLE = "Credential sharing on a professional network"


@solara.component
def Dashboard(model: CredentialMarket) -> None:
    """The main area: the graph and the headline numbers, then sharing and new jobs by arm.

    A plain responsive layout rather than Mesa's draggable grid: ``solara.GridDraggable``
    loads a Vue 2 library that fails under Vue 3 (which the locked ipyvue 3 gives
    Solara) and would leave the main area blank.
    """
    update_counter.get()  # Mesa bumps it after every step
    deps = [model, model.week]
    sample = solara.use_memo(lambda: neighbourhood(model), dependencies=[model])
    curves = solara.use_memo(lambda: arm_curves(model), dependencies=deps)
    with solara.ColumnsResponsive(default=12, large=6):
        FigureView(lambda: network_figure(model, sample), deps)
        Headline(model)
        FigureView(lambda: plots.sharing_by_arm(curves), deps)
        FigureView(lambda: plots.new_jobs_by_arm(curves), deps)


@solara.component
def Page() -> None:
    """The app: Mesa's ``SolaraViz`` (controls, parameters, reset) around one model per
    session, with :func:`Dashboard` in the main area."""
    first = solara.use_memo(AppMarket, dependencies=[])
    model = solara.use_reactive(first)
    SolaraViz(model, components=[], model_params=MODEL_PARAMS, name=TITLE)
    Dashboard(model.value)


page = Page()
page  # noqa: B018 (what a notebook cell, or `solara run`, displays)
