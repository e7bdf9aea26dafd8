"""`POST /v1/score`: score a window of minute bars the caller sends, with an explanation."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from mlflow.exceptions import MlflowException
from pydantic import BaseModel, Field, model_validator

from api.deps import API_PREFIX, ApiKey
from api.errors import DependencyUnavailable
from api.responses import DependencyDown
from api.scoring import NoChampion, UnscorableBars
from tickwatch.schemas import MinuteBar, ModelScore, Reason, Severity, make_event_id

router = APIRouter(prefix=f"{API_PREFIX}/score", tags=["score"], dependencies=[ApiKey])
MAX_BARS = 2_000


class ScoreRequest(BaseModel):
    """Closed minute bars, oldest first; include the market proxy (VOO) for relative features.

    Rolling features need history: bars are only scored once their windows are warm (about an
    hour of bars per symbol), exactly as in the streaming pipeline.
    """

    bars: list[MinuteBar] = Field(min_length=1, max_length=MAX_BARS)

    @model_validator(mode="after")
    def _ordered(self) -> ScoreRequest:
        last: dict[str, int] = {}
        for i, bar in enumerate(self.bars):
            if bar.start_ms <= last.get(bar.symbol, -1):
                raise ValueError(f"bars[{i}]: {bar.symbol} bars must be in increasing start_ms")
            last[bar.symbol] = bar.start_ms
        return self


class BarScore(BaseModel):
    """Both models' verdicts on one bar; reasons and rules when it is flagged."""

    symbol: str
    bar_start_ms: int
    flagged: bool
    severity: Severity | None
    event_id: str | None = Field(description="the id the pipeline gives this anomaly")
    scores: list[ModelScore]
    reasons: list[Reason]
    rules: list[str]


class ScoreResponse(BaseModel):
    """Scores of every bar with computed features, in time order."""

    model_version: str
    results: list[BarScore]


@router.post(
    "",
    response_model=ScoreResponse,
    responses={
        503: {
            "model": DependencyDown,
            "description": "no champion model registered, or the model registry is unreachable",
        }
    },
    summary="Score a window of bars with the champion models",
)
async def score(request: Request, body: ScoreRequest) -> ScoreResponse:
    """Features computed as the stream does, scored by the champion forest and autoencoder."""
    try:
        version, rows = await run_in_threadpool(request.app.state.scorer.score, body.bars)
    except NoChampion as exc:
        raise DependencyUnavailable("models", str(exc)) from exc
    except UnscorableBars as exc:
        error = {"loc": ("body", "bars"), "msg": str(exc), "type": "value_error"}
        raise RequestValidationError([error]) from exc
    except (MlflowException, OSError) as exc:  # the registry or its artifact store is down
        raise DependencyUnavailable("mlflow", f"{type(exc).__name__}: {exc}"[:300]) from exc
    except ImportError as exc:
        raise DependencyUnavailable("models", f"{type(exc).__name__}: {exc}"[:300]) from exc
    return ScoreResponse(
        model_version=version,
        results=[
            BarScore(
                symbol=r.symbol,
                bar_start_ms=r.bar_start_ms,
                flagged=r.flagged,
                severity=r.severity,
                scores=r.scores,
                reasons=r.reasons,
                rules=r.rules,
                event_id=make_event_id(r.symbol, r.bar_start_ms, version) if r.flagged else None,
            )
            for r in rows
        ],
    )
