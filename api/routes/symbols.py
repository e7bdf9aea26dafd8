"""`/v1/symbols`: the configured symbols; `/v1/symbols/{symbol}/features`: latest Feast features."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool

from api.deps import API_PREFIX, ApiKey, SettingsDep
from api.errors import DependencyUnavailable
from api.online_features import online_store
from api.responses import DependencyDown, Problem, SymbolFeatures, SymbolsInfo
from api.routes.anomalies import SYMBOL_PATTERN
from tickwatch.bar_store import NEW_YORK

router = APIRouter(prefix=f"{API_PREFIX}/symbols", tags=["symbols"], dependencies=[ApiKey])


@router.get("", response_model=SymbolsInfo, summary="The configured symbols and exchange time zone")
async def get_symbols(settings: SettingsDep) -> SymbolsInfo:
    """What the pipeline follows; the dashboard draws one chart per symbol in exchange time."""
    return SymbolsInfo(
        symbols=settings.symbols,
        market_symbol=settings.features.market_symbol,
        timezone=NEW_YORK.key,
    )


@router.get(
    "/{symbol}/features",
    response_model=SymbolFeatures,
    responses={404: {"model": Problem}, 503: {"model": DependencyDown}},
    summary="Latest online features of a symbol",
)
async def get_features(
    request: Request,
    symbol: Annotated[str, Path(pattern=SYMBOL_PATTERN, description="e.g. AAPL")],
) -> SymbolFeatures:
    """The feature values Feast serves for the symbol now (what the scoring worker sees)."""
    symbol = symbol.upper()
    store = online_store(request.app)
    try:
        values = await run_in_threadpool(store.latest, symbol)
    except (ImportError, OSError, ValueError, RuntimeError) as exc:
        raise DependencyUnavailable("feast", f"{type(exc).__name__}: {exc}") from exc
    if all(v is None for v in values.values()):
        raise HTTPException(404, f"no online features for {symbol}")
    return SymbolFeatures(symbol=symbol, feature_service=store.service_name, features=values)
