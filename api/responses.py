"""Response and request bodies of the API (wire events reuse tickwatch.schemas)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from tickwatch.schemas import AnomalyEvent


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
