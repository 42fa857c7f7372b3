"""Process-wide memory settings (sim.process): what they set, and what they leave alone."""

import os
import subprocess
import sys

import numpy as np
import pytest

from sim import process

_numpy_switch = np._core.multiarray


@pytest.fixture
def clean_env(monkeypatch):
    """The settings' variables absent (restored afterwards), and numpy's switch restored."""
    for var in (process.HUGEPAGE_VAR, *(v for v, _, _ in process.MALLOC_SETTINGS)):
        monkeypatch.setenv(var, "unset")  # recorded, so the teardown restores the original
        monkeypatch.delenv(var)
    before = _numpy_switch._get_madvise_hugepage()
    yield monkeypatch
    _numpy_switch._set_madvise_hugepage(before)


def test_small_pages_turns_numpys_huge_pages_off_and_passes_it_on(clean_env):
    _numpy_switch._set_madvise_hugepage(True)
    assert process.small_pages()
    assert not _numpy_switch._get_madvise_hugepage()
    assert os.environ[process.HUGEPAGE_VAR] == "0"  # for child processes


def test_small_pages_leaves_an_explicit_choice_alone(clean_env):
    clean_env.setenv(process.HUGEPAGE_VAR, "1")
    _numpy_switch._set_madvise_hugepage(False)
    assert not process.small_pages()
    assert _numpy_switch._get_madvise_hugepage()
    assert os.environ[process.HUGEPAGE_VAR] == "1"


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's malloc settings exist on Linux only"
)
def test_keep_freed_memory_sets_glibc_and_the_environment_but_not_a_users_value(clean_env):
    var = process.MALLOC_SETTINGS[1][0]
    clean_env.setenv(var, "12345")
    made = process.keep_freed_memory()
    assert os.environ[var] == "12345"
    for other, _, default in process.MALLOC_SETTINGS:
        if other != var:
            assert os.environ[other] == str(default)
    if os.confstr("CS_GNU_LIBC_VERSION"):  # glibc: mallopt accepted every setting
        assert made


def test_a_child_process_inherits_the_settings(clean_env):
    process.tune()
    code = "import numpy as np; print(np._core.multiarray._get_madvise_hugepage())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def test_credsim_tunes_its_process_before_a_command(clean_env, tmp_path):
    from sim import cli

    _numpy_switch._set_madvise_hugepage(True)
    # an unknown scenario: the command fails fast, after the process was tuned
    assert cli.main(["run", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "r")]) == 2
    assert not _numpy_switch._get_madvise_hugepage()
    assert os.environ[process.HUGEPAGE_VAR] == "0"
