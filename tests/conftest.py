"""Test-wide setup: writable folders for Keras/Matplotlib, no MLflow telemetry, no stray .env, no
Hypothesis timing checks."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

_tmp = tempfile.mkdtemp(prefix="tickwatch-test-")
os.environ.setdefault("KERAS_HOME", os.path.join(_tmp, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_tmp, "mpl"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# No timing checks in Hypothesis either (no timed assertions in tests): the suite shares two cores
# with Kafka, Redis and the workers, so a slow example or slow data generation is not a failure.
settings.register_profile("tickwatch", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("tickwatch")


@pytest.fixture(scope="session")
def mlfinpy_data() -> Path:
    """The data folder of the mlfinpy package (MIT: real E-mini trades, daily ETF closes), which
    `make install` installs without its dependencies: real data the tests read in place."""
    spec = importlib.util.find_spec("mlfinpy")  # finds the package without importing it
    assert spec is not None and spec.submodule_search_locations, "mlfinpy: run `make install`"
    return Path(spec.submodule_search_locations[0]) / "dataset" / "data"
