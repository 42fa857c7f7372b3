"""The ``credsim`` command: the only place that touches argv, paths and clocks.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments
and sets ``handler`` to a ``_cmd_<name>(args) -> int`` function; :func:`main` parses
and dispatches. Adding a subcommand means adding those two functions and one line in
:data:`_SUBCOMMANDS`.

Exit codes: 0 success; 1 tasks of ``credsim sweep``, ``reproduce`` or ``calibrate``
failed (all are recorded; a rerun retries them); 2 bad input detected before any work
(an invalid scenario, an output folder that belongs to another run or is in use); 130
interrupted with Ctrl-C (finished tasks are kept). Unexpected errors propagate with
their traceback.

    credsim run small --seed 1
    credsim run my_scenario.toml --out runs/mine --overwrite --quiet
    credsim reproduce                      # the paper's table, simulated (paper scenario)
    credsim calibrate                      # refit sim/scenarios/paper.toml
    credsim sweep experiments/sweeps/small_demo.toml --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim import __version__, process, scenarios
from sim.params import Scenario, ScenarioError
from sim.paths import PROJECT_ROOT, resolve_scenario

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main", "resolve_scenario"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "credsim"


class _CliError(Exception):
    """Bad input found before any work; the message is printed, the exit code is 2."""


# ---- shared helpers --------------------------------------------------------------------


def _seed(text: str) -> int:
    """argparse type: a non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: expected >= 0")
    return value


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


class _TerminalHandler(logging.StreamHandler):
    """Log records as plain lines on whatever ``sys.stderr`` is when they come."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # not the stream of when the handler was made
        super().emit(record)


def _log_to_terminal() -> None:
    """Show the library's progress messages (``logging`` under ``sim``, INFO and up):
    the package logs, only the command line decides where the lines go."""
    logger = logging.getLogger("sim")
    if not any(isinstance(h, _TerminalHandler) for h in logger.handlers):
        handler = _TerminalHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _add_executor_args(p: argparse.ArgumentParser) -> None:
    """``--workers N`` (a local process pool) or ``--scheduler ADDRESS`` (a Dask cluster)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="local worker processes (default: the machine's cores)",
    )
    p.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on the Dask cluster whose scheduler is at ADDRESS "
        "(e.g. tcp://10.0.0.5:8786) instead of locally",
    )


@contextlib.contextmanager
def _executor(args: argparse.Namespace) -> Iterator[Any]:
    """The :class:`sim.runner.Pool` of ``--workers`` / ``--scheduler``, open for the block."""
    from sim.runner import RunnerError, open_executor

    with contextlib.ExitStack() as stack:
        try:  # bad arguments or an unreachable scheduler: before any work
            pool = stack.enter_context(open_executor(args.workers, args.scheduler))
        except RunnerError as err:
            raise _CliError(str(err)) from None
        yield pool


