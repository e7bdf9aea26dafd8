"""`.env.example` lists exactly the variables Settings reads, each commented, with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tickwatch.settings import Settings

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
# `NAME=value` sets a default; `# NAME=value` documents a variable that is unset by default.
VAR_LINE = re.compile(r"^(?P<off>#\s*)?(?P<name>TICKWATCH_[A-Z0-9_]+)=(?P<value>.*)$")


def _entries() -> list[tuple[int, str, bool]]:
    """(line index, variable name, active) for every variable line of .env.example."""
    out = []
    for i, line in enumerate(ENV_EXAMPLE.read_text().splitlines()):
        m = VAR_LINE.match(line.strip())
        if m:
            out.append((i, m["name"], not m["off"]))
    return out


def test_every_settings_variable_is_documented(settings_env_names: frozenset[str]) -> None:
    missing = settings_env_names - {name for _, name, _ in _entries()}
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_no_unknown_or_duplicate_variables(known_env_names: frozenset[str]) -> None:
    names = [name for _, name, _ in _entries()]
    unknown = set(names) - known_env_names
    assert not unknown, f"not read by tickwatch (typo or removed setting?): {sorted(unknown)}"
    dupes = {n for n in names if names.count(n) > 1}
    assert not dupes, f"listed twice: {sorted(dupes)}"


def test_each_variable_has_a_comment_line_above() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, name, _ in _entries():
        above = lines[i - 1].strip() if i else ""
        assert above.startswith("#") and not VAR_LINE.match(above), f"{name} has no comment above"


def test_values_parse_and_equal_the_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for var in [v for v in os.environ if v.startswith("TICKWATCH_")]:
        monkeypatch.delenv(var)
    from_file = Settings(_env_file=ENV_EXAMPLE).model_dump()
    defaults = Settings(_env_file=None).model_dump()
    assert from_file == defaults
