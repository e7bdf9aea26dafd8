"""README's generated tables match the code and the benchmark summaries (refresh them with
`python -m ops.readme_tables`)."""

from __future__ import annotations

import re

from ops.readme_tables import (
    README,
    RESULTS_JSON,
    env_vars,
    read_results,
    render,
    verdict_table,
)


def test_readme_generated_sections_are_current() -> None:
    text = README.read_text()
    assert render(text) == text, "stale README: `.venv/bin/python -m ops.readme_tables`"


def test_readme_opens_with_the_two_commands() -> None:
    head = README.read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [env for env, _, _ in env_vars() if f"`{env}`" not in text]
    assert not missing


def test_every_measured_row_is_the_verdict_table_of_its_results_section() -> None:
    results = (RESULTS_JSON.parent / "RESULTS.md").read_text()
    for name, found in read_results().items():
        block = re.search(rf"<!-- {name}:start -->(.*?)<!-- {name}:end -->", results, re.S)
        assert block, f"results.json has section {name}, RESULTS.md does not"
        assert f"_{found['date']}, " in block.group(1), name  # the same run
        if found["rows"]:
            assert verdict_table(found["rows"]) in block.group(1), name
