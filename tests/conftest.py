"""Test-wide setup: writable folders for Keras/Matplotlib, no MLflow telemetry, no stray .env."""

from __future__ import annotations

import os
import tempfile

_tmp = tempfile.mkdtemp(prefix="tickwatch-test-")
os.environ.setdefault("KERAS_HOME", os.path.join(_tmp, "keras"))
os.environ.setdefault("MPLCONFIGDIR", os.path.join(_tmp, "mpl"))
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
