# One image for every tickwatch service; the service is the subcommand:
#   docker run tickwatch:local api      (see docker-compose.yml and deploy/k8s/)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TICKWATCH_RUN_DIR=/var/lib/tickwatch

WORKDIR /app

# Pinned dependencies first: this layer is rebuilt only when the lock changes.
COPY requirements.lock .
RUN pip install -r requirements.lock

# The project itself, editable so repo files (feature_repo/, grafana/, deploy/) resolve from /app.
COPY . .
RUN pip install --no-deps -e . \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/tickwatch tickwatch \
    && mkdir -p /var/lib/tickwatch \
    && chown tickwatch:tickwatch /var/lib/tickwatch

USER tickwatch
VOLUME ["/var/lib/tickwatch"]
# replay server (WebSocket), API, then the metrics ports of producer, features, score, sink, replay
EXPOSE 8765 8000 9101 9102 9103 9104 9105

ENTRYPOINT ["tickwatch"]
CMD ["--help"]
