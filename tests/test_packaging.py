"""Packaging: the explicit package list in setup.cfg is complete, and a non-editable install imports both
top-level packages from outside the repository."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setuptools import find_packages

from tests.helpers import ROOT


def _declared_packages() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return {p.strip() for p in config["options"]["packages"].split() if p.strip()}


def test_setup_cfg_lists_every_package():
    found = {f"umadapt.{p}" for p in find_packages(ROOT / "src" / "umadapt")} | {"umadapt"}
    found |= {f"data_modules.{p}" for p in find_packages(ROOT / "data_modules")} | {"data_modules"}
    assert _declared_packages() == found


def test_pyproject_holds_the_build_system_and_tool_settings_only():
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert set(pyproject) == {"build-system", "tool"} and set(pyproject["tool"]) == {"ruff"}  # no [project] table


def _source_copy(folder: Path) -> None:
    """The repository's top-level files and both packages' folders, copied into ``folder``: pip builds a local
    project in place, and a build from the repository itself would rewrite its build/ and umadapt.egg-info/ while
    the other pytest-xdist worker's runs read the egg-info (the run record's umadapt version)."""
    folder.mkdir()
    for path in ROOT.iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    ignored = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for package in ("src", "data_modules"):
        shutil.copytree(ROOT / package, folder / package, ignore=ignored)


@pytest.mark.slow
def test_non_editable_install_imports_from_anywhere(tmp_path):
    target = tmp_path / "site"
    source = tmp_path / "source"
    _source_copy(source)
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "deprecated" not in installed.stderr.lower(), (
        installed.stderr
    )  # packaging metadata setuptools accepts quietly
    code = (
        "import umadapt, data_modules, data_modules.synthrooms, umadapt.cli;"
        "print(umadapt.__file__); print(data_modules.__file__)"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    ).stdout
    assert str(target) in out.splitlines()[0] and str(target) in out.splitlines()[1]


def test_make_help_has_no_colour_codes_off_a_terminal():
    result = subprocess.run(
        ["make", "--no-print-directory", "help"], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert "\033" not in result.stdout and "test " in result.stdout and "bench-synthrooms" in result.stdout
