"""Installing: what ``make run`` and ``make test`` install into .venv, and a build of the
package that setuptools does not warn about."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def make_dry_run(target: str, venv: Path) -> list[str]:
    """The commands ``make TARGET`` would run with ``VENV=venv`` (``make -n``)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def pip_installs(commands: list[str]) -> list[str]:
    """What each ``pip install`` among ``commands`` installs (the last argument)."""
    return [line.split()[-1] for line in commands if re.search(r"pip install .*-e ", line)]


def test_make_run_installs_only_the_package(tmp_path: Path) -> None:
    """A fresh clone's ``make run``: the package and its dependencies, no extras (the
    example runs on the asyncio transport with the in-memory broadcast)."""
    commands = make_dry_run("run", tmp_path / "venv")
    assert pip_installs(commands) == ["."]
    assert "examples.chat.app:router" in commands[-1]


def test_make_test_after_make_run_installs_the_dev_set(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-run").touch()  # what `make run` left
    commands = make_dry_run("test", venv)
    assert pip_installs(commands) == ["'.[dev]'"]
    assert any("pytest" in line for line in commands)


def test_make_run_after_make_test_installs_nothing(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()
    (venv / ".installed-run").touch()
    assert pip_installs(make_dry_run("run", venv)) == []
    assert pip_installs(make_dry_run("test", venv)) == []


def test_the_build_has_an_spdx_license_and_no_setuptools_warning(tmp_path: Path) -> None:
    """``license = "MIT"`` (an SPDX expression), not the deprecated TOML table that
    setuptools warned about on every install. Built from a copy, so the work tree gets
    no build/ or egg-info."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "websockets_routes",
        src / "websockets_routes",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONWARN")}
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "out"),
         str(src)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "SetuptoolsDeprecationWarning" not in output
    assert "deprecated" not in output.lower(), [
        line for line in output.splitlines() if "deprecated" in line.lower()
    ]
    wheel = next((tmp_path / "out").glob("websockets_routes-*.whl"))
    with zipfile.ZipFile(wheel) as whl:
        metadata = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(metadata).decode()
        licenses = [n for n in whl.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(licenses) == 1, whl.namelist()
        assert whl.read(licenses[0]).decode().startswith("MIT License")
    assert "License-Expression: MIT" in text.splitlines()
    assert "License-File: LICENSE" in text.splitlines()
