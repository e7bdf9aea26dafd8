"""API keys on the real `tickwatch api` process: refused placeholders, named keys, 429, no leaks.

Each test runs the command as deployed (a subprocess with TICKWATCH_* variables) and reads what
it wrote to stdout and stderr, so a key in any log line, at INFO or at DEBUG, is found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from api_support import free_port
from pydantic import SecretStr

from ops.stack.processes import wait_until
from tickwatch.settings import Settings, settings_to_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
KEY = "first-key-7c1e9b5a0d"  # the default key
ROTATED = "rotated-key-2f8a6d4c"  # a named key: rotation keeps both valid at once
WRONG = "wrong-key-5e3b1a9f77"
BURST = 3  # requests the first key may make before its limit, in this test


def _env(settings: Settings, level: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWATCH_")}
    return {**env, **settings_to_env(settings), "TICKWATCH_LOG_LEVEL": level}


@contextmanager
def _api(settings: Settings, level: str, log: Path) -> Iterator[str]:
    """`tickwatch api` at `level`, stdout and stderr into `log`; yields its base URL."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tickwatch", "api", "--port", str(port)],
            env=_env(settings, level),
            cwd=settings.run_dir.parent,  # no .env of the checkout
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            assert wait_until(up, 120, 0.2), log.read_text()
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


@pytest.mark.parametrize("key", ["", "dev-key-change-me", "short"])
def test_outside_development_a_placeholder_empty_or_short_key_refuses_to_start(
    settings: Settings, key: str
) -> None:
    s = settings.model_copy(
        update={
            "environment": "production",
            "api": settings.api.model_copy(update={"api_key": SecretStr(key)}),
        }
    )
    done = subprocess.run(
        [sys.executable, "-m", "tickwatch", "api", "--port", str(free_port())],
        env=_env(s, "INFO"),
        cwd=settings.run_dir.parent,
        capture_output=True,
        text=True,
        timeout=120,  # the old code served here instead of exiting: the test fails, not hangs
    )
    assert done.returncode != 0
    assert "tickwatch api refuses to start" in done.stderr
    assert "TICKWATCH_API__API_KEY" in done.stderr
    assert not key or key not in done.stderr + done.stdout


@pytest.mark.parametrize("level", ["INFO", "DEBUG"])
def test_named_keys_rate_limit_and_no_key_in_any_log_line_or_response(
    settings: Settings, tmp_path: Path, level: str
) -> None:
    s = settings.model_copy(
        update={
            "environment": "production",
            "api": settings.api.model_copy(
                update={
                    "api_key": SecretStr(KEY),
                    "api_keys": {"rotated": SecretStr(ROTATED)},
                    "rate_limit_per_s": 0.001,  # no token comes back within the test
                    "rate_limit_burst": BURST,
                }
            ),
        }
    )
    log = tmp_path / f"api-{level}.log"
    seen: list[str] = []

    def get(client: httpx.Client, path: str, key: str | None, **params: str) -> httpx.Response:
        headers = {} if key is None else {"X-API-Key": key}
        resp = client.get(path, headers=headers, params=params)
        seen.append(f"{resp.status_code} {resp.headers} {resp.text}")
        return resp

    with _api(s, level, log) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert get(c, "/v1/symbols", None).status_code == 401
        assert get(c, "/v1/symbols", WRONG).status_code == 401
        assert get(c, "/v1/symbols", KEY[:-1]).status_code == 401  # a prefix is not the key
        assert get(c, "/v1/symbols", KEY).status_code == 200
        assert get(c, "/v1/anomalies", KEY, limit="100000").status_code == 422
        assert get(c, "/v1/symbols", KEY).status_code == 200  # the burst of 3 is used up
        limited = get(c, "/v1/symbols", KEY)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
        assert "'default'" in limited.json()["detail"]
        assert get(c, "/v1/symbols", ROTATED).status_code == 200  # its own bucket
        assert get(c, "/v1/anomalies", ROTATED, limit="1").status_code == 200
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/dashboard"):
            get(c, path, KEY)
    lines = log.read_text(errors="replace").splitlines()
    assert any("GET /v1/symbols" in line for line in lines), "no access log at this level"
    if level == "DEBUG":
        assert any(" DEBUG " in line for line in lines), "the server did not log at DEBUG"
    assert any("API keys: default, rotated" in line for line in lines)  # names, not keys
    for secret in (KEY, ROTATED, WRONG, KEY[:-1]):
        assert not [line for line in lines if secret in line]
        assert not [r for r in seen if secret in r]
