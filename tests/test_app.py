"""The interactive app (sim/app.py): its model, inputs, figures, and the page in a browser.

The fast tests build the app's model and render the page server-side with Solara's test
renderer (no browser). ``test_app_in_browser`` (marker ``browser``; ``.ci/run`` runs it
when Chromium is installed) serves the app with ``solara run`` and drives it in the
system's headless Chromium with Playwright: move a slider, reset, step, play, and check
that the page updates without errors; it saves ``results/app_screenshot.png``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_global_random_state_is, global_random_state
from matplotlib.figure import Figure

from sim import app, frontend, plots, scenarios
from sim.params import field_info

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's package
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _value(param):
    """The initial value of one entry of ``model_params`` (a Slider or a dict)."""
    return param.value if hasattr(param, "value") else param["value"]


def _start(key: str):
    """The default scenario's value of ``key`` (the calibrated market; the schema's
    defaults are pre-calibration values)."""
    section, _, name = key.partition(".")
    return getattr(getattr(scenarios.load(app.DEFAULT_SCENARIO), section), name)


# ---- the inputs come from the default scenario and the schema ------------------------------


def test_slider_defaults_are_the_default_scenarios_values():
    sig = inspect.signature(app.AppMarket.__init__).parameters
    for kw, (key, _label) in app.SLIDERS.items():
        start = _start(key)
        assert _value(app.MODEL_PARAMS[kw]) == start, kw
        assert sig[kw].default == start, f"AppMarket({kw}=...) default differs from {key}"
    assert app.AppMarket(n_learners=2_000).overridden == {}  # the page starts at the file


def test_slider_ranges_lie_within_the_schema_bounds():
    for kw, (key, _label) in app.SLIDERS.items():
        info, s = field_info(key), app.MODEL_PARAMS[kw]
        lo = info.get("ge", info.get("gt"))
        hi = info.get("le", info.get("lt"))
        assert s.min >= lo and s.max <= hi, kw
        assert s.min <= s.value <= s.max, kw
        assert (
            s.max == hi
            or math.isclose(s.max, app.SLIDER_MAX_MULTIPLE * _start(key))
            or (s.min, s.max) == app.SLIDER_BOUNDS.get(key)
        )
        assert math.isclose((s.max - s.min) / s.step, app.SLIDER_STEPS)


def test_every_slider_position_makes_a_valid_two_arm_study():
    """At the smallest population, the extreme shares nudged still leave both arms the
    matched learners the estimators need (the scenario would refuse them otherwise)."""
    n = app.MODEL_PARAMS["n_learners"].min
    share = app.MODEL_PARAMS["treated_share"]
    for v in (share.min, share.max):
        app.AppMarket(n_learners=n, treated_share=v)  # no ScenarioError


def test_learners_and_scenario_inputs():
    n = app.MODEL_PARAMS["n_learners"]
    assert n.value == n.max == app.DEFAULT_LEARNERS == 20_000  # the small scenario
    assert n.min >= field_info("population.n_learners")["ge"]
    scen = app.MODEL_PARAMS["scenario_name"]
    assert scen["value"] == "small" and scen["values"][0] == "small"
    assert {"small", "baseline"} <= set(scen["values"])


def test_mesa_accepts_the_inputs():
    """What SolaraViz checks on load, and what its Reset does with the inputs."""
    from mesa.visualization.solara_viz import _check_model_params

    first = app.AppMarket(n_learners=2_000)
    _check_model_params(first, app.MODEL_PARAMS)  # raises on an unknown keyword
    kwargs = {k: _value(v) for k, v in app.MODEL_PARAMS.items()}
    kwargs["n_learners"] = 2_000
    again = type(first)(**kwargs)
    assert again.params == first.params


# ---- the model -------------------------------------------------------------------------


def test_app_model_builds_with_the_defaults_and_steps():
    m = app.AppMarket()
    assert len(m.population) == app.DEFAULT_LEARNERS
    for key, _label in app.SLIDERS.values():
        section, _, name = key.partition(".")
        assert getattr(getattr(m.params, section), name) == _start(key)
    assert m.seed == app.DEFAULT_SEED
    week = m.week
    m.step()
    assert m.week == week + 1 and len(m.series()) == 1


def test_keywords_override_the_scenario():
    m = app.AppMarket(
        scenario_name="no_nudge",
        n_learners=3_000,
        nudge_strength=0.05,
        credibility=0.3,
        search_boost=2.0,
        learner_share=0.2,
        treated_share=0.7,
        seed=" 7 ",
    )
    p = m.params
    assert len(m.population) == 3_000 and m.seed == 7
    assert (
        p.sharing.nudge_strength,
        p.signal.credibility,
        p.visibility.search_boost,
        p.market.learner_share,
        p.study.treated_share,
    ) == (0.05, 0.3, 2.0, 0.2, 0.7)
    assert p.meta.name == "no_nudge"
    assert m.overridden["sharing.nudge_strength"] == (0.05, 0.0)  # the file's value is 0
    assert "study.treated_share" in m.overridden
    assert m.overridden["market.learner_share"] == (
        0.2,
        scenarios.load("no_nudge").market.learner_share,
    )
    assert abs(m.treated.mean() - 0.7) < 0.02


@pytest.mark.parametrize("seed", ["x", "-1", "1.5"])
def test_a_bad_seed_is_a_clear_error(seed):
    with pytest.raises(ValueError, match="seed"):
        app.AppMarket(n_learners=2_000, seed=seed)


# ---- what the page shows -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stepped():
    """A 3,000-learner app model run 20 weeks (12 past the burn-in)."""
    m = app.AppMarket(n_learners=3_000, seed=3)
    for _ in range(20):
        m.step()
    return m


def test_arm_curves(stepped):
    c = app.arm_curves(stepped, min_learners=1)
    assert list(c.columns) == ["weeks", "treated", "n", "shared", "new_job"]
    assert set(c["treated"]) == {0, 1}
    assert c["weeks"].min() == 0 and c["weeks"].max() == stepped.week - 1
    assert c[["shared", "new_job"]].stack().between(0, 1).all()
    for _, g in c.groupby("treated"):
        assert (np.diff(g["n"].to_numpy()) <= 0).all()  # fewer learners followed longer
    # at k = 0 the at-risk set is every granted learner of the arm
    st, pop = stepped.state, stepped.population
    granted = pop.grant_week <= stepped.week - 1
    for arm in (0, 1):
        row = c[(c["treated"] == arm) & (c["weeks"] == 0)].iloc[0]
        sel = granted & (stepped.treated == bool(arm))
        assert row["n"] == sel.sum()
        assert math.isclose(row["shared"], np.mean(st.share_week[sel] == pop.grant_week[sel]))
    assert len(app.arm_curves(app.AppMarket(n_learners=2_000))) == 0  # nothing granted yet


def test_plot_functions_return_labelled_figures(stepped):
    curves = app.arm_curves(stepped)
    for fig in (
        plots.sharing_by_arm(curves),
        plots.new_jobs_by_arm(curves),
        plots.sharing_by_arm(curves.iloc[:0]),
    ):
        assert isinstance(fig, Figure)
        ax = fig.axes[0]
        assert "weeks" in ax.get_xlabel() and "%" in ax.get_ylabel()
    sample = app.neighbourhood(stepped)
    fig = app.network_figure(stepped, sample)
    assert isinstance(fig, Figure)
    assert f"week {stepped.week - 1}" in fig.axes[0].get_title()


def test_the_neighbourhood_is_small_connected_seeded_and_fixed(stepped):
    import networkx as nx

    before = global_random_state()
    a = app.neighbourhood(stepped)
    b = app.neighbourhood(stepped)
    assert_global_random_state_is(before)
    assert 20 <= a.number_of_nodes() <= 60
    assert nx.is_connected(a)
    assert sorted(a.nodes, key=str) == sorted(b.nodes, key=str)
    assert all(a.nodes[v]["pos"] == b.nodes[v]["pos"] for v in a.nodes)
    seeds = a.graph["seeds"]
    assert len(seeds) == 4 and stepped.treated[seeds].sum() == 2
    for u, v in a.edges:  # every drawn learner link exists in the model's graph
        if not isinstance(u, str) and not isinstance(v, str):
            assert v in stepped.network.learner_neighbors(u)


def test_headline(stepped):
    text = app.headline(stepped)
    assert f"**Week {stepped.week - 1}**" in text
    assert "credential shared" in text and " pp |" in text
    assert f"nudge strength {_start('sharing.nudge_strength'):g}" in text
    assert "Not started" in app.headline(app.AppMarket(n_learners=2_000))


def test_page_renders_and_steps_without_a_browser():
    """The whole page, rendered server-side; pressing Step advances the week."""
    import ipyvuetify as v
    import ipywidgets
    import solara

    _box, rc = solara.render(solara.AppLayout(children=[app.Page()]), handle_error=False)

    def headline() -> str:
        return next(
            w.unsafe_innerHTML
            for w in rc.find(solara.widgets.HTML).widgets
            if "This run" in (w.unsafe_innerHTML or "")
        )

    def images() -> list[bytes]:
        return [bytes(w.value) for w in rc.find(ipywidgets.Image).widgets]

    assert "Not started" in headline()
    before = images()
    assert len(before) == 3
    step = rc.find(v.Btn, children=["Step"])
    t0 = time.perf_counter()
    for _ in range(3):
        step.widget.click()
    per_step = (time.perf_counter() - t0) / 3
    assert "Week -6" in headline()
    after = images()
    assert after[0] != before[0]  # the graph's title names the week
    print(f"a step with its redraw took {per_step:.2f} s")  # measured, not asserted
    rc.close()


def test_frontend_packages_are_the_installed_solaras():
    assert set(frontend.frontend_packages()) == set(frontend.FRONTEND_PACKAGES)  # locked


def test_frontend_assets_are_left_alone_when_present(tmp_path, caplog):
    for spec in frontend.frontend_packages():
        (tmp_path / spec).mkdir(parents=True)
        (tmp_path / spec / "package.json").write_text("{}")
    with caplog.at_level(logging.DEBUG, logger="sim"):
        assert frontend.install_frontend_assets(tmp_path) == []
    assert not caplog.records  # nothing to fetch, nothing to say


def test_the_cli_shows_the_librarys_log_lines(capsys, monkeypatch):
    """Library code logs (no print); the CLI's handler shows the lines on the terminal."""
    from sim.cli import main

    class NoServer:  # stands in for `solara run`
        def __init__(self, *args, **kwargs):
            pass

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(frontend.shutil, "which", lambda _name: None)  # no npm here
    monkeypatch.setattr(frontend, "frontend_packages", lambda: ("left-pad@1.3.0",))
    monkeypatch.setattr(subprocess, "Popen", NoServer)
    assert main(["app", "--no-open", "--port", "0"]) == 0
    err = capsys.readouterr().err
    assert "npm not found: the app's page will load left-pad@1.3.0 from the CDN\n" in err


