"""mypy, as `make lint` runs it ([tool.mypy] in pyproject.toml), finds no errors, and it checks
every package of the repository (the tests aside)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_mypy_is_clean() -> None:
    # the default cache (.mypy_cache, git-ignored): a cold run (a fresh clone) takes ~25 s on two
    # cores, a warm one a second or two
    proc = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mypy exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"


def test_mypy_checks_every_package() -> None:
    files = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["mypy"]["files"]
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} - {"tests"}
    assert sorted(files) == sorted(packages)
