"""Tests of parameter sweeps (``sim.sweep``, ``credsim sweep``).

Design and validation are pure and fast. Real tasks run the model at 2,000 learners; the
resume and worker-death tests use slow fake tasks (``tests/task_fakes.py``), which worker
processes (a process pool, a Dask worker) import by name. The Dask tests use a real
scheduler and workers started as separate processes on the loopback interface
(``conftest.dask_cluster``); the worker-death test is marked slow (``-m slow``).
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import (
    Cluster,
    assert_global_random_state_is,
    global_random_state,
    helper_env,
    stop_process,
)

from sim import cli, scenarios, sweep
from sim.params import Scenario
from sim.runner.store import _locked

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ROOT / "experiments" / "sweeps"

#: A tiny real sweep: 2 points x 2 replications at 2,000 learners, with twins.
TINY = """\
[sweep]
name = "tiny"
base = "small"
replications = 2
seed = 11
twin = true

[sweep.overrides]
"population.n_learners" = 2000

[parameters]
"signal.credibility" = { values = [0.3, 0.9] }
"""


def _fake_sweep(n_points: int, replications: int = 2, name: str = "fake") -> str:
    values = ", ".join(str(round(0.1 * (i + 1), 2)) for i in range(n_points))
    return (
        f'[sweep]\nname = "{name}"\nbase = "small"\nreplications = {replications}\n'
        f'seed = 5\n\n[parameters]\n"signal.credibility" = {{ values = [{values}] }}\n'
    )


def _spawn_pool(workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def _task_files(out: Path) -> list[Path]:
    return sorted(p for p in (out / "tasks").glob("*.parquet") if not p.name.startswith("."))


def _check_complete(results: pd.DataFrame, tasks: list[sweep.Task], ids: set[str]) -> None:
    """One row set per task: every task once, the same estimate ids, no duplicates."""
    assert list(dict.fromkeys(results["task_id"])) == [t.task_id for t in tasks]
    assert not results.duplicated(["task_id", "id"]).any()
    for _, rows in results.groupby("task_id"):
        assert set(rows["id"]) == ids
    assert (results["status"] == "ok").all()


# ---- design and seeds -------------------------------------------------------------------


def test_expansion_is_deterministic_with_spawned_seeds() -> None:
    text = TINY.replace("[0.3, 0.9]", "[0.3, 0.6, 0.9]")
    a, b = sweep.expand(sweep.parse_sweep(text)), sweep.expand(sweep.parse_sweep(text))
    assert a == b
    assert [t.task_id for t in a] == [
        "p0000-r00",
        "p0000-r01",
        "p0001-r00",
        "p0001-r01",
        "p0002-r00",
        "p0002-r01",
    ]
    assert [(t.point, t.replication, t.index) for t in a] == [
        (p, r, 2 * p + r) for p in range(3) for r in range(2)
    ]
    assert [t.overrides for t in a][::2] == [{"signal.credibility": v} for v in (0.3, 0.6, 0.9)]
    children = np.random.SeedSequence(11).spawn(6)
    for t, child in zip(a, children, strict=True):
        assert (t.seed_entropy, t.spawn_key) == (11, (t.index,))
        np.testing.assert_array_equal(t.seed.generate_state(4), child.generate_state(4))
    states = {tuple(t.seed.generate_state(4)) for t in a}
    assert len(states) == len(a)  # every task its own stream
    assert all(t.scenario().population.n_learners == 2000 for t in a)


def test_grid_and_list_form_a_full_factorial_last_key_fastest() -> None:
    text = TINY.replace(
        '"signal.credibility" = { values = [0.3, 0.9] }',
        '"signal.credibility" = { grid = [0.1, 0.3, 3] }\n'
        '"visibility.enabled" = { values = [true, false] }\n'
        '"sharing.nudge_strength" = { values = [1, 2], relative = true }',
    )
    # a base with the schema's round nudge (small's calibrated one has 16 digits)
    spec = sweep.parse_sweep(text.replace('base = "small"', 'base = "uncalibrated"'))
    assert spec.keys == ("signal.credibility", "visibility.enabled", "sharing.nudge_strength")
    assert spec.n_points == 12 and spec.n_tasks == 24
    nudge = Scenario().sharing.nudge_strength
    assert spec.points[:3] == (
        {"signal.credibility": 0.1, "visibility.enabled": True, "sharing.nudge_strength": nudge},
        {
            "signal.credibility": 0.1,
            "visibility.enabled": True,
            "sharing.nudge_strength": 2 * nudge,
        },
        {"signal.credibility": 0.1, "visibility.enabled": False, "sharing.nudge_strength": nudge},
    )
    assert sorted({p["signal.credibility"] for p in spec.points}) == [0.1, 0.2, 0.3]
    assert all(isinstance(p["visibility.enabled"], bool) for p in spec.points)


@pytest.mark.parametrize("method", ["sobol", "lhs"])
def test_sampled_designs_fill_the_ranges_and_follow_the_seed(method: str) -> None:
    text = (
        TINY.replace(
            '"signal.credibility" = { values = [0.3, 0.9] }',
            '"signal.credibility" = { range = [0.2, 0.8] }\n'
            '"population.n_learners" = { range = [1500, 3000] }\n'
            '"visibility.enabled" = { values = [true, false] }',
        ).replace('"population.n_learners" = 2000\n', "")
        + f'\n[sample]\nmethod = "{method}"\nn = 8\n'
    )
    before = global_random_state()
    spec = sweep.parse_sweep(text)
    assert_global_random_state_is(before)  # the design has its own seeded stream
    assert spec.n_points == 16  # 2 list values x 8 sampled points
    cred = np.array([p["signal.credibility"] for p in spec.points[:8]])
    learners = [p["population.n_learners"] for p in spec.points[:8]]
    assert ((cred >= 0.2) & (cred <= 0.8)).all()
    assert all(isinstance(n, int) and 1500 <= n <= 3000 for n in learners)
    # the same 8 sampled points under each list value
    assert [p["signal.credibility"] for p in spec.points[8:]] == list(cred)
    # one point per stratum in each dimension (Sobol' in base 2, LHS by construction)
    strata = np.floor((cred - 0.2) / 0.6 * 8).astype(int)
    assert sorted(strata) == list(range(8))
    assert sweep.parse_sweep(text).points == spec.points
    other = sweep.parse_sweep(text.replace("seed = 11", "seed = 12"))
    assert other.points != spec.points


def test_treated_share_one_records_true_effects_from_twins() -> None:
    text = TINY.replace(
        '"signal.credibility" = { values = [0.3, 0.9] }',
        '"study.treated_share" = { values = [1.0] }',
    )
    task = sweep.expand(sweep.parse_sweep(text))[0]
    rows = sweep.task_rows(task)
    assert (rows["status"] == "ok").all(), rows["traceback"].iloc[0]
    assert set(rows["id"]) == {"shared", "new_job", "new_job_in_scope", "any_view"}
    assert (rows["estimator"] == "twin").all()
    assert rows["effect"].isna().all()
    assert rows["true_effect"].notna().all() and rows["control_mean"].notna().all()


# ---- validation --------------------------------------------------------------------------

_BAD = {
    "unknown sweep key": (
        ("replications = 2", "replicatons = 2"),
        ["unknown key in [sweep] 'replicatons'", "did you mean 'replications'"],
    ),
    "unknown table": (
        ("[parameters]", "[paramters]"),
        ["unknown table 'paramters'", "did you mean 'parameters'"],
    ),
    "unknown parameter": (
        ('"signal.credibility" =', '"signal.credibilty" ='),
        ["unknown scenario key 'signal.credibilty'", "did you mean 'signal.credibility'"],
    ),
    "unknown spec key": (("{ values =", "{ valuess ="), ["did you mean 'values'"]),
    "out of range": (
        ("[0.3, 0.9]", "[0.3, 25.5]"),
        ["signal.credibility", "allowed range [0, 20]", "got 25.5"],
    ),
    "grid out of range": (
        ("{ values = [0.3, 0.9] }", "{ grid = [0.5, 20.25, 4] }"),
        ["signal.credibility", "allowed range [0, 20]", "got 20.25"],
    ),
    "override out of range": (
        ("= 2000", "= 100"),
        ["[sweep.overrides]", "population.n_learners", "allowed range [200, 5000000]"],
    ),
    "wrong type": (("[0.3, 0.9]", '["high", 0.9]'), ["signal.credibility", "'high'"]),
    "replications 0": (
        ("replications = 2", "replications = 0"),
        ["replications: expected an integer >= 1, got 0"],
    ),
    "replications as text": (
        ("replications = 2", 'replications = "2"'),
        ["replications: expected an integer, got '2'"],
    ),
    "negative seed": (("seed = 11", "seed = -1"), ["seed: expected an integer >= 0"]),
    "no such base": (
        ('base = "small"', 'base = "smal"'),
        ["base = 'smal': no such scenario", "small"],
    ),
    "range without sample": (
        ("{ values = [0.3, 0.9] }", "{ range = [0.3, 0.9] }"),
        ["add a [sample] table"],
    ),
    "empty arm without twin": (
        (
            '[parameters]\n"signal.credibility" = { values = [0.3, 0.9] }',
            '[parameters]\n"study.treated_share" = { values = [0.5, 1.0] }',
        ),
        ["treated_share = 1.0", "twin = true"],
    ),
    "not TOML": (("seed = 11", "seed = = 11"), ["not valid TOML"]),
    # 2,000 learners: ~84 matched; 0.999 leaves ~0.1 in the control arm (point 1)
    "nearly empty arm": (
        (
            '"signal.credibility" = { values = [0.3, 0.9] }',
            '"study.treated_share" = { values = [0.5, 0.999] }',
        ),
        [
            "point 1",
            "key 'study.treated_share'",
            "control arm",
            "allowed range for this population [0.3572, 0.6428] share",
        ],
    ),
    "population too small for two arms": (
        ("= 2000", "= 1000"),
        ["[sweep.overrides]", "key 'study.treated_share'", "0 or 1 only", "n_learners >= 1,429"],
    ),
}


@pytest.mark.parametrize("case", list(_BAD))
def test_invalid_sweep_files_fail_before_any_work(case: str, tmp_path: Path) -> None:
    (old, new), expected = _BAD[case]
    text = TINY.replace(old, new, 1)
    if case == "empty arm without twin":
        text = text.replace("twin = true", "twin = false")
    assert text != TINY
    path = _write(tmp_path, "bad.toml", text)
    with pytest.raises(sweep.SweepError) as err:
        sweep.load_sweep(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, message


def test_sobol_needs_a_power_of_two() -> None:
    text = TINY.replace("{ values = [0.3, 0.9] }", "{ range = [0.3, 0.9] }")
    with pytest.raises(sweep.SweepError, match=r"power of 2 \(e\.g\. 8 or 16\)"):
        sweep.parse_sweep(text + '\n[sample]\nmethod = "sobol"\nn = 10\n')
    with pytest.raises(sweep.SweepError, match="did you mean 'sobol'"):
        sweep.parse_sweep(text + '\n[sample]\nmethod = "sobel"\nn = 8\n')


def test_cli_rejects_a_bad_sweep_file_with_exit_2(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path, "bad.toml", TINY.replace("replications = 2", "replications = 0"))
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--out", str(out)]) == cli.EXIT_USAGE
    assert "replications: expected an integer >= 1" in capsys.readouterr().err
    assert not out.exists()


def test_experiment_sweep_files_are_valid() -> None:
    """Every file of experiments/sweeps/ loads and expands (paper -> baseline if absent)."""
    expected = {  # name: (points, replications, twin)
        "nudge_credibility": (25, 2, True),
        "credibility_boost": (6, 4, True),
        "stronger_nudge": (5, 4, True),
        "everyone_nudged": (2, 6, True),
        "channels": (4, 4, True),
        "small_demo": (9, 2, False),
        "signal_precision": (4, 4, True),
        "bench_small": (10, 10, False),
        "everyone_nudged_pause": (2, 6, True),
        "crowding_share": (14, 5, True),
        "targeted_nudging": (9, 8, True),
    }
    files = sorted(SWEEPS.glob("*.toml"))
    assert {p.stem for p in files} == set(expected)
    have_paper = "paper" in scenarios.names()
    for path in files:
        text = path.read_text(encoding="utf-8")
        if not have_paper:
            text = text.replace('base = "paper"', 'base = "baseline"')
        spec = sweep.parse_sweep(text, source=str(path), folder=path.parent)
        assert spec.name == path.stem
        assert (spec.n_points, spec.replications, spec.twin) == expected[path.stem], path
        assert len(sweep.expand(spec)) == spec.n_tasks
    channels = sweep.parse_sweep(
        (SWEEPS / "channels.toml").read_text().replace('"paper"', '"baseline"')
    )
    assert {tuple(p.values()) for p in channels.points} == {
        (True, True),
        (True, False),
        (False, True),
        (False, False),
    }
    grid = sweep.parse_sweep(
        (SWEEPS / "nudge_credibility.toml").read_text().replace('"paper"', '"baseline"')
    )
    nudges = sorted({p["sharing.nudge_strength"] for p in grid.points})
    base = grid.base.sharing.nudge_strength
    assert nudges[0] == 0 and nudges[-1] == pytest.approx(4 * base) and len(nudges) == 5
    # credibility as multiples of the base value: none, about 0.5 and 1, the base, twice it
    cred = sorted({p["signal.credibility"] for p in grid.points})
    base_cred = grid.base.signal.credibility
    assert cred == pytest.approx([0.0, 0.2 * base_cred, 0.4 * base_cred, base_cred, 2 * base_cred])


# ---- a real local run ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """`credsim sweep` on TINY with two local worker processes: (file, out, exit code)."""
    folder = tmp_path_factory.mktemp("local")
    path = _write(folder, "tiny.toml", TINY)
    out = folder / "out"
    code = cli.main(["sweep", str(path), "--workers", "2", "--out", str(out)])
    return path, out, code


def test_local_run_writes_every_file(local_run: tuple[Path, Path, int]) -> None:
    path, out, code = local_run
    assert code == cli.EXIT_OK
    assert (out / "sweep.toml").read_text() == TINY
    spec = sweep.load_sweep(path)
    assert Scenario.from_toml(out / "base.toml") == spec.base
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["seed"] == 11 and meta["sweep"]["master_seed"] == 11
    assert meta["sweep"]["n_tasks"] == 4 and meta["packages"]["numpy"]
    assert [s["ran"] for s in meta["sessions"]] == [4]
    tasks = sweep.expand(spec)
    assert [p.stem for p in _task_files(out)] == [t.task_id for t in tasks]

    results = pd.read_parquet(out / "results.parquet")
    ids = set(results["id"])
    assert {"shared", "new_job", "new_job_in_scope", "any_view"} <= ids
    _check_complete(results, tasks, ids)
    for t in tasks:
        rows = results[results["task_id"] == t.task_id]
        assert (rows["signal.credibility"] == t.overrides["signal.credibility"]).all()
        assert (rows["seed_entropy"] == 11).all()
        assert (rows["spawn_key"] == json.dumps([t.index])).all()
        assert (rows["wall_seconds"] > 0).all()
        pd.testing.assert_frame_equal(  # the task file and the table agree
            rows.reset_index(drop=True), pd.read_parquet(out / "tasks" / f"{t.task_id}.parquet")
        )
    shared = results[results["id"] == "shared"]
    assert shared["true_effect"].notna().all() and shared["effect"].notna().all()

    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == 2 * len(ids)
    assert (summary["n_replications"] == 2).all()
    row = summary[(summary["point"] == 0) & (summary["id"] == "shared")].iloc[0]
    assert row["signal.credibility"] == 0.3
    assert row["effect_mean"] == pytest.approx(shared["effect"].iloc[:2].mean())
    assert row["effect_sd"] == pytest.approx(shared["effect"].iloc[:2].std(ddof=1))
    assert row["true_effect_mean"] == pytest.approx(shared["true_effect"].iloc[:2].mean())


def test_rerun_skips_finished_tasks_and_refuses_another_sweep(
    local_run: tuple[Path, Path, int], tmp_path: Path, capsys
) -> None:
    path, out, _ = local_run
    before = {p.name: p.stat().st_mtime_ns for p in _task_files(out)}
    assert cli.main(["sweep", str(path), "--workers", "1", "--out", str(out)]) == 0
    assert "0 tasks run (4 already done)" in capsys.readouterr().out.replace("\n", " ")
    assert {p.name: p.stat().st_mtime_ns for p in _task_files(out)} == before

    other = _write(tmp_path, "tiny.toml", TINY.replace("seed = 11", "seed = 12"))
    assert cli.main(["sweep", str(other), "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "holds results of a different sweep" in err and "sweep.seed" in err
    assert {p.name: p.stat().st_mtime_ns for p in _task_files(out)} == before


# ---- failures -------------------------------------------------------------------------------


def test_a_failing_task_is_recorded_and_the_others_finish(fakes, tmp_path: Path) -> None:
    spec = sweep.parse_sweep(_fake_sweep(3))
    out = tmp_path / "out"
    with _spawn_pool(2) as pool:  # one pool for both runs (workers start once)
        outcome = sweep.run_sweep(spec, out, pool, fakes.fail_on_point_1)
        results = pd.read_parquet(out / "results.parquet")
        summary = pd.read_parquet(out / "summary.parquet")
        again = sweep.run_sweep(spec, out, pool, fakes.estimates)  # a rerun retries them
    assert outcome.failed == ["p0001-r00", "p0001-r01"] and not outcome.ok
    assert list(dict.fromkeys(results["task_id"])) == [t.task_id for t in sweep.expand(spec)]
    bad = results[results["status"] == "error"]
    assert list(bad["task_id"]) == ["p0001-r00", "p0001-r01"]  # one row each
    assert (bad["signal.credibility"] == 0.2).all()
    assert bad["error"].str.startswith("RuntimeError: boom at p0001").all()
    assert bad["traceback"].str.contains("fail_on_point_1").all()
    assert bad["id"].isna().all()
    good = results[results["status"] == "ok"]
    assert good.groupby("task_id").size().tolist() == [2, 2, 2, 2]
    assert sorted(set(summary["point"])) == [0, 2]

    assert (again.already_done, again.ran, again.ok) == (4, 2, True)
    _check_complete(
        pd.read_parquet(out / "results.parquet"), sweep.expand(spec), {"shared", "new_job"}
    )


def test_cli_exits_1_after_writing_everything_when_a_task_fails(
    fakes, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setattr(
        sweep, "run_sweep", functools.partial(sweep.run_sweep, task_fn=fakes.fail_on_point_1)
    )
    path = _write(tmp_path, "fake.toml", _fake_sweep(2, replications=1))
    out = tmp_path / "out"
    assert cli.main(["sweep", str(path), "--workers", "1", "--out", str(out)]) == 1
    assert "1 of 2 tasks failed (p0001-r00)" in capsys.readouterr().err
    assert len(pd.read_parquet(out / "results.parquet")) == 3  # 2 estimates + 1 error row


# ---- resume after SIGKILL -------------------------------------------------------------------

_RUNNER = """\
import functools, multiprocessing, sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import task_fakes
from sim import sweep