# ---- credsim run -----------------------------------------------------------------------


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run one scenario at one seed and write a run folder",
        description="Run one scenario at one seed; write its resolved scenario, manifest, "
        "weekly series, per-learner state, hires log and summary into a run folder "
        "(atomically: the folder appears only when complete).",
    )
    p.add_argument(
        "scenario",
        metavar="SCENARIO",
        help="a scenario TOML file, or a bare name: ./scenarios/<name>.toml if there is one, "
        "else a scenario packaged with credsim (small, paper, baseline, ...)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="root seed of the run (default: 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder to write (default: runs/<scenario name>-seed<N>)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the run folder if it exists")
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar or table; one final line only"
    )
    p.set_defaults(handler=_cmd_run)


def _cmd_run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sim import store
    from sim.model import CredentialMarket

    out_console = Console(highlight=False)
    err_console = Console(stderr=True, highlight=False)

    source = resolve_scenario(args.scenario)
    scenario = Scenario.from_toml(source)  # validation: before any work
    name = scenario.meta.name if scenario.meta.name != "unnamed" else source.stem
    out: Path = args.out or Path("runs") / f"{store.safe_name(name)}-seed{args.seed}"
    if out.exists() and not args.overwrite:
        raise _CliError(f"{out} already exists; pass --overwrite to replace it")

    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    show_progress = not args.quiet and err_console.is_terminal
    t0 = time.perf_counter()
    if show_progress:
        with err_console.status(f"building {name}: population, graph"):
            model = CredentialMarket(scenario, rng=args.seed)
    else:
        model = CredentialMarket(scenario, rng=args.seed)
    t_build = time.perf_counter() - t0
    total = model.weeks_total

    t0 = time.perf_counter()
    if show_progress:
        result = _run_with_progress(model, total, err_console)
    else:
        result = model.run()
    t_steps = time.perf_counter() - t0

    meta = store.manifest(
        scenario,
        args.seed,
        extra={
            "scenario_source": str(source),
            "steps": total,
            "timing_s": {"build": round(t_build, 3), "steps": round(t_steps, 3)},
        },
        timestamp=timestamp,
        command=args.command,
    )
    t0 = time.perf_counter()
    with store.atomic_run_dir(out, overwrite=args.overwrite) as tmp:
        store.write_run(result, tmp, meta)
    t_write = time.perf_counter() - t0

    timing = f"build {t_build:.2f} s, {total} weekly steps {t_steps:.2f} s, write {t_write:.2f} s"
    if args.quiet:
        out_console.print(f"wrote {out} ({timing})", markup=False)
        return EXIT_OK
    out_console.print(_summary_tables(store.summarize(result)))
    out_console.print(f"wrote {out}", markup=False)
    out_console.print(timing, markup=False)
    return EXIT_OK


def _run_with_progress(model: Any, total: int, console: Any) -> Any:
    """Step ``model`` to the end with a rich progress bar in weeks (with ETA)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("weeks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("weeks", total=total)
        return model.run(progress=lambda done, _total: bar.update(task, completed=done))


_ARM_ROWS: tuple[tuple[str, str], ...] = (
    ("shared (matched)", "shared"),
    ("new job, reported (matched)", "new_job"),
    ("new in-scope job, reported (matched)", "new_job_in_scope"),
    ("any certificate view (all learners)", "any_view"),
)


def _pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.2f}%"


def _summary_tables(s: dict[str, Any]) -> Any:
    """The summary of :func:`sim.store.summarize` as two rich Tables (run, by arm)."""
    from rich.console import Group
    from rich.table import Table

    run = Table(title=f"run: {s['scenario']}, seed {s['seed']}", title_justify="left")
    run.add_column("")
    run.add_column("value", justify="right")
    run.add_row("learners", f"{s['learners']:,}")
    run.add_row(
        "matched learners (treated / control)",
        f"{s['matched_learners']:,} ({s['matched_treated']:,} / {s['matched_control']:,})",
    )
    run.add_row("weekly steps (follow-up weeks)", f"{s['weeks']} ({s['followup_weeks']})")
    run.add_row("employment rate at collection", _pct(s["employment_final"]))
    run.add_row("hires of learners", f"{s['hires_learners']:,}")
    run.add_row("hires of background applicants", f"{s['hires_background']:,}")
    run.add_row("open vacancies (weekly mean)", f"{s['vacancies_open_mean']:,.1f}")

    arms = Table(title="by arm (naive difference, not the study estimator)", title_justify="left")
    arms.add_column("")
    arms.add_column("treated", justify="right")
    arms.add_column("control", justify="right")
    arms.add_column("T − C (pp)", justify="right")
    for label, key in _ARM_ROWS:
        diff = s[f"{key}_diff_pp"]
        d = "n/a" if diff is None or diff != diff else f"{diff:+.2f}"
        arms.add_row(label, _pct(s[f"{key}_treated"]), _pct(s[f"{key}_control"]), d)
    return Group(run, arms, _flows_table(s))


#: Rows of the flows table: summary key, label, format.
_FLOW_ROWS = (
    ("ue_monthly", "unemployed -> job, per month", "pct"),
    ("ne_monthly", "marginally attached -> job, per month", "pct"),
    ("ee_monthly", "job-to-job, per month", "pct"),
    ("eu_monthly", "job -> non-employment, per month", "pct"),
    ("employment_drift_pp", "employment drift over the study (pp)", "{:+.2f}"),
    ("hired_2plus_share", "hired learners hired 2+ times in 52 weeks", "pct"),
    ("hired_5plus_share", "hired 5+ times", "pct"),
    ("median_gap_weeks", "median gap between two hires (weeks)", "{:.0f}"),
    ("median_tenure_weeks", "median duration of new jobs (weeks)", "{:.0f}"),
    ("tenure_survival_52w", "new jobs lasting a year (Kaplan-Meier)", "pct"),
    ("background_fill_share", "vacancies filled by background seekers", "pct"),
    ("vacancy_duration_weeks", "mean vacancy duration (weeks)", "{:.1f}"),
)


def _flows_table(s: dict[str, Any]) -> Any:
    """The market's flows over the study window, with the bars of :mod:`sim.flows`."""
    from rich.table import Table

    from sim.flows import BARS, bar_checks

    flows = {k.removeprefix("flow_"): v for k, v in s.items() if k.startswith("flow_")}
    checks = bar_checks(flows)
    t = Table(title="market flows over the study window (sim.flows)", title_justify="left")
    t.add_column("")
    t.add_column("value", justify="right")
    t.add_column("bar")
    for key, label, fmt in _FLOW_ROWS:
        v = flows.get(key, math.nan)
        if fmt == "pct":
            text = _pct(v)
        elif v != v:
            text = "n/a"
        elif v == math.inf:
            text = "not reached"  # more than half of the spells outlast the window
        else:
            text = fmt.format(v)
        bar_key = "abs_employment_drift_pp" if key == "employment_drift_pp" else key
        bar = ""
        if bar_key in BARS:
            op, bound, _ = BARS[bar_key]
            shown = _pct(bound).replace(".00", "") if fmt == "pct" else f"{bound:g}"
            bar = f"{op} {shown} " + ("ok" if checks[bar_key] else "MISSED")
        t.add_row(label, text, bar)
    return t


# ---- credsim reproduce -------------------------------------------------------------------


def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    from sim import defaults as d

    p = sub.add_parser(
        "reproduce",
        help="replicate the study: the paper's table beside R simulated studies",
        description="Run R simulated studies at the study's scale, estimate each with the "
        "paper's estimators, and print the paper's table beside the simulated one; write "
        "reproduce.json, study.parquet, figures and report.md. Each finished replication "
        "is written at once to <out>/tasks/; rerun the same command to resume: only the "
        "missing replications run.",
    )
    p.add_argument(
        "scenario",
        metavar="SCENARIO",
        nargs="?",
        default="paper",
        help="scenario file or name (default: paper, the calibrated scenario)",
    )
    p.add_argument(
        "--replications",
        "-r",
        type=int,
        default=d.REPRODUCE_REPLICATIONS,
        help=f"simulated studies (default: {d.REPRODUCE_REPLICATIONS})",
    )
    p.add_argument(
        "--true-reps",
        type=int,
        default=d.REPRODUCE_TRUE_REPS,
        help="replications also run as twins for the true effect "
        f"(default: {d.REPRODUCE_TRUE_REPS})",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=d.REPRODUCE_SEED,
        help=f"master seed (default: {d.REPRODUCE_SEED})",
    )
    _add_executor_args(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"output folder (default: {d.REPRODUCE_DIR}/reproduce-<scenario name>)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="start over: delete the output folder (its replications too) first",
    )
    p.set_defaults(handler=_cmd_reproduce)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.markup import escape

    from sim import reproduce, store
    from sim.runner import StoreError, TaskFailed

    console = Console(highlight=False)
    if not console.is_terminal:  # a log or a pipe: wide enough for the table
        console = Console(highlight=False, width=180)
    path = resolve_scenario(args.scenario)
    scenario = Scenario.from_toml(path)
    if args.replications < 2:
        raise _CliError(f"--replications: expected an integer >= 2, got {args.replications}")
    if not 0 <= args.true_reps <= args.replications:
        raise _CliError(f"--true-reps: expected 0..{args.replications}, got {args.true_reps}")
    out = args.out or reproduce.default_out(scenario)
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    with _executor(args) as pool:
        if args.overwrite:
            _remove_tree(out)
        try:
            with progress_bar(console, "replications", args.replications) as advance:
                reps = reproduce.replicate(
                    scenario,
                    args.replications,
                    args.seed,
                    true_reps=args.true_reps,
                    out=out,
                    executor=pool.executor,
                    progress=advance,
                    source=str(path),
                    manifest=store.manifest(
                        scenario,
                        args.seed,
                        {"scenario_file": str(path), "sessions": []},
                        timestamp=timestamp,
                        command=args.command,
                    ),
                    session={
                        "timestamp": timestamp,
                        "command": list(args.command),
                        "executor": pool.where,
                    },
                    log=lambda msg: console.print(msg, markup=False),
                )
        except StoreError as err:  # the folder holds another study, or is in use
            raise _CliError(str(err)) from None
        except TaskFailed as err:
            _err(str(err))
            return 1
        except KeyboardInterrupt:
            console.print(
                f"interrupted: finished replications are kept in {out}/tasks; rerun the "
                "same command to run the rest",
                markup=False,
            )
            return EXIT_INTERRUPTED
    table = reproduce.summarize(reps)
    seconds = time.monotonic() - t0
    meta = store.manifest(
        scenario,
        args.seed,
        {
            "scenario_file": str(path),
            "replications": args.replications,
            "true_replications": args.true_reps,
            "wall_seconds": round(seconds, 1),
            "workers": pool.workers,
        },
        timestamp=timestamp,
        command=args.command,
    )
    meta["commit"] = meta["git"]["commit"]
    reproduce.write_outputs(out, table, reps, meta)
    for t in _reproduce_tables(table, scenario.meta.name, len(reps)):
        console.print(t)
    console.print(
        "Checks: (fitted target) = a number the calibration matches, (prediction) = one "
        "it never sees, (design) = a consequence of the study's size",
        markup=False,
    )
    for k, ok in reproduce.checks(table).items():
        console.print(f"  [{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] {escape(k)}")
    where = f"on {pool.where}" if args.scheduler else f"with {pool.workers} workers"
    console.print(
        f"wrote {out}/ (reproduce.json, study.parquet, figures, report.md) in "
        f"{seconds:.0f} s {where}"
    )
    return EXIT_OK


def _reproduce_tables(table: Any, name: str, reps: int) -> list[Any]:
    """The reproduce tables (:func:`sim.reproduce.text_tables`) as rich Tables, each with
    its notes as a caption."""
    from rich.table import Table

    from sim import reproduce

    out = []
    for k, tt in enumerate(reproduce.text_tables(table)):
        title = tt.title
        if k == 0:
            title = f"The study, reproduced: {name} ({reps} simulated studies): {title}"
        t = Table(
            title=title,
            title_justify="left",
            caption="\n".join(tt.notes),
            caption_justify="left",
        )
        width = max(len(r[0]) for r in tt.rows)
        for j, col in enumerate(tt.columns):
            if j == 0:  # the row ids, whole
                t.add_column(col, justify="left", no_wrap=True, min_width=width)
            else:
                t.add_column(col, justify="right")
        for label, rows in tt.sections:
            if label:
                t.add_row(label, style="italic", end_section=False)
            for row in rows:
                t.add_row(*row)
        out.append(t)
    return out


# ---- credsim calibrate -------------------------------------------------------------------


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from sim import defaults as d

    p = sub.add_parser(
        "calibrate",
        help="fit the free parameters to the paper's numbers; write sim/scenarios/paper.toml",
        description="Simulated method of moments with common random numbers (see "
        "sim/calibrate.py). Every twin run is written at once to <out>/tasks/: rerun the "
        "same command to resume an interrupted calibration (it replays its path from "
        "there).",
    )
    p.add_argument(
        "--base",
        default=d.CALIBRATE_BASE,
        help=f"scenario to start from (default: {d.CALIBRATE_BASE})",
    )
    p.add_argument(
        "--seed",
        type=_seed,
        default=d.CALIBRATE_SEED,
        help=f"seed of the calibration runs (default: {d.CALIBRATE_SEED})",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=d.CALIBRATE_DIR,
        help=f"folder for the twin runs and calibration.json (default: {d.CALIBRATE_DIR})",
    )
    p.add_argument(
        "--scenario-out",
        type=Path,
        default=d.CALIBRATE_SCENARIO_OUT,
        help="calibrated scenario to write (default: the packaged sim/scenarios/paper.toml)",
    )
    _add_executor_args(p)
    p.add_argument(
        "--max-iterations",
        type=int,
        default=d.CALIBRATE_MAX_ITERATIONS,
        help="evaluations of the market block by scipy least_squares (max_nfev) "
        f"(default: {d.CALIBRATE_MAX_ITERATIONS})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=d.CALIBRATE_SEEDS,
        help=f"twin runs (seeds) averaged per evaluation (default: {d.CALIBRATE_SEEDS})",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=d.CALIBRATE_MAX_MINUTES,
        help="stop stepping after this long and keep the best point "
        f"(default: {d.CALIBRATE_MAX_MINUTES:g})",
    )
    p.set_defaults(handler=_cmd_calibrate)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from sim import calibrate as cal
    from sim.runner import StoreError, TaskFailed

    path = resolve_scenario(args.base)
    Scenario.from_toml(path)  # validate before any work
    t0 = time.monotonic()

    def log(msg: str) -> None:
        print(f"[{time.monotonic() - t0:7.0f} s] {msg}", flush=True)

    if path.parent == scenarios.PACKAGED:  # recorded as the name: found from any folder
        base = path.stem
    else:
        base = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
    with _executor(args) as pool:
        try:
            cal.calibrate(
                str(base),
                args.seed,
                args.out,
                args.scenario_out,
                executor=pool.executor,
                executor_info=pool.where,
                max_iterations=args.max_iterations,
                n_seeds=args.seeds,
                max_minutes=args.max_minutes,
                log=log,
                clock=lambda: datetime.now(UTC).isoformat(timespec="seconds"),
                command=args.command,
            )
        except StoreError as err:  # the folder holds another calibration, or is in use
            raise _CliError(str(err)) from None
        except TaskFailed as err:
            _err(str(err))
            return 1
        except KeyboardInterrupt:
            print(
                f"interrupted: finished twin runs are kept in {args.out}/tasks; rerun the "
                "same command to resume",
                file=sys.stderr,
            )
            return EXIT_INTERRUPTED
    return EXIT_OK


class progress_bar:
    """A rich progress bar with ETA; the context value is an ``advance(done, total)``
    (the bar of every long ``credsim`` command, and of the experiment scripts)."""

    def __init__(self, console: Any, what: str, total: int):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.bar = Progress(
            TextColumn(f"{what}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.total = total

    def __enter__(self) -> Callable[[int, int], None]:
        self.bar.start()
        task = self.bar.add_task("", total=self.total)
        return lambda done, total: self.bar.update(task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


# ---- credsim app ---------------------------------------------------------------------------


def _add_app(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "app",
        help="the interactive app (Mesa SolaraViz) in the browser",
        description="Serve the interactive app of sim/app.py with `solara run`: sliders for "
        "the nudge, credibility, search boost, vacancies and treated share, a drawing of "
        "a sampled neighbourhood of the graph, and sharing and new jobs by arm, week by "
        "week. Stop it with Ctrl-C.",
    )
    p.add_argument(
        "--port",
        type=int,
        default=8765,
        help="port to serve on (default: 8765; 0 picks a free one)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--no-open", dest="open", action="store_false", help="do not open a browser window"
    )
    p.set_defaults(handler=_cmd_app)


def _cmd_app(args: argparse.Namespace) -> int:
    import os
    import subprocess

    if not 0 <= args.port <= 65535:
        raise _CliError(f"invalid port {args.port}: expected 0-65535 (0: any free port)")
    from sim.frontend import install_frontend_assets

    install_frontend_assets()  # the page's browser code, if the CDN is out of reach
    app = Path(__file__).with_name("app.py")
    cmd = [
        sys.executable,
        "-m",
        "solara",
        "run",
        str(app),
        "--port",
        str(args.port),
        "--host",
        args.host,
        "--open" if args.open else "--no-open",
    ]
    env = {"SOLARA_TELEMETRY_MIXPANEL_ENABLE": "False", **os.environ}
    where = f"http://{args.host}:{args.port}" if args.port else f"a free port on {args.host}"
    print(f"starting the app on {where} (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd, env=env)
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the server got the same Ctrl-C; let it shut down
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return EXIT_INTERRUPTED


# ---- credsim sweep -------------------------------------------------------------------------


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a parameter sweep (points x replications) locally or on a Dask cluster",
        description="Run every task of a sweep file (see sim/sweep/spec.py for the format) in a "
        "local process pool, or on an existing Dask cluster with --scheduler. Each finished "
        "task is written at once to <out>/tasks/; at the end results.parquet and "
        "summary.parquet gather them. Rerun the same command to resume: only missing or "
        "failed tasks run again. Exit code 1 if any task failed (after writing everything).",
    )
    p.add_argument(
        "file",
        metavar="FILE",
        type=Path,
        help="sweep file (TOML), e.g. experiments/sweeps/small_demo.toml",
    )
    _add_executor_args(p)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result folder (default: results/sweeps/<sweep name>)",
    )
    p.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from rich.console import Console

    from sim import sweep

    console = Console(highlight=False)
    spec = sweep.load_sweep(args.file)  # every task's scenario is validated here
    out: Path = args.out or sweep.default_out(spec)
    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    console.print(
        f"sweep {spec.name}: {spec.n_points} points x {spec.replications} "
        f"replications = {spec.n_tasks} tasks -> {out}",
        markup=False,
    )
    t0 = time.monotonic()
    with _executor(args) as pool:
        try:
            with progress_bar(console, "tasks", None) as advance:
                outcome = sweep.run_sweep(
                    spec,
                    out,
                    pool.executor,
                    progress=advance,
                    timestamp=timestamp,
                    command=args.command,
                    executor_info=pool.where,
                    log=lambda msg: console.print(msg, markup=False),
                )
        except KeyboardInterrupt:  # run_sweep cancelled what had not started
            console.print(
                f"interrupted: finished tasks are kept in {out}/tasks; rerun the "
                "same command to run the rest",
                markup=False,
            )
            return EXIT_INTERRUPTED
    seconds = time.monotonic() - t0
    console.print(
        f"{outcome.ran} tasks run ({outcome.already_done} already done) on "
        f"{pool.where} in {seconds:.1f} s; wrote {out}/results.parquet and "
        "summary.parquet",
        markup=False,
    )
    if outcome.failed:
        shown = ", ".join(outcome.failed[:10]) + (" ..." if len(outcome.failed) > 10 else "")
        _err(
            f"{len(outcome.failed)} of {outcome.n_tasks} tasks failed ({shown}); their "
            f"tracebacks are in {out}/tasks/<task>.parquet; rerun to retry them"
        )
        return 1
    return EXIT_OK


# ---- the entry point -------------------------------------------------------------------

_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_run,
    _add_reproduce,
    _add_calibrate,
    _add_app,
    _add_sweep,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``credsim`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Agent-based labour-market simulator of credential sharing, "
        "visibility and signalling on a professional network.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="subcommand", metavar="COMMAND", required=True)
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``credsim`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(words)
    except SystemExit as exc:  # --help, --version, usage errors (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.command = [PROG, *words]
    _log_to_terminal()
    process.tune()  # small pages, freed memory kept for reuse: faster, same numbers
    try:
        return args.handler(args)
    except (ScenarioError, _CliError, FileExistsError) as err:
        _err(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run folder was written", file=sys.stderr)
        return EXIT_INTERRUPTED


def entry() -> None:
    """The ``credsim`` program: :func:`main`, then exit with its code.

    By then the command has written and closed everything, so the objects left are
    frozen (``gc.freeze``) first: the interpreter's shutdown then skips its garbage
    collections over the ~110,000 objects of the imported libraries, a third of a second
    of every command. (Tests call :func:`main`, which leaves the collector alone.)
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
