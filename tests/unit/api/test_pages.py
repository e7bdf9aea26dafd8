"""The pages the API serves: the dashboard with its CSP, /docs and /redoc from vendored files."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.pages import STATIC_DIR
from tickwatch.settings import Settings


@pytest.fixture(scope="module")
def client() -> TestClient:
    # no `with`: the lifespan (Feast warm-up) does not run; these routes need no backing service
    return TestClient(create_app(Settings(_env_file=None)), follow_redirects=False)


def local_refs(html: str) -> list[str]:
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs
    for ref in refs:
        assert ref.startswith(("/", "data:")), f"{ref} is not served by the API"
    return [r for r in refs if r.startswith("/")]


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/dashboard"])
def test_pages_load_only_files_the_api_serves(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 200
    assert "Content-Security-Policy" in resp.headers
    for ref in local_refs(resp.text):
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref


def test_swagger_ui_asks_no_online_validator(client: TestClient) -> None:
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_front_page_is_the_dashboard(client: TestClient) -> None:
    resp = client.get("/")
    assert resp.status_code in (302, 307)
    assert resp.headers["location"] == "/dashboard"


def test_dashboard_modules_import_only_each_other() -> None:
    for js in (STATIC_DIR / "dashboard").glob("*.js"):
        for target in re.findall(r'from "([^"]+)"', js.read_text()):
            assert target.startswith("./") and (js.parent / target).exists(), (js.name, target)


def test_no_vendored_file_names_a_cdn() -> None:
    for path in (STATIC_DIR / "vendor").rglob("*.js"):
        text = path.read_text(errors="replace")
        for cdn in ("cdn.jsdelivr.net", "unpkg.com", "cdn.redoc.ly", "fonts.googleapis.com"):
            assert cdn not in text, f"{path.name} refers to {cdn}"
