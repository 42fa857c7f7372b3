"""Tests of the ``credsim`` command line (``sim.cli``) and the run store (``sim.store``).

Every run uses a tiny scenario (3,000 learners) so the file stays fast.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sim import cli, scenarios, store
from sim.params import Scenario

N_LEARNERS = 3000


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small, valid scenario file."""
    path = tmp_path / "tiny.toml"
    path.write_text(
        f'[meta]\nname = "tiny"\n\n[population]\nn_learners = {N_LEARNERS}\n',
        encoding="utf-8",
    )
    return path


def _run(scenario: Path, out: Path, *extra: str) -> int:
    return cli.main(["run", str(scenario), "--seed", "3", "--out", str(out), "--quiet", *extra])


def _leftovers(folder: Path) -> list[str]:
    """Hidden partial/old folders left next to run folders."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_run_writes_a_complete_run_folder(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "runs" / "tiny-3"
    assert _run(tiny, out) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(store.RUN_FILES)
    assert _leftovers(out.parent) == []
    assert str(out) in capsys.readouterr().out

    series = pd.read_parquet(out / "series.parquet")
    learners = pd.read_parquet(out / "learners.parquet")
    hires = pd.read_parquet(out / "hires.parquet")
    scenario = Scenario.from_toml(tiny)
    steps = scenario.calendar.burn_in_weeks + scenario.calendar.n_weeks
    assert len(series) == steps
    assert len(learners) == N_LEARNERS
    assert {"week", "date", "learner", "slot", "employer", "in_scope", "status"} <= set(
        hires.columns
    )

    meta = json.loads((out / "manifest.json").read_text())
    assert meta["seed"] == 3
    assert meta["scenario"] == "tiny"
    assert meta["command"][:2] == ["credsim", "run"]
    assert meta["timestamp"]
    assert set(meta["git"]) == {"commit", "dirty"}
    assert meta["git"]["commit"] == "unknown" or len(meta["git"]["commit"]) == 40
    for pkg in ("numpy", "pandas", "mesa", "networkx", "pyarrow"):
        assert meta["packages"][pkg]
    assert meta["python"]

    assert Scenario.from_toml(out / "scenario.toml") == scenario

    summary = json.loads((out / "summary.json").read_text())
    assert summary["learners"] == N_LEARNERS
    assert summary["weeks"] == steps
    assert summary["matched_learners"] == int(learners["matched"].sum())
    assert summary["hires_learners"] == len(hires)  # learners' hires; background ones counted
    assert summary["hires_background"] == series["hires_background"].sum()
    assert summary["hires_learners"] + summary["hires_background"] == (
        series["vacancies_filled"].sum()
    )
    for key in ("shared", "new_job", "new_job_in_scope", "any_view"):
        t, c = summary[f"{key}_treated"], summary[f"{key}_control"]
        assert 0 <= t <= 1 and 0 <= c <= 1
        assert summary[f"{key}_diff_pp"] == pytest.approx(100 * (t - c))
    assert 0 <= summary["employment_final"] <= 1


def test_a_run_of_a_file_with_a_base_writes_the_resolved_scenario(tmp_path: Path) -> None:
    """A scenario file may say only how it differs from another; the run folder still
    holds every key explicit, and no base."""
    path = tmp_path / "mine.toml"
    path.write_text(
        f'[meta]\nbase = "small"\nname = "mine"\n[population]\nn_learners = {N_LEARNERS}\n',
        encoding="utf-8",
    )
    out = tmp_path / "runs" / "mine"
    assert _run(path, out) == 0
    written = (out / "scenario.toml").read_text(encoding="utf-8")
    data = tomllib.loads(written)
    assert "base" not in data["meta"]
    keys = {f"{s}.{k}" for s, body in data.items() for k in body}
    assert keys == {f"{s}.{k}" for s, body in Scenario().to_dict().items() for k in body}
    resolved = Scenario.from_toml(path)
    assert Scenario.from_toml(out / "scenario.toml") == resolved
    assert resolved.sharing.nudge_strength == scenarios.load("paper").sharing.nudge_strength


def test_same_seed_gives_identical_learners(tiny: Path, tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert _run(tiny, a) == 0
    assert _run(tiny, b) == 0
    assert (a / "learners.parquet").read_bytes() == (b / "learners.parquet").read_bytes()
    assert (a / "summary.json").read_text() == (b / "summary.json").read_text()
    # agents are views onto the arrays: no number depends on them
    assert _run(tiny, c) == 0
    pd.testing.assert_frame_equal(
        pd.read_parquet(a / "learners.parquet"), pd.read_parquet(c / "learners.parquet")
    )


def test_different_seeds_differ(tiny: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(tiny, a) == 0
    assert cli.main(["run", str(tiny), "--seed", "4", "--out", str(b), "--quiet"]) == 0
    la, lb = pd.read_parquet(a / "learners.parquet"), pd.read_parquet(b / "learners.parquet")
    assert not la.equals(lb)


def test_unknown_key_exits_2_and_writes_nothing(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[population]\nn_learnerz = 3000\n", encoding="utf-8")
    out = tmp_path / "runs" / "bad"
    assert _run(bad, out) == 2
    err = capsys.readouterr().err
    assert "population.n_learnerz" in err
    assert "Traceback" not in err
    assert not out.parent.exists()


def test_unknown_scenario_name_exits_2(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "no_such_scenario", "--quiet"]) == 2
    assert "no_such_scenario" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_bare_name_is_found_in_the_packaged_scenarios(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no scenarios/ here: falls back to the packaged ones
    assert cli.resolve_scenario("small") == scenarios.PACKAGED / "small.toml"
    local = tmp_path / "scenarios"
    local.mkdir()
    (local / "small.toml").write_text("", encoding="utf-8")
    assert cli.resolve_scenario("small").resolve() == (local / "small.toml").resolve()


def test_default_out_is_named_after_scenario_and_seed(
    tiny: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", str(tiny), "--quiet"]) == 0
    assert (tmp_path / "runs" / "tiny-seed0" / "summary.json").is_file()
    meta = json.loads((tmp_path / "runs" / "tiny-seed0" / "manifest.json").read_text())
    assert meta["seed"] == 0


def test_existing_out_needs_overwrite(tiny: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("old", encoding="utf-8")
    assert _run(tiny, out) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "keep.txt").read_text() == "old"

    assert _run(tiny, out, "--overwrite") == 0
    assert not (out / "keep.txt").exists()
    assert (out / "summary.json").is_file()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_run_dir_cleans_up_on_error(tmp_path: Path, exc: type[BaseException]) -> None:
    final = tmp_path / "run"
    with pytest.raises(exc), store.atomic_run_dir(final) as tmp:
        assert tmp.parent == final.parent and tmp.name.startswith(".run.partial-")
        (tmp / "half.parquet").write_bytes(b"x")
        raise exc()
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_run_dir_keeps_old_folder_when_overwrite_fails(tmp_path: Path) -> None:
    final = tmp_path / "run"
    final.mkdir()
    (final / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError), store.atomic_run_dir(final, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert (final / "old.txt").read_text() == "old"


def test_atomic_run_dir_refuses_existing(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    with pytest.raises(FileExistsError, match="already exists"):
        with store.atomic_run_dir(tmp_path / "run"):
            pass  # pragma: no cover


def test_interrupt_while_writing_exits_130_and_leaves_nothing(
    tiny: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    def interrupted(result, path, manifest):
        (Path(path) / "series.parquet").write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(store, "write_run", interrupted)
    out = tmp_path / "runs" / "int"
    assert _run(tiny, out) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert _leftovers(out.parent) == []


def test_git_info_outside_a_checkout(tmp_path: Path) -> None:
    assert store.git_info(tmp_path) == {"commit": "unknown", "dirty": None}


def test_bad_seed_is_a_usage_error(tiny: Path, capsys) -> None:
    assert cli.main(["run", str(tiny), "--seed", "-1"]) == 2
    assert "seed" in capsys.readouterr().err


def test_manifest_records_spawn_key_of_a_replication() -> None:
    kids = np.random.SeedSequence(7).spawn(2)
    a, b = (store.manifest(Scenario(), k) for k in kids)
    assert a["seed"] == b["seed"] == 7
    assert (a["spawn_key"], b["spawn_key"]) == ([0], [1])
    assert store.manifest(Scenario(), 7)["spawn_key"] == []


def test_the_program_exits_with_mains_code_after_freezing_the_collector(monkeypatch) -> None:
    import gc

    monkeypatch.setattr(cli, "main", lambda: 3)
    try:
        with pytest.raises(SystemExit) as exc:
            cli.entry()
        assert exc.value.code == 3
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
