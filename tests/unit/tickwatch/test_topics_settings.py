"""Topic registry and settings: names, prefixes, env overrides, secrets masked."""

from __future__ import annotations

from tickwatch.settings import Settings
from tickwatch.topics import ALL_TOPICS, DEAD_LETTER, partitions_for, topic_name


def test_topic_names_unique_and_prefixed() -> None:
    s = Settings(_env_file=None, topic_prefix="x-")
    names = [topic_name(t, s) for t in ALL_TOPICS]
    assert len(set(names)) == len(names)
    assert all(n.startswith("x-") for n in names)
    assert "x-dead-letter" in names


def test_partitions_default_and_override() -> None:
    s = Settings(_env_file=None)
    assert partitions_for(DEAD_LETTER, s) == 1
    assert all(partitions_for(t, s) >= 1 for t in ALL_TOPICS)


def test_env_overrides_nested_settings(monkeypatch) -> None:
    monkeypatch.setenv("TICKWATCH_KAFKA__BOOTSTRAP_SERVERS", "broker:29092")
    monkeypatch.setenv("TICKWATCH_SYMBOLS", '["AAPL","NVDA"]')
    monkeypatch.setenv("TICKWATCH_POLYGON__API_KEY", "s3cret")
    s = Settings(_env_file=None)
    assert s.kafka.bootstrap_servers == "broker:29092"
    assert s.symbols == ["AAPL", "NVDA"]
    assert s.polygon.api_key is not None and s.polygon.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in s.model_dump_json()


def test_mlflow_uri_defaults_to_sqlite_under_run_dir(tmp_path) -> None:
    s = Settings(_env_file=None, run_dir=tmp_path)
    assert s.mlflow_tracking_uri == f"sqlite:///{tmp_path.resolve()}/mlflow/mlflow.db"


def test_settings_to_env_round_trips(monkeypatch, tmp_path) -> None:
    from pydantic import SecretStr

    from tickwatch.settings import settings_to_env

    s = Settings(_env_file=None, topic_prefix="p-", symbols=["AAPL", "TSLA"], run_dir=tmp_path)
    api = s.api.model_copy(
        update={
            "api_key": SecretStr("k1"),
            "api_keys": {"ci": SecretStr("k2"), "b": SecretStr("k3")},
        }
    )
    s = s.model_copy(update={"api": api})
    for k, v in settings_to_env(s).items():
        monkeypatch.setenv(k, v)
    again = Settings(_env_file=None)
    assert again.model_dump(mode="json", exclude={"api", "polygon", "replay"}) == s.model_dump(
        mode="json", exclude={"api", "polygon", "replay"}
    )
    assert again.api.api_key.get_secret_value() == "k1"
    assert {n: k.get_secret_value() for n, k in again.api.api_keys.items()} == {
        "ci": "k2",
        "b": "k3",
    }
