"""The README's configuration, topic, schema and metric tables, generated from the code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from tickwatch.schemas import WIRE_MODELS
from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, DAY_MS

README = Path(__file__).resolve().parent.parent / "README.md"


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


SECTIONS = {
    "config": config_table,
    "topics": topics_table,
    "schemas": schemas_section,
    "metrics": metrics_table,
}


def render(text: str) -> str:
    """Replace each `<!-- gen:NAME -->...<!-- /gen:NAME -->` block with fresh output."""
    for name, fn in SECTIONS.items():
        pattern = re.compile(rf"(<!-- gen:{name} -->\n).*?(<!-- /gen:{name} -->)", re.S)
        text = pattern.sub(lambda m, f=fn: m.group(1) + f() + "\n" + m.group(2), text)
    return text


def update_readme(path: Path = README) -> bool:
    """Rewrite the generated blocks; True if anything changed."""
    old = path.read_text()
    new = render(old)
    if new != old:
        path.write_text(new)
    return new != old


if __name__ == "__main__":
    print("README updated" if update_readme() else "README already current")
