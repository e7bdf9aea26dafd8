"""Feast entities: every feature row belongs to one ticker symbol."""

from __future__ import annotations

from feast import Entity, ValueType

SYMBOL_KEY = "symbol"

# The ticker (e.g. "AAPL"); the Kafka key of the bars and features topics carries the same value.
symbol = Entity(
    name="symbol",
    join_keys=[SYMBOL_KEY],
    value_type=ValueType.STRING,
    description="Ticker symbol (the Kafka key of the bars and features topics)",
)