def test_the_app_and_the_cli_do_not_import_each_other():
    """The app is a library module: it must not need the command line, and the command
    line serves the app in a subprocess without importing it."""
    code = (
        "import sys, importlib; importlib.import_module(sys.argv[1]); "
        "print(sorted(m for m in sys.modules if m in ('sim.app', 'sim.cli')))"
    )
    for first, then in (("sim.app", "sim.cli"), ("sim.cli", "sim.app")):
        for name in (first, then):
            out = subprocess.run(
                [sys.executable, "-c", code, name],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
            assert out.strip() == repr([name]), f"importing {name} loaded {out.strip()}"


def test_cli_app_rejects_a_bad_port(capsys):
    from sim.cli import EXIT_USAGE, main

    assert main(["app", "--port", "70000", "--no-open"]) == EXIT_USAGE
    assert "invalid port" in capsys.readouterr().err


# ---- the page in a browser -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served_app():
    """``solara run sim/app.py`` on a free loopback port; yields its URL."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    missing = frontend.install_frontend_assets()
    if missing:
        pytest.skip(f"the page's browser code could not be installed: {missing}")
    port = _free_port()
    log = ROOT / "results" / "app_server.log"
    log.parent.mkdir(exist_ok=True)
    env = {**os.environ, "SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False"}
    cmd = [
        sys.executable,
        "-m",
        "solara",
        "run",
        str(ROOT / "sim" / "app.py"),
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-open",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"solara run exited ({proc.returncode}); see {log}")
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the app did not serve within 120 s; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.browser
def test_app_in_browser(served_app):
    from playwright.sync_api import expect, sync_playwright

    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1150})
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on(
                "response",
                lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None,
            )
            page.goto(served_app, wait_until="domcontentloaded")
            headline = page.locator(".credsim-headline")
            expect(headline).to_contain_text("Not started", timeout=120_000)
            images = page.locator("img")
            expect(images).to_have_count(3, timeout=60_000)

            # a slider: three steps up the nudge strength, then Reset builds the new model
            spec = app.slider_spec("sharing.nudge_strength")
            default = spec["value"]  # the page starts at the small scenario's value
            slider = page.locator(".v-slider").filter(has_text="Nudge strength")
            thumb = slider.locator("[role=slider]")
            thumb.focus()
            for _ in range(3):
                thumb.press("ArrowRight")
            moved = default + 3 * spec["step"]
            assert math.isclose(float(thumb.get_attribute("aria-valuenow")), moved, rel_tol=1e-6)
            page.get_by_role("button", name="Reset").click()
            expect(headline).to_contain_text(f"nudge strength {moved:g}")

            # Step: the week advances and the graph's image is redrawn
            src0 = images.first.get_attribute("src")
            step = page.get_by_role("button", name="Step")
            times = []
            for week in (-8, -7, -6):
                t0 = time.perf_counter()
                step.click()
                expect(headline).to_contain_text(f"Week {week}", timeout=30_000)
                times.append(time.perf_counter() - t0)
            expect(images.first).not_to_have_attribute("src", src0)

            # Play until the first new jobs show (week 8), then pause: the curves appear
            curve_src = images.nth(2).get_attribute("src")
            page.get_by_role("button", name="▶").click()
            expect(headline).to_contain_text(re.compile(r"Week ([89]|[1-9]\d)\b"), timeout=180_000)
            page.get_by_role("button", name="❚❚").click()
            expect(images.nth(2)).not_to_have_attribute("src", curve_src)
            text = page.inner_text("body")
            for bad in ("Traceback", "Error", "error in step"):
                assert bad not in text, f"the page shows {bad!r}:\n{text[:2000]}"
            out = ROOT / "results" / "app_screenshot.png"
            out.parent.mkdir(exist_ok=True)
            page.wait_for_timeout(1_000)
            page.screenshot(path=str(out), full_page=True)
        finally:
            browser.close()
    print(f"step + redraw seen in the browser: {', '.join(f'{t:.2f}' for t in times)} s")
    assert not problems, "\n".join(problems)
