"""One-shot preparation of a fresh deployment: topics, then history and training if no champion.

docker-compose's `init` service and the Kubernetes `tickwatch-init` Job run this before the workers
start; running it again on a prepared deployment only checks and exits.
"""

from __future__ import annotations

import logging
import subprocess
import sys

from tickwatch.settings import Settings

log = logging.getLogger(__name__)

# The steps `tickwatch demo` runs when no champion is registered, in order.
TRAINING_STEPS: tuple[tuple[str, ...], ...] = (
    ("backfill",),
    ("features", "materialize"),
    ("train",),
)


def run(settings: Settings, retrain: bool = False, broker_timeout_s: float = 120.0) -> list[str]:
    """Create missing topics; fetch history and train unless a champion exists; return steps run."""
    from ops.demo import champion_exists
    from tickwatch.kafka import ensure_topics, wait_for_broker

    if not wait_for_broker(settings.kafka.bootstrap_servers, timeout_s=broker_timeout_s):
        raise RuntimeError(f"Kafka not reachable at {settings.kafka.bootstrap_servers}")
    created = ensure_topics(settings)
    log.info("topics created: %s", ", ".join(created) or "none (all exist)")
    if not retrain and champion_exists(settings):
        log.info("champion models registered: nothing to train")
        return []
    done = []
    for step in TRAINING_STEPS:
        log.info("running: tickwatch %s", " ".join(step))
        subprocess.run([sys.executable, "-m", "tickwatch", *step], check=True)
        done.append(" ".join(step))
    return done
