"""The one tickwatch image: python 3.11 slim, locked dependencies, non-root, CLI entrypoint."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_base_image_and_entrypoint() -> None:
    steps = _instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    entry = [args for word, args in steps if word == "ENTRYPOINT"]
    assert entry and json.loads(entry[-1]) == ["tickwatch"]


def test_locked_dependencies_install_before_the_project_without_deps() -> None:
    runs = [args for word, args in _instructions() if word == "RUN"]
    lock = next(i for i, r in enumerate(runs) if "-r requirements.lock" in r)
    project = next(i for i, r in enumerate(runs) if "--no-deps" in r)
    assert lock < project


def test_runs_as_a_non_root_user() -> None:
    users = [args for word, args in _instructions() if word == "USER"]
    assert users and users[-1] not in {"root", "0"}


def test_context_leaves_out_secrets_and_local_state() -> None:
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".run", ".git"} <= ignored
    for needed in ("requirements.lock", "pyproject.toml", "tickwatch", "README.md"):
        assert needed not in ignored
