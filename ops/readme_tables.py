"""The README's configuration, topic, schema, metric and measured tables, generated from the code
(and, for the measured one, from the summaries the benchmarks write beside RESULTS.md)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from tickwatch.schemas import WIRE_MODELS
from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, DAY_MS

README = Path(__file__).resolve().parent.parent / "README.md"
# what each benchmark run computed: {section: {title, date, command, rows: [VERDICT_FIELDS]}}
RESULTS_JSON = README.parent / "benchmarks" / "results.json"
VERDICT_FIELDS = ("stage", "figure", "baseline", "goal", "verdict")
# the RESULTS.md sections README quotes, in its order, with the row shown until one is written
MEASURED = {
    "ingest": "ingest: Polygon frames to acknowledged Kafka messages",
    "feed": "feed at market peaks: WebSocket frames to acked Kafka records",
    "real-trades": "real trades -> minute bars (the T path)",
    "features": "features: bars to Feast + features topic, one worker",
    "market-minute": "features: a whole-market minute through one worker",
    "market-e2e": "a whole-market minute end to end: producer -> features -> score",
    "scoring": "scoring with explanations",
    "api": "API, cached `GET /v1/anomalies`",
    "e2e": "end to end: replay to feature vector / anomaly event",
    "soak": "soak: the pipeline at real-time speed",
    "drills": "fault drills",
}
NOT_RERUN = "not re-run"


def _default(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "unset"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, dict):  # named keys: never shown
        return "(secret)" if value else "none"
    return str(value)


def _walk(model: type[BaseModel], instance: BaseModel, prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, info in model.model_fields.items():
        value = getattr(instance, name)
        env = f"{prefix}{name.upper()}"
        if isinstance(value, BaseModel):
            rows += _walk(type(value), value, f"{env}__")
        else:
            rows.append((env, _default(value), (info.description or "").strip()))
    return rows


def env_vars() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting."""
    return _walk(Settings, Settings.model_construct(), "TICKWATCH_")  # defaults, not this env


def config_table() -> str:
    groups = [f"- `TICKWATCH_{k.upper()}__*`: {v}" for k, v in _group_docs().items()]
    lines = ["| variable | default |", "|---|---|"]
    lines += [f"| `{env}` | `{default}` |" for env, default, _ in env_vars()]
    return "\n".join([*groups, "", *lines])


def _group_docs() -> dict[str, str]:
    out = {}
    for name, info in Settings.model_fields.items():
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out[name] = (ann.__doc__ or "").strip()
    return out


def topics_table() -> str:
    lines = [
        "| topic | key | value schema | partitions | retention | purpose |",
        "|---|---|---|---|---|---|",
    ]
    s = Settings.model_construct()
    for t in ALL_TOPICS:
        parts = t.partitions or f"{s.kafka.default_partitions} (setting)"
        lines.append(
            f"| `{t.name}` | {t.key} | `{t.value}` | {parts} | "
            f"{t.retention_ms // DAY_MS} days | {t.doc} |"
        )
    return "\n".join(lines)


def schemas_section() -> str:
    out = []
    for name, model in WIRE_MODELS.items():
        schema = model.model_json_schema()
        props = schema.get("properties", {})
        required = set(schema.get("required", []))
        fields = ", ".join(f"`{k}`" + ("" if k in required else "?") for k in props)
        out.append(f"- **{name}** (v{model.model_fields['v'].default}): {fields}")
    return "\n".join(out)


def metrics_table() -> str:
    """Every metric in tickwatch.metrics: name, type, labels, help."""
    from prometheus_client.metrics import MetricWrapperBase

    from tickwatch import metrics

    lines = ["| metric | type | labels | meaning |", "|---|---|---|---|"]
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            kind = obj._type
            name = obj._name + ("_total" if kind == "counter" else "")
            labels = ", ".join(obj._labelnames)
            lines.append(f"| `{name}` | {kind} | {labels} | {obj._documentation} |")
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def verdict_table(rows: Sequence[Mapping[str, str]]) -> str:
    """A section's verdict rows as Markdown (RESULTS.md shows them under the section)."""
    lines = [_row(VERDICT_FIELDS), "|" + "---|" * len(VERDICT_FIELDS)]
    return "\n".join(lines + [_row([row[k] for k in VERDICT_FIELDS]) for row in rows])


def read_results(path: Path = RESULTS_JSON) -> dict[str, Any]:
    """The benchmark summaries (none before a benchmark wrote one)."""
    return json.loads(path.read_text()) if path.exists() else {}


def measured_table(summaries: Path = RESULTS_JSON) -> str:
    """README's measured table: each quoted section's verdict rows as its own run wrote them,
    with that run's date and command; a section no run has summarised says so."""
    results = read_results(summaries)
    headers = [*VERDICT_FIELDS, "run"]
    lines = [_row(headers), "|" + "---|" * len(headers)]
    for name, label in MEASURED.items():
        found = results.get(name) or {"rows": []}
        run = f"{found.get('date')}, `{found.get('command')}`"
        lines += [_row([*(row[k] for k in VERDICT_FIELDS), run]) for row in found["rows"]]
        if not found["rows"]:
            lines.append(_row([label, NOT_RERUN, "", "", "", ""]))
    return "\n".join(lines)


SECTIONS = {
    "config": config_table,
    "topics": topics_table,
    "schemas": schemas_section,
    "metrics": metrics_table,
}


def render(text: str, summaries: Path = RESULTS_JSON) -> str:
    """Replace each `<!-- gen:NAME -->...<!-- /gen:NAME -->` block with fresh output."""
    sections: dict[str, Callable[[], str]] = {
        **SECTIONS,
        "measured": partial(measured_table, summaries),
    }
    for name, fn in sections.items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n).*?(<!-- /gen:{name} -->)", re.S)

        def fill(m: re.Match[str], f: Callable[[], str] = fn) -> str:
            return m.group(1) + f() + "\n" + m.group(2)

        text = pattern.sub(fill, text)
    return text


def update_readme(path: Path = README, summaries: Path = RESULTS_JSON) -> bool:
    """Rewrite the generated blocks; True if anything changed."""
    old = path.read_text()
    new = render(old, summaries)
    if new != old:
        path.write_text(new)
    return new != old


if __name__ == "__main__":
    print("README updated" if update_readme() else "README already current")
