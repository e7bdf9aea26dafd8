"""Unit-test fixtures shared across packages: the environment variable names Settings reads,
promtool."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest
from pydantic import BaseModel

from ops.stack.services import Prometheus
from tickwatch.settings import Settings

ENV_PREFIX = "TICKWATCH_"
# Read by tickwatch/cli.py directly (not a Settings field) but valid everywhere settings are.
EXTRA_ENV_VARS = frozenset({"TICKWATCH_LOG_LEVEL"})


def _leaf_env_names(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            yield from _leaf_env_names(ann, f"{prefix}{name.upper()}__")
        else:
            yield f"{prefix}{name.upper()}"


@pytest.fixture(scope="session")
def settings_env_names() -> frozenset[str]:
    """Every leaf `TICKWATCH_*` variable of Settings (nested models walked with `__`)."""
    return frozenset(_leaf_env_names(Settings, ENV_PREFIX))


@pytest.fixture(scope="session")
def known_env_names(settings_env_names: frozenset[str]) -> frozenset[str]:
    """Settings' variables plus the few the CLI reads itself."""
    return settings_env_names | EXTRA_ENV_VARS


def resolve_subcommand(words: list[str]) -> object:
    """The click command `tickwatch <words>` runs; KeyError if a word is no subcommand."""
    import typer.main

    from tickwatch.cli import app

    cmd: object = typer.main.get_command(app)
    for word in words:
        if word.startswith("-") or not hasattr(cmd, "commands"):
            break
        sub = cmd.commands.get(word)
        if sub is None:
            raise KeyError(f"`tickwatch {' '.join(words)}`: no subcommand {word!r}")
        cmd = sub
    return cmd


@pytest.fixture(scope="session")
def tickwatch_subcommand() -> object:
    """`resolve_subcommand`: checks that `tickwatch <words>` names a real subcommand."""
    return resolve_subcommand


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, from Debian's prometheus package: installed the way `tickwatch stack up` does it
    when missing (`make test` runs these tests before the stack is up, so on a fresh machine it
    is not there yet). Skipped only where it cannot be installed (no apt-get or no root)."""
    if not shutil.which("promtool"):
        try:
            Prometheus(Settings(_env_file=None)).install()
        except (OSError, subprocess.CalledProcessError) as exc:
            pytest.skip(f"promtool is not installed and could not be installed: {exc}")
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("the prometheus package installed no promtool")
    return path
