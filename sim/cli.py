"""The ``credsim`` command: the only place that touches argv, paths and clocks.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments
and sets ``handler`` to a ``_cmd_<name>(args) -> int`` function; :func:`main` parses
and dispatches. Adding a subcommand means adding those two functions and one line in
:data:`_SUBCOMMANDS`.

Exit codes: 0 success; 2 bad input detected before any work (an invalid scenario, an
output folder that exists); 130 interrupted with Ctrl-C. Unexpected errors propagate
with their traceback.

    credsim run small --seed 1
    credsim run scenarios/baseline.toml --out runs/base --overwrite --quiet
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim import __version__
from sim.params import Scenario, ScenarioError

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "main", "resolve_scenario"]

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

PROG = "credsim"
#: The project root: the folder holding the ``sim`` package (and ``scenarios/``).
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class _CliError(Exception):
    """Bad input found before any work; the message is printed, the exit code is 2."""


# ---- shared helpers --------------------------------------------------------------------


def resolve_scenario(name_or_path: str | Path) -> Path:
    """The scenario file for a path or a bare name.

    An existing file is used as given. Otherwise a bare name (``small`` or
    ``small.toml``, no folder part) is looked up as ``scenarios/<name>.toml`` in the
    current directory, then in the project root next to the ``sim`` package.

    Raises
    ------
    ScenarioError
        Nothing matches; the message lists the places tried and the names available.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.parent != Path(".") or path.suffix not in ("", ".toml"):
        raise ScenarioError(f"{path}: no such scenario file")
    stem = path.stem if path.suffix == ".toml" else path.name
    folders = list(dict.fromkeys([Path.cwd() / "scenarios", PROJECT_ROOT / "scenarios"]))
    for folder in folders:
        candidate = folder / f"{stem}.toml"
        if candidate.is_file():
            return candidate
    names = sorted({p.stem for f in folders if f.is_dir() for p in f.glob("*.toml")})
    tried = ", ".join(str(f / f"{stem}.toml") for f in folders)
    known = f"; known scenarios: {', '.join(names)}" if names else ""
    raise ScenarioError(f"{name_or_path}: no such scenario file or name (tried {tried}){known}")


def _seed(text: str) -> int:
    """argparse type: a non-negative integer seed."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid seed {text!r}: expected an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"invalid seed {value}: expected >= 0")
    return value


def _safe_name(name: str) -> str:
    """A scenario name usable as a folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "scenario"


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


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
        help="a scenario TOML file, or a bare name looked up in scenarios/",
    )
    p.add_argument("--seed", type=_seed, default=0, help="root seed of the run (default: 0)")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run folder to write (default: runs/<scenario name>-seed<N>)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run folder if it exists"
    )
    p.add_argument(
        "--no-agents",
        dest="agents",
        action="store_false",
        help="skip the Mesa agent views (faster to build; no number depends on them)",
    )
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
    out: Path = args.out or Path("runs") / f"{_safe_name(name)}-seed{args.seed}"
    if out.exists() and not args.overwrite:
        raise _CliError(f"{out} already exists; pass --overwrite to replace it")

    timestamp = datetime.now(UTC).isoformat(timespec="seconds")
    show_progress = not args.quiet and err_console.is_terminal
    t0 = time.perf_counter()
    if show_progress:
        parts = "population, graph" + (", agents" if args.agents else "")
        with err_console.status(f"building {name}: {parts}"):
            model = CredentialMarket(scenario, rng=args.seed, agents=args.agents)
    else:
        model = CredentialMarket(scenario, rng=args.seed, agents=args.agents)
    t_build = time.perf_counter() - t0
    total = model.end_week - model.week

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
            "agents": args.agents,
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

    timing = (
        f"build {t_build:.2f} s, {total} weekly steps {t_steps:.2f} s, write {t_write:.2f} s"
    )
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

    arms = Table(title="by arm (naive difference, not the study estimator)",
                 title_justify="left")
    arms.add_column("")
    arms.add_column("treated", justify="right")
    arms.add_column("control", justify="right")
    arms.add_column("T − C (pp)", justify="right")
    for label, key in _ARM_ROWS:
        diff = s[f"{key}_diff_pp"]
        d = "n/a" if diff is None or diff != diff else f"{diff:+.2f}"
        arms.add_row(label, _pct(s[f"{key}_treated"]), _pct(s[f"{key}_control"]), d)
    return Group(run, arms)


# ---- the entry point -------------------------------------------------------------------

_SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (_add_run,)


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
    try:
        return args.handler(args)
    except (ScenarioError, _CliError, FileExistsError) as err:
        _err(str(err))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; no run folder was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
