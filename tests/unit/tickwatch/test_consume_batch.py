"""consume_batch never waits to fill a batch: what the client holds comes back at once, else the
first record to arrive and what came with it (the calls librdkafka's client gets, recorded)."""

from __future__ import annotations

from confluent_kafka import KafkaError

from tickwatch.kafka import consume_batch


class _Msg:
    def __init__(self, value: bytes, error: KafkaError | None = None) -> None:
        self._value, self._error = value, error

    def error(self) -> KafkaError | None:
        return self._error

    def value(self) -> bytes:
        return self._value


class _Client:
    """The two calls consume_batch makes, answered from a script, each call recorded."""

    def __init__(self, held: list[list[_Msg]], arriving: _Msg | None) -> None:
        self.held, self.arriving, self.calls = held, arriving, []

    def consume(self, n: int, timeout: float) -> list[_Msg]:
        self.calls.append(("consume", n, timeout))
        return self.held.pop(0)[:n] if self.held else []

    def poll(self, timeout: float) -> _Msg | None:
        self.calls.append(("poll", timeout))
        return self.arriving


def test_what_the_client_holds_comes_back_without_waiting() -> None:
    client = _Client([[_Msg(b"a"), _Msg(b"b")]], arriving=None)
    got = consume_batch(client, 1000, 0.5)  # type: ignore[arg-type]  # the recorded stand-in
    assert [m.value() for m in got] == [b"a", b"b"]
    assert client.calls == [("consume", 1000, 0)]  # no wait for the other 998


def test_with_nothing_held_the_first_arrival_and_what_came_with_it() -> None:
    eof = _Msg(b"", KafkaError(KafkaError._PARTITION_EOF))
    client = _Client([[], [_Msg(b"b"), eof]], arriving=_Msg(b"a"))
    got = consume_batch(client, 3, 0.5)  # type: ignore[arg-type]
    assert [m.value() for m in got] == [b"a", b"b"]  # the end-of-partition event skipped
    assert client.calls == [("consume", 3, 0), ("poll", 0.5), ("consume", 2, 0)]


def test_nothing_within_the_timeout_is_an_empty_batch() -> None:
    client = _Client([], arriving=None)
    assert consume_batch(client, 10, 0.25) == []  # type: ignore[arg-type]
    assert client.calls == [("consume", 10, 0), ("poll", 0.25)]


def test_a_begun_batch_takes_records_while_they_keep_coming_then_stops_at_a_gap() -> None:
    # a burst arriving in three chunks, then nothing: one batch of all of it, and the call that
    # found the gap is the last (the linger is a cap, not a wait)
    chunks = [[_Msg(b"a")], [_Msg(b"b"), _Msg(b"c")], [_Msg(b"d")], []]
    client = _Client(chunks, arriving=None)
    got = consume_batch(client, 100, 0.5, linger_s=10.0, gap_s=0.005)  # type: ignore[arg-type]
    assert [m.value() for m in got] == [b"a", b"b", b"c", b"d"]
    assert client.calls == [
        ("consume", 100, 0),
        ("consume", 99, 0.005),
        ("consume", 97, 0.005),
        ("consume", 96, 0.005),
    ]


def test_a_full_batch_does_not_linger() -> None:
    client = _Client([[_Msg(b"a"), _Msg(b"b")]], arriving=None)
    got = consume_batch(client, 2, 0.5, linger_s=10.0)  # type: ignore[arg-type]
    assert len(got) == 2 and client.calls == [("consume", 2, 0)]
