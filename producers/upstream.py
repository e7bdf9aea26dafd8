"""Which market-data service to talk to: Polygon with a key, else the built-in replay server."""

from __future__ import annotations

from dataclasses import dataclass

from tickwatch.settings import Settings

REPLAY_COMPLETE = "replay_complete"  # replay server status after the last live bar (not Polygon's)


@dataclass(frozen=True)
class Upstream:
    """WebSocket and REST endpoints, the key to send, and the MinuteBar source to stamp."""

    ws_url: str
    rest_url: str
    api_key: str
    source: str  # "polygon" or "replay"


def upstream_for(settings: Settings) -> Upstream:
    """Polygon's endpoints when `polygon.api_key` is set, else the replay server's."""
    if settings.polygon.api_key is not None:
        return Upstream(
            settings.polygon.ws_url,
            settings.polygon.rest_url.rstrip("/"),
            settings.polygon.api_key.get_secret_value(),
            "polygon",
        )
    r = settings.replay
    key = r.required_key.get_secret_value() if r.required_key else "replay"
    return Upstream(f"ws://{r.host}:{r.port}/stocks", f"http://{r.host}:{r.port}", key, "replay")
