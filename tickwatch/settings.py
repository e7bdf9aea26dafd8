"""Settings for every tickwatch service, from `TICKWATCH_*` environment variables and `.env`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# defaults that functions taking them one by one (the batch features, the scorer) share
MARKET_SYMBOL = "VOO"  # the market proxy the relative features are against
BETA_WINDOW = 60  # bars of the rolling beta to the market proxy
COOLDOWN_MINUTES = 5  # flags of one symbol closer than this are one event
TOP_FEATURES = 3  # reasons per model an event reports
DEFAULT_SYMBOLS = ["AAPL", "GOOGL", "MSFT", "TSLA", MARKET_SYMBOL]


class KafkaSettings(BaseModel):
    """Broker address and client tuning shared by every producer and consumer."""

    bootstrap_servers: str = "127.0.0.1:9092"
    controller_port: int = 9093
    heap: str = "1g"
    version: str = "4.1.1"
    linger_ms: int = 5
    batch_size: int = 262_144
    compression: str = "lz4"
    consume_batch: int = 1000
    # how long the broker holds a consumer's fetch for data (librdkafka fetch.wait.max.ms, 500 by
    # default): a read_committed fetch can wait it out although a commit made records readable
    fetch_wait_ms: int = Field(50, ge=1, le=500)
    default_partitions: int = 6
    # the largest record a producer sends (librdkafka message.max.bytes): at most the broker's
    # message.max.bytes (1 MiB by default); a bigger event is dead-lettered instead
    max_message_bytes: int = Field(1_000_000, ge=65_536)
    # how much of a refused record its dead letter keeps (the head; its length and sha256 too)
    dead_letter_raw_bytes: int = Field(65_536, ge=1024)
    # services create missing topics and set drifted topic settings at start; off: they exit 1
    # naming what is wrong (`tickwatch stack up|topics|init` create and set them)
    create_topics: bool = False

    @model_validator(mode="after")
    def _dead_letter_fits(self) -> KafkaSettings:
        if self.dead_letter_raw_bytes > self.max_message_bytes // 2:
            raise ValueError(
                f"dead_letter_raw_bytes ({self.dead_letter_raw_bytes}) must be at most half of "
                f"max_message_bytes ({self.max_message_bytes}) so a dead letter always fits"
            )
        return self


class RedisSettings(BaseModel):
    """Redis server used as Feast's online store, the anomaly store and the API cache."""

    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"


class PrometheusSettings(BaseModel):
    """Prometheus server and the ports each tickwatch service exposes metrics on."""

    host: str = "127.0.0.1"  # the Prometheus server the dashboard's health panel queries
    port: int = 9090
    producer_metrics_port: int = 9101
    features_metrics_port: int = 9102
    score_metrics_port: int = 9103
    sink_metrics_port: int = 9104
    replay_metrics_port: int = 9105
    scrape_interval_s: int = 5

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class MlflowSettings(BaseModel):
    """MLflow tracking: a sqlite store and a local artifact folder unless a server URI is given."""

    tracking_uri: str | None = None  # None: sqlite file under the run folder
    port: int = 5000
    experiment: str = "tickwatch"
    iforest_model_name: str = "tickwatch-iforest"
    lstm_model_name: str = "tickwatch-lstm-ae"
    champion_alias: str = "champion"


class PolygonSettings(BaseModel):
    """Market-data source: Polygon/Massive with a key, else the built-in replay server."""

    api_key: SecretStr | None = None  # unset: the built-in replay server is used
    ws_url: str = "wss://delayed.polygon.io/stocks"
    rest_url: str = "https://api.polygon.io"
    channels: list[str] = Field(default_factory=lambda: ["AM", "T"])
    # the largest WebSocket frame read; a bigger one closes the connection (1009), which is
    # then reopened and backfilled like any drop
    max_frame_bytes: int = Field(16 * 1024 * 1024, ge=1024 * 1024)


class ReplaySettings(BaseModel):
    """The built-in Polygon-protocol replay server."""

    host: str = "127.0.0.1"
    port: int = 8765
    seed: int = 7
    speed: float = 60.0  # simulated minutes per real minute; 0 = as fast as the consumer reads
    days: int = 2
    history_days: int = 20
    required_key: SecretStr | None = None  # unset: any key is accepted
    csv_path: Path | None = None
    fault_hooks: bool = False  # /admin/garbage (malformed-frame burst) for fault drills
    # continue after the bars already in Kafka (a rerun streams the minutes not yet seen);
    # false: stream every live minute again (the producer dead-letters the repeats)
    resume: bool = True
    # N > 0: stream a synthetic whole market instead, N symbols' AM bars per minute together,
    # no trades, labels or REST history (producers.market_sim.WholeMarket); 0: off
    market_symbols: int = Field(default=0, ge=0)


