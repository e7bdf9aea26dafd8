"""Response and request bodies of the API (wire events reuse tickwatch.schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tickwatch.schemas import AnomalyEvent, MinuteBar


class AnomalyPage(BaseModel):
    """One page of anomalies, newest first."""

    items: list[AnomalyEvent]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next page; null when there is nothing more"
    )


class Problem(BaseModel):
    """An error body."""

    detail: str


class DependencyDown(Problem):
    """A 503 body: which dependency is unavailable."""

    dependency: str


class Check(BaseModel):
    """One readiness check."""

    ok: bool
    detail: str


class Readiness(BaseModel):
    """`/readyz`: each dependency and whether it is reachable."""

    ready: bool
    checks: dict[str, Check]


class SymbolFeatures(BaseModel):
    """The latest online features of one symbol from Feast."""

    symbol: str
    feature_service: str
    features: dict[str, float | int | str | bool | None]


class ModelVersionInfo(BaseModel):
    """One registered model's champion version and its validation metrics."""

    name: str
    alias: str
    version: str | None = Field(description="null when no version holds the alias")
    run_id: str | None = None
    created_at_ms: int | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class ModelsResponse(BaseModel):
    """`GET /v1/models`."""

    models: list[ModelVersionInfo]


class BarPage(BaseModel):
    """One page of minute bars of a symbol, newest first."""

    items: list[MinuteBar]
    next_cursor: str | None = Field(
        description="pass as `cursor` for the next (older) page; null when there is nothing more"
    )


class SymbolsInfo(BaseModel):
    """`GET /v1/symbols`: the configured symbols and the exchange's time zone."""

    symbols: list[str]
    market_symbol: str = Field(description="the market proxy relative features compare against")
    timezone: str = Field(description="IANA name of the exchange's time zone (bar times are UTC)")


class PipelineHealth(BaseModel):
    """`GET /v1/pipeline/health`: the pipeline's throughput, lag and latency from Prometheus."""

    bars_per_s: float | None = Field(description="bars entering the features stage per second")
    anomalies_per_min: float | None = Field(description="anomaly events the score stage emits")
    dead_letters_per_min: float | None = Field(description="records refused by any stage")
    consumer_lag: dict[str, float] = Field(description="messages behind the log end, by stage")
    latency_p95_s: dict[str, float] = Field(
        description="95th percentile of ingest to acknowledged output, by stage"
    )
    hop_latency_p50_s: dict[str, float] = Field(
        description="median of each hop (input in its topic to acknowledged output)"
    )
    hop_latency_p99_s: dict[str, float] = Field(
        description="99th percentile of each hop (input in its topic to acknowledged output)"
    )
    services_up: dict[str, bool] = Field(description="Prometheus scrape target up, by job")
    window: str = Field(description="the rate window of the per-second and per-minute numbers")
    prometheus: str = Field(description="the Prometheus server asked")
    queries: dict[str, str] = Field(description="the PromQL behind each number")
