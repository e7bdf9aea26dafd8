"""The local stack: install, start, check and stop Kafka, Redis, Prometheus and MLflow."""

from __future__ import annotations

import json
from pathlib import Path

from ops.stack.services import Service, all_services
from tickwatch.settings import Settings

STARTED_FILE = "started.json"


def _started_path(settings: Settings) -> Path:
    return settings.run_dir / STARTED_FILE


def _select(settings: Settings, only: list[str] | None) -> list[Service]:
    services = all_services(settings)
    return [s for s in services if only is None or s.name in only]


def up(settings: Settings, only: list[str] | None = None) -> list[str]:
    """Start every service that is not already healthy; return the names this call started."""
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    started = []
    for svc in _select(settings, only):
        if svc.start():
            started.append(svc.name)
    path = _started_path(settings)
    known = set(json.loads(path.read_text())) if path.exists() else set()
    path.write_text(json.dumps(sorted(known | set(started))))
    return started


def down(settings: Settings, only: list[str] | None = None) -> list[str]:
    """Stop the services this stack started (by pid file), never anyone else's."""
    stopped = []
    for svc in reversed(_select(settings, only)):
        if svc.proc.stop():
            stopped.append(svc.name)
    path = _started_path(settings)
    if path.exists():
        left = set(json.loads(path.read_text())) - set(stopped)
        path.write_text(json.dumps(sorted(left)))
    return stopped


def status(settings: Settings) -> list[tuple[str, str, bool, int | None]]:
    """(name, endpoint, healthy, pid if ours) for every service."""
    return [(s.name, s.endpoint, s.healthy(), s.proc.pid()) for s in all_services(settings)]
