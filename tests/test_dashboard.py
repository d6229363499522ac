"""The dashboard's routes on a real server: a static page, data only through the API."""

from __future__ import annotations

import base64
from importlib import resources
from pathlib import Path

import aiohttp

from tesengine.server import LocalTesServer
from tesengine.server.dashboard import DASHBOARD_HEADER

API = "/ga4gh/tes/v1"
CREDS = {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret").decode()}


async def test_page_is_static_and_the_data_keeps_the_api_authentication(tmp_path: Path) -> None:
    async with (
        LocalTesServer(tmp_path / "srv", runtime="noop", basic=("alice", "s3cret")) as server,
        aiohttp.ClientSession(server.url) as http,
    ):
        task = {"name": "secret-name", "executors": [{"image": "i", "command": ["true"]}]}
        async with http.post(f"{API}/tasks", json=task, headers=CREDS) as resp:
            task_id = (await resp.json())["id"]

        async with http.get("/", allow_redirects=False) as resp:
            assert (resp.status, resp.headers["Location"]) == (302, "/ui/")
        for path in ("/ui/", f"/ui/tasks/{task_id}"):
            async with http.get(path) as resp:  # no credentials
                assert resp.status == 200
                assert resp.content_type == "text/html"
                assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
                page = await resp.text()
            assert "secret-name" not in page and task_id not in page

        async with http.get(f"{API}/tasks?view=BASIC") as resp:
            assert resp.status == 401
            assert "WWW-Authenticate" in resp.headers
        async with http.get(f"{API}/tasks/{task_id}", headers={DASHBOARD_HEADER: "1"}) as resp:
            assert resp.status == 401  # refused, without a challenge for the browser
            assert "WWW-Authenticate" not in resp.headers
            assert "secret-name" not in await resp.text()
        async with http.get(f"{API}/tasks?view=BASIC", headers=CREDS) as resp:
            assert [t["name"] for t in (await resp.json())["tasks"]] == ["secret-name"]
        async with http.post("/ui/") as resp:  # only reading the page is open
            assert resp.status == 401


async def test_assets_are_package_data_with_no_network_reference(tmp_path: Path) -> None:
    async with (
        LocalTesServer(tmp_path / "srv", runtime="noop") as server,
        aiohttp.ClientSession(server.url) as http,
    ):
        for name, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
            async with http.get(f"/ui/assets/{name}") as resp:
                assert (resp.status, resp.content_type) == (200, kind)
                body = await resp.text()
            assert body == resources.files("tesengine.server.dashboard").joinpath(name).read_text()
            assert "://" not in body  # nothing from a CDN or any other host
        async with http.get("/ui/assets/..%2F__init__.py") as resp:
            assert resp.status == 404
        async with http.get("/ui/assets/index.html") as resp:
            assert resp.status == 404
