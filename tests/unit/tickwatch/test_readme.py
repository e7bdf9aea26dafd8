"""README's generated tables match the code (run `python -m tickwatch.readme_tables` to refresh)."""

from __future__ import annotations

from tickwatch.readme_tables import README, env_vars, render


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "stale README: `.venv/bin/python -m tickwatch.readme_tables`"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [env for env, _, _ in env_vars() if f"`{env}`" not in text]
    assert not missing