if __name__ == "__main__":
    spec = sweep.load_sweep(sys.argv[1])
    task = functools.partial(task_fakes.slow, seconds=0.4, log=sys.argv[3])
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=ctx) as pool:
        outcome = sweep.run_sweep(spec, sys.argv[2], pool, task)
    sys.exit(0 if outcome.ok else 1)
"""


def test_resume_after_sigkill_runs_only_the_missing_tasks(fakes, tmp_path: Path) -> None:
    spec_path = _write(tmp_path, "fake.toml", _fake_sweep(8))  # 16 tasks of 0.4 s
    runner = _write(tmp_path, "runner.py", _RUNNER)
    out = tmp_path / "out"
    env = helper_env()

    def start(log: Path) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, str(runner), str(spec_path), str(out), str(log)],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    first = start(tmp_path / "log1")
    try:
        deadline = time.monotonic() + 120
        while len(_task_files(out)) < 5 if out.exists() else True:
            assert first.poll() is None, first.communicate()[0].decode()
            assert time.monotonic() < deadline, "no task finished in time"
            time.sleep(0.05)
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the sweep and its workers, mid-way
        first.wait(timeout=30)
    assert not (out / "results.parquet").exists()
    spec = sweep.load_sweep(spec_path)
    tasks = sweep.expand(spec)
    finished = [p.stem for p in _task_files(out)]
    assert 5 <= len(finished) < len(tasks)
    corrupt = out / "tasks" / f"{finished[0]}.parquet"  # a torn file is treated as missing
    corrupt.write_bytes(corrupt.read_bytes()[:200])
    (out / "tasks" / f".{tasks[-1].task_id}.parquet.tmp-999999").write_bytes(b"PAR1 torn")
    missing = {t.task_id for t in tasks} - set(finished[1:])

    second = start(tmp_path / "log2")
    output = second.communicate(timeout=180)[0].decode()
    assert second.returncode == 0, output
    ran = (tmp_path / "log2").read_text().split()
    assert sorted(ran) == sorted(missing)  # each missing task once, nothing else

    results = pd.read_parquet(out / "results.parquet")
    _check_complete(results, tasks, {"shared", "new_job"})
    for t in tasks:  # same seeds, same numbers, whichever session ran the task
        expected = fakes.estimates(t)["effect"].to_numpy()
        np.testing.assert_array_equal(
            results.loc[results["task_id"] == t.task_id, "effect"].to_numpy(), expected
        )
    assert sorted(p.name for p in (out / "tasks").iterdir()) == [
        f"{t.task_id}.parquet" for t in tasks
    ]
    assert len(json.loads((out / "manifest.json").read_text())["sessions"]) == 1


# ---- a real Dask cluster -----------------------------------------------------------------


def test_dask_cluster_gives_the_local_results_task_by_task(
    local_run: tuple[Path, Path, int], dask_cluster: Cluster, tmp_path: Path
) -> None:
    path, local_out, _ = local_run
    out = tmp_path / "dask"
    code = cli.main(["sweep", str(path), "--scheduler", dask_cluster.address, "--out", str(out)])
    assert code == 0, dask_cluster.logs()
    meta = json.loads((out / "manifest.json").read_text())
    assert meta["sessions"][0]["executor"].startswith(f"Dask cluster {dask_cluster.address}")
    drop = ["wall_seconds", "warnings"]
    here = pd.read_parquet(out / "results.parquet").drop(columns=drop)
    local = pd.read_parquet(local_out / "results.parquet").drop(columns=drop)
    pd.testing.assert_frame_equal(here, local)  # same seeds -> identical estimates


@pytest.mark.slow  # ~12 s more on top of the cluster test above; run with -m slow
def test_dask_sweep_completes_when_a_worker_dies(
    dask_cluster: Cluster, fakes, tmp_path: Path
) -> None:
    from distributed import Client

    extra = dask_cluster.start_worker("doomed")
    killed: list[int] = []
    try:
        with Client(dask_cluster.address, timeout="30s") as client:
            client.wait_for_workers(3, timeout=120)
            doomed = next(
                a for a, w in client.scheduler_info()["workers"].items() if w["name"] == "doomed"
            )
            busy: list[bool] = []

            def progress(done: int, total: int) -> None:
                if killed or done < 2:
                    return
                if client.processing([doomed]).get(doomed) or done >= total - 3:
                    busy.append(bool(client.processing([doomed]).get(doomed)))
                    os.killpg(extra.pid, signal.SIGKILL)  # mid-task, after 2+ tasks
                    killed.append(done)

            spec = sweep.parse_sweep(_fake_sweep(5))  # 10 tasks of 1.5 s on 3 workers
            outcome = sweep.run_sweep(
                spec,
                tmp_path / "out",
                client.get_executor(pure=False),
                functools.partial(fakes.slow, seconds=1.5),
                progress=progress,
            )
    finally:
        stop_process(extra)
    assert killed and busy == [True], "the worker was not killed while it held a task"
    assert outcome.ok and outcome.ran == 10, outcome.failed
    _check_complete(
        pd.read_parquet(tmp_path / "out" / "results.parquet"),
        sweep.expand(spec),
        {"shared", "new_job"},
    )


def test_a_sweep_folder_is_used_by_one_process_at_a_time(tmp_path: Path) -> None:
    spec = sweep.parse_sweep(_fake_sweep(1, replications=1))
    out = tmp_path / "out"
    out.mkdir()
    with ThreadPoolExecutor(1) as pool:
        with _locked(out, "sweep"), pytest.raises(sweep.SweepError, match="another sweep is"):
            sweep.run_sweep(spec, out, pool)
        (tmp_path / "other").mkdir()
        _write(tmp_path / "other", "notes.txt", "mine")
        with pytest.raises(sweep.SweepError, match="not a sweep folder"):
            sweep.run_sweep(spec, tmp_path / "other", pool)