class FeatureSettings(BaseModel):
    """Streaming feature computation."""

    market_symbol: str = MARKET_SYMBOL
    # exchange calendar of the bars' sessions (exchange_calendars: XNYS, CMES, 24/7, ...)
    calendar: str = "XNYS"
    beta_window: int = BETA_WINDOW
    allowed_lateness_s: int = 120
    push_batch: int = 500
    engine: Literal["faust", "batch"] = "faust"
    step_bars: int = 5000


class ModelSettings(BaseModel):
    """Training and scoring."""

    sequence_length: int = 16
    # alert events per symbol per trading day on normal behaviour: sets every threshold
    alerts_per_day: float = Field(default=1.0, gt=0)
    threshold_sessions: int = Field(default=20, ge=1)  # trailing sessions a threshold follows
    cooldown_minutes: int = COOLDOWN_MINUTES
    top_features: int = TOP_FEATURES
    epochs: int = 8
    # feature vectors per partition a restarted score worker re-scores before its commit point
    # (the LSTM sequences and cooldowns); the thresholds come from their own changelog
    replay_messages: int = Field(default=50_000, ge=1)


PLACEHOLDER_API_KEY = "dev-key-change-me"  # accepted in development only


class ApiSettings(BaseModel):
    """The query API."""

    host: str = "127.0.0.1"
    port: int = 8000
    # the key named "default"; empty: only the named keys of api_keys
    api_key: SecretStr = SecretStr(PLACEHOLDER_API_KEY)
    # more keys by name (JSON object), all valid at once: rotate by adding the new key, moving
    # clients to it, then removing the old one, without a restart of the clients in between
    api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # requests per second each key may make (token bucket per key and API process); 429 past it
    rate_limit_per_s: float = Field(50.0, gt=0)
    rate_limit_burst: int = Field(200, ge=1)  # requests a key may make at once before the limit
    cache_ttl_s: float = 2.0
    anomaly_retention_days: int = 30
    max_page_size: int = 500
    bars_kept: int = 1000  # newest minute bars per symbol the sink keeps in Redis for the charts


class Settings(BaseSettings):
    """All tickwatch settings; nested fields use `__`, e.g. `TICKWATCH_KAFKA__BOOTSTRAP_SERVERS`."""

    model_config = SettingsConfigDict(
        env_prefix="TICKWATCH_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    environment: str = "development"
    run_dir: Path = Path(".run")
    symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    topic_prefix: str = ""
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    prometheus: PrometheusSettings = PrometheusSettings()
    mlflow: MlflowSettings = MlflowSettings()
    polygon: PolygonSettings = PolygonSettings()
    replay: ReplaySettings = ReplaySettings()
    features: FeatureSettings = FeatureSettings()
    model: ModelSettings = ModelSettings()
    api: ApiSettings = ApiSettings()

    @property
    def mlflow_tracking_uri(self) -> str:
        """The explicit tracking URI, or the local sqlite store under the run folder."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{(self.run_dir / 'mlflow' / 'mlflow.db').resolve()}"

    @property
    def data_dir(self) -> Path:
        """Parquet bars (`bars/`), offline features (`features/`), labels, backtest output."""
        return (self.run_dir / "data").resolve()

    @property
    def mlflow_artifact_dir(self) -> Path:
        return (self.run_dir / "mlflow" / "artifacts").resolve()


def settings_to_env(settings: Settings) -> dict[str, str]:
    """TICKWATCH_* variables that make a child process see exactly these settings."""
    out: dict[str, str] = {}

    def walk(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            env = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(value, f"{env}__")
            elif isinstance(value, SecretStr):
                out[env] = value.get_secret_value()
            elif isinstance(value, list):
                out[env] = json.dumps(value)
            elif isinstance(value, dict):
                out[env] = json.dumps(
                    {
                        k: v.get_secret_value() if isinstance(v, SecretStr) else v
                        for k, v in value.items()
                    }
                )
            elif value is not None:
                out[env] = str(value)

    walk(settings, "TICKWATCH_")
    return out


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
