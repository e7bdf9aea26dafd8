"""Unit-test fixtures shared across packages: the environment variable names Settings reads."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import BaseModel

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
