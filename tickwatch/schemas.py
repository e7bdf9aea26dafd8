"""Versioned wire schemas for every Kafka topic, validated on decode; one JSON codec for all."""

from __future__ import annotations

import hashlib
import math
from typing import Annotated, Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

MINUTE_MS = 60_000
DAY_MS = 86_400_000
SCHEMA_VERSION = 1

# as markets write them: BRK.A, futures with digits (6EH4), Polygon's prefixed tickers (X:BTCUSD)
Symbol = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[A-Z0-9][A-Z0-9.:/\-]*$")]
Price = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
TimestampMs = Annotated[int, Field(ge=946_684_800_000, le=4_102_444_800_000)]  # 2000..2100, in ms
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = get_args(Severity)  # lowest first
SEVERITY_RANK: dict[str, int] = {s: rank for rank, s in enumerate(SEVERITIES, start=1)}


class WireModel(BaseModel):
    """Base for wire records: immutable, no unknown fields, NaN and infinity refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Trade(WireModel):
    """One trade (Polygon `T`)."""

    v: Literal[1] = 1
    symbol: Symbol
    price: Price
    size: NonNegative
    timestamp_ms: TimestampMs
    exchange: int = 0
    trade_id: str = ""
    tape: int = 0
    conditions: list[int] = Field(default_factory=list)
    sequence: int = 0


class Quote(WireModel):
    """One NBBO quote (Polygon `Q`)."""

    v: Literal[1] = 1
    symbol: Symbol
    bid_price: NonNegative
    bid_size: NonNegative
    ask_price: NonNegative
    ask_size: NonNegative
    timestamp_ms: TimestampMs
    bid_exchange: int = 0
    ask_exchange: int = 0
    conditions: list[int] = Field(default_factory=list)
    tape: int = 0
    sequence: int = 0


class MinuteBar(WireModel):
    """One closed one-minute bar; `start_ms` is the minute's first millisecond (Unix ms, UTC)."""

    v: Literal[1] = 1
    symbol: Symbol
    start_ms: TimestampMs
    end_ms: TimestampMs
    open: Price
    high: Price
    low: Price
    close: Price
    volume: NonNegative
    vwap: Price
    transactions: int = Field(default=0, ge=0)
    source: Literal["polygon", "replay", "trades", "rest", "csv"] = "polygon"

    @model_validator(mode="after")
    def _consistent(self) -> MinuteBar:
        if self.start_ms % MINUTE_MS:
            raise ValueError(f"start_ms {self.start_ms} is not on a minute boundary")
        if self.end_ms <= self.start_ms:
            raise ValueError("end_ms must be after start_ms")
        if self.low > min(self.open, self.close) or self.high < max(self.open, self.close):
            raise ValueError("OHLC inconsistent: need low <= open,close <= high")
        return self


class FeatureVector(WireModel):
    """The rolling features of one symbol after one closed bar (names: tickwatch.features)."""

    v: Literal[1] = 1
    symbol: Symbol
    bar_start_ms: TimestampMs
    close: Price
    volume: NonNegative
    features: dict[str, float]
    warm: bool = Field(description="true once every rolling window is full")
    computed_at_ms: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _finite(self) -> FeatureVector:
        bad = [k for k, x in self.features.items() if not math.isfinite(x)]
        if bad:
            raise ValueError(f"non-finite feature values: {bad}")
        return self


class MarketReturn(WireModel):
    """The market proxy's log return, volume surprise and volume excess for one minute
    (features stage, internal; a record written before `volume_z` or `volume_excess` existed
    reads 0 for it)."""

    v: Literal[1] = 1
    symbol: Symbol
    start_ms: TimestampMs
    log_return: float
    volume_z: float = 0.0
    volume_excess: float = 0.0


class ModelScore(WireModel):
    """One model's verdict on one bar."""

    model: str
    version: str
    score: float
    threshold: float
    flagged: bool


class Reason(WireModel):
    """One contributing feature: its value and its contribution (SHAP or reconstruction error)."""

    feature: str
    value: float
    contribution: float
    model: str


class AnomalyEvent(WireModel):
    """An explained anomaly; `event_id` is deterministic in (symbol, bar, model versions)."""

    v: Literal[1] = 1
    event_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    symbol: Symbol
    bar_start_ms: TimestampMs
    detected_at_ms: int = Field(ge=0)
    severity: Severity
    close: Price
    scores: list[ModelScore]
    reasons: list[Reason]
    rules: list[str] = Field(default_factory=list, description="rule baselines that also fired")


class AnomalyLabel(WireModel):
    """A labelled injected anomaly from the replay server: [start_ms, end_ms] inclusive."""

    v: Literal[1] = 1
    symbol: Symbol
    start_ms: TimestampMs
    end_ms: TimestampMs
    kind: str


class DeadLetter(WireModel):
    """A refused record with the stage that refused it and why.

    `raw` is the record's head (all of it when `raw_truncated` is false); `raw_bytes` and
    `raw_sha256` are the whole record's length and digest, so a dead letter is bounded in size
    whatever it refuses. Records written before these fields existed lack them."""

    v: Literal[1] = 1
    source: str
    reason: str
    raw: str
    raw_bytes: int | None = Field(None, ge=0)
    raw_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    raw_truncated: bool = False
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    received_at_ms: int = Field(ge=0)


class SchemaError(ValueError):
    """A record that does not match its schema; the message says which field and why."""


M = TypeVar("M", bound=WireModel)


def encode(record: WireModel) -> bytes:
    """Serialize a wire record to compact JSON bytes."""
    return record.model_dump_json().encode()


def decode(model: type[M], data: bytes | str) -> M:
    """Parse and validate one record, raising SchemaError with a readable message."""
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise SchemaError(describe_error(model, exc)) from None


def describe_error(model: type[Any], exc: ValidationError) -> str:
    """One line per problem: `Model.field: message`."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "<root>"
        parts.append(f"{model.__name__}.{loc}: {err['msg']}")
    return "; ".join(parts)


def make_event_id(symbol: str, bar_start_ms: int, model_version: str) -> str:
    """Deterministic anomaly id: the same bar scored by the same models always gets the same id."""
    return hashlib.blake2b(
        f"{symbol}|{bar_start_ms}|{model_version}".encode(), digest_size=16
    ).hexdigest()


WIRE_MODELS: dict[str, type[WireModel]] = {
    m.__name__: m
    for m in (
        Trade,
        Quote,
        MinuteBar,
        FeatureVector,
        AnomalyEvent,
        AnomalyLabel,
        DeadLetter,
        MarketReturn,
    )
}
