"""The scenarios ship inside the package: the wheel holds them, and an installed wheel
finds them by name from any folder (``credsim run small``).

The wheel is built with ``uv build`` and installed with ``uv pip install --no-deps`` into
a fresh virtual environment; its dependencies are taken from this test environment
through a ``.pth`` line (which adds that ``site-packages`` folder but does not run its own
``.pth`` files, so the editable install of this checkout is not on the path). That keeps
the test offline and about ten seconds long.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from sim import scenarios

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv")

pytestmark = pytest.mark.skipif(
    UV is None,
    reason="uv is not on PATH: these tests build and install the wheel with uv "
    "(the README's set-up and .ci/run install it)",
)


def _uv(*args: str) -> subprocess.CompletedProcess:
    # run from the project folder: there `uv` resolves (e.g. through a pyenv shim)
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run(
        [UV, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=True
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _uv("build", "--wheel", "-o", str(out), str(ROOT))
    (whl,) = out.glob("credsim-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; its ``bin`` folder."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    _uv("venv", "-q", "--python", sys.executable, str(venv))
    python = venv / "bin" / "python"
    _uv("pip", "install", "-q", "--offline", "--no-deps", "--python", str(python), str(wheel))
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = sysconfig.get_path("purelib")  # this environment's packages
    (Path(purelib) / "_credsim_test_deps.pth").write_text(deps + "\n", encoding="utf-8")
    return venv / "bin"


def test_the_wheel_holds_every_packaged_scenario(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    packaged = {f"sim/scenarios/{p.name}" for p in scenarios.PACKAGED.glob("*.toml")}
    assert {"sim/scenarios/small.toml", "sim/scenarios/paper.toml"} <= packaged
    assert packaged <= names, packaged - names
    assert "sim/scenarios/__init__.py" in names


def test_the_installed_wheel_finds_scenarios_by_name_from_any_folder(
    installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [installed / "credsim", "run", "small", "--help"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "SCENARIO" in run.stdout
    probe = subprocess.run(
        [
            installed / "python",
            "-c",
            "import sim, sim.scenarios as s; print(sim.__file__); print(s.find('small')); "
            "print(s.find('paper')); print(s.load('small').meta.name); "
            "print(','.join(s.names()))",
        ],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    module, small, paper, loaded, names = probe.stdout.splitlines()
    site = Path(module).parent.parent
    assert not Path(module).is_relative_to(ROOT), "the checkout's sim was imported"
    assert Path(small) == site / "sim" / "scenarios" / "small.toml"
    assert Path(paper) == site / "sim" / "scenarios" / "paper.toml"
    assert loaded == "small"  # its base, paper, found by name in the installed package
    assert set(names.split(",")) == {p.stem for p in scenarios.PACKAGED.glob("*.toml")}


def test_the_installed_credsim_runs_a_scenario_extending_a_packaged_one(
    installed: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "tiny.toml").write_text(
        '[meta]\nbase = "small"\nname = "tiny"\n\n[population]\nn_learners = 2000\n',
        encoding="utf-8",
    )
    run = subprocess.run(
        [installed / "credsim", "run", "tiny.toml", "--quiet"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    out = elsewhere / "runs" / "tiny-seed0"
    resolved = scenarios.load("small").with_overrides(
        {"meta.name": "tiny", "meta.description": "", "population.n_learners": 2000}
    )
    assert scenarios.load(out / "scenario.toml") == resolved
