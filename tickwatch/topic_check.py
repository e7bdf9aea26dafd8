"""Each service's start: its topics exist with the partitions and settings of `tickwatch.topics`.

A service writing to a topic that is not there loses what it writes (librdkafka reports each
record as failed minutes later), and one reading a topic laid out differently (other partition
count, event-time retention) misroutes or loses records without a word. So every service checks
before it starts, and exits non-zero saying what is wrong and how to fix it; with
`kafka.create_topics` it creates missing topics and sets drifted settings itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
)

from tickwatch.settings import Settings
from tickwatch.topics import TopicSpec, partitions_for, topic_name

log = logging.getLogger(__name__)
BROKER_WAIT_S = 60.0


class TopicsUnusable(SystemExit):
    """A service's topics are missing or laid out unlike their spec: exit 1 with what and why."""


@dataclass
class TopicReport:
    """What differs between the broker's topics and their specs."""

    missing: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)  # cannot be fixed by tickwatch
    configs: dict[str, dict[str, str]] = field(default_factory=dict)  # topic -> key -> wanted
    found: dict[str, dict[str, str | None]] = field(default_factory=dict)  # topic -> key -> is

    @property
    def ok(self) -> bool:
        return not (self.missing or self.partitions or self.configs)

    def lines(self) -> list[str]:
        out = [f"topic {name} does not exist" for name in self.missing]
        out += self.partitions
        out += [
            f"topic {name} has {key}={self.found[name][key]}, expected {wanted}"
            for name, keys in self.configs.items()
            for key, wanted in keys.items()
        ]
        return out


def inspect_topics(
    client: AdminClient, settings: Settings, specs: Iterable[TopicSpec], timeout_s: float = 30.0
) -> TopicReport:
    """Compare the broker's topics with `specs`: existence, partition count, topic settings."""
    report = TopicReport()
    metadata = client.list_topics(timeout=timeout_s).topics
    present = []
    for spec in specs:
        name = topic_name(spec, settings)
        if name not in metadata:
            report.missing.append(name)
            continue
        have, want = len(metadata[name].partitions), partitions_for(spec, settings)
        if have != want:
            report.partitions.append(
                f"topic {name} has {have} partitions, expected {want} (change it by hand, "
                "or the setting kafka.default_partitions)"
            )
        present.append((spec, name))
    if present:
        futures = client.describe_configs(
            [ConfigResource(ConfigResource.Type.TOPIC, name) for _, name in present],
            request_timeout=timeout_s,
        )
        by_name = {res.name: fut for res, fut in futures.items()}
        for spec, name in present:
            entries = by_name[name].result(timeout_s)
            for key, wanted in spec.config().items():
                value = entries[key].value if key in entries else None
                if value != wanted:
                    report.configs.setdefault(name, {})[key] = wanted
                    report.found.setdefault(name, {})[key] = value
    return report


def align_configs(client: AdminClient, report: TopicReport, timeout_s: float = 30.0) -> None:
    """Set the topic settings `report` found drifted (partitions are left alone)."""
    if not report.configs:
        return
    resources = [
        ConfigResource(
            ConfigResource.Type.TOPIC,
            name,
            incremental_configs=[
                ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET)
                for key, value in keys.items()
            ],
        )
        for name, keys in report.configs.items()
    ]
    for res, fut in client.incremental_alter_configs(resources).items():
        fut.result(timeout_s)
        log.warning("topic %s: set %s", res.name, report.configs[res.name])


def require_topics(
    settings: Settings, specs: Iterable[TopicSpec], service: str, create: bool | None = None
) -> None:
    """Return when `specs` exist as specified (creating them when `create`, by default the
    setting `kafka.create_topics`); else raise TopicsUnusable: exit 1 with what is wrong."""
    from tickwatch.kafka import admin, ensure_topics, wait_for_broker

    specs = list(specs)
    bootstrap = settings.kafka.bootstrap_servers
    if not wait_for_broker(bootstrap, BROKER_WAIT_S):
        raise TopicsUnusable(
            f"error: tickwatch {service} cannot start: no Kafka broker answered at {bootstrap} "
            f"within {BROKER_WAIT_S:.0f} s (TICKWATCH_KAFKA__BOOTSTRAP_SERVERS)"
        )
    if settings.kafka.create_topics if create is None else create:
        ensure_topics(settings, specs)
    try:
        report = inspect_topics(admin(settings), settings, specs)
    except KafkaException as exc:
        raise TopicsUnusable(
            f"error: tickwatch {service} cannot start: its topics could not be inspected: {exc}"
        ) from None
    if report.ok:
        return
    problems = "\n  ".join(report.lines())
    raise TopicsUnusable(
        f"error: tickwatch {service} cannot start; its topics are not as tickwatch.topics "
        f"specifies:\n  {problems}\n`tickwatch stack topics` creates missing topics and sets "
        "their settings (with the same TICKWATCH_TOPIC_PREFIX, now "
        f"{settings.topic_prefix!r}); TICKWATCH_KAFKA__CREATE_TOPICS=true lets every service "
        "do it at start."
    )
