"""The demo's dashboard URL is one a browser on this machine can open; a second signal while it
stops does not leave services running."""

from __future__ import annotations

import os
import signal

import pytest

from ops import demo
from ops.demo import dashboard_url
from tickwatch.settings import Settings


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123/dashboard"),
        ("0.0.0.0", "http://127.0.0.1:8123/dashboard"),
        ("tickwatch.local", "http://tickwatch.local:8123/dashboard"),
    ],
)
def test_dashboard_url(host: str, expected: str) -> None:
    base = Settings(_env_file=None)
    settings = base.model_copy(
        update={"api": base.api.model_copy(update={"host": host, "port": 8123})}
    )
    assert dashboard_url(settings) == expected


class _StopSignalledTwice:
    """A pipeline whose stop is hit by a second SIGTERM and SIGINT halfway through it (a user
    pressing Ctrl-C again, a supervisor signalling again)."""

    def __init__(self) -> None:
        self.stopped: list[str] = []

    def stop(self) -> None:
        self.stopped.append("producer")
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
        self.stopped.append("api")


def test_a_second_signal_while_stopping_stops_every_service(capsys) -> None:
    before = signal.signal(signal.SIGTERM, demo._interrupt)  # as `tickwatch demo` runs
    try:
        pipeline = _StopSignalledTwice()
        demo.stop_despite_signals(pipeline)  # type: ignore[arg-type]
        assert pipeline.stopped == ["producer", "api"]
        assert capsys.readouterr().out.count("still stopping") == 2
        # afterwards the demo's own handler is back: SIGTERM interrupts again
        assert signal.getsignal(signal.SIGTERM) is demo._interrupt
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, before)
