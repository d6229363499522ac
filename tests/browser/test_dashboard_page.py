"""The ``tesengine serve`` dashboard in headless Chromium, on live servers."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import By, Run200, Select, console_errors
from tests.fixtures.tes_server import ServedTes
from tests.support import wait_until
from tests.support.report import report_data

ROWS = """return [...document.querySelectorAll('#tasks tbody tr')].map(r => ({
  name: r.children[0].textContent, id: r.children[1].textContent,
  state: r.dataset.state, created: r.children[3].textContent}))"""
FAILED_RED = "rgb(198, 40, 40)"


def css(driver: Any, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def rows(driver: Any) -> list[dict[str, str]]:
    return list(driver.execute_script(ROWS))


def api(served: ServedTes, path: str, body: Any = None, auth: str | None = None) -> Any:
    """One call to the server's TES API (loopback), as any client makes it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(served.api + path, data=data)
    request.add_header("Content-Type", "application/json")
    if auth:
        request.add_header("Authorization", auth)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp)


def a_task(name: str) -> dict[str, Any]:
    return {"name": name, "executors": [{"image": "i", "command": ["true"]}]}


def test_dashboard_of_a_200_task_run(browser: Any, run_200: Run200, tmp_path: Path) -> None:
    driver, served = browser, run_200.served
    first_id = report_data(run_200.report)["tasks"][0]["i"]
    run_tag = api(served, f"/tasks/{first_id}?view=BASIC")["tags"]["tesengine-run"]
    console_errors(driver)
    driver.get(served.url + "/")  # redirects to /ui/
    wait_until(lambda: len(rows(driver)) > 0, what="the task list")
    assert driver.current_url == served.url + "/ui/"

    # The tag filter narrows the list to this run; 50 a page, newest first.
    css(driver, "#tag-key").send_keys("tesengine-run")
    css(driver, "#tag-value").send_keys(run_tag)
    css(driver, "#apply").click()
    wait_until(lambda: {r["name"] for r in rows(driver)} <= names_of_run(), what="run's tasks")
    listed: list[dict[str, str]] = rows(driver)
    assert len(listed) == 50
    driver.save_screenshot(str(tmp_path / "dashboard.png"))
    while css(driver, "#next").is_enabled():
        last = rows(driver)[0]["id"]
        css(driver, "#next").click()
        wait_until(lambda last=last: rows(driver)[0]["id"] != last, what="the next page")
        listed += rows(driver)
    assert sorted(r["name"] for r in listed) == sorted(names_of_run())
    created = [r["created"] for r in listed]
    assert created == sorted(created, reverse=True), "not newest first"
    assert css(driver, "#page").text == "page 4"

    # The state filter (with the tag filter still on).
    Select(css(driver, "#state")).select_by_visible_text("EXECUTOR_ERROR")
    wait_until(lambda: len(rows(driver)) == 10, what="10 failed tasks")
    assert {r["state"] for r in rows(driver)} == {"EXECUTOR_ERROR"}
    assert {r["name"] for r in rows(driver)} == set(run_200.failed)

    # A failed task's page: its state in the failed colour, its stderr tail, its executor.
    driver.find_element(By.LINK_TEXT, "sample-027").click()
    wait_until(lambda: css(driver, "#task-state").text == "EXECUTOR_ERROR", what="task page")
    state_colour = driver.execute_script(
        "return getComputedStyle(arguments[0]).color", css(driver, "#task-state")
    )
    assert state_colour == FAILED_RED
    assert css(driver, "pre.log-stderr").text == "sample 027 broke: no reads"
    assert "sh -c echo sample 027 broke" in css(driver, "#executors").text
    assert "executor 0 ended, exit code 2" in css(driver, "#history").text
    driver.save_screenshot(str(tmp_path / "dashboard-task.png"))
    assert console_errors(driver) == []


def names_of_run() -> set[str]:
    return {f"sample-{i:03d}" for i in range(200)}


def test_dashboard_refreshes_by_itself(browser: Any, serve_tes: Callable[..., ServedTes]) -> None:
    served = serve_tes(args=["--noop-delay", "1"])
    driver = browser
    driver.get(served.url + "/ui/")
    wait_until(lambda: css(driver, "#empty").is_displayed(), what="an empty list")
    api(served, "/tasks", a_task("arrives-later"))
    # No reload: the page polls the API by itself.
    wait_until(lambda: [r["name"] for r in rows(driver)] == ["arrives-later"], what="new task")
    wait_until(lambda: rows(driver)[0]["state"] == "COMPLETE", what="its state to change")
    assert console_errors(driver) == []


def test_dashboard_data_needs_the_api_credentials(
    browser: Any, serve_tes: Callable[..., ServedTes]
) -> None:
    served = serve_tes(args=["--basic", "alice:s3cret"])
    good = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    task_id = api(served, "/tasks", a_task("private-task"), auth=good)["id"]
    with pytest.raises(urllib.error.HTTPError) as refused:
        api(served, "/tasks?view=BASIC")
    assert refused.value.code == 401
    driver = browser
    driver.get(served.url + "/ui/")
    wait_until(lambda: css(driver, "#signin").is_displayed(), what="the sign-in form")
    assert rows(driver) == []
    assert "private-task" not in driver.page_source and task_id not in driver.page_source
    try:
        sign_in(driver, "alice", "wrong")
        wait_until(lambda: css(driver, "#error").is_displayed(), what="refused credentials")
        assert rows(driver) == []
        sign_in(driver, "alice", "s3cret")
        wait_until(lambda: [r["name"] for r in rows(driver)] == ["private-task"], what="rows")
    finally:
        driver.execute_script("sessionStorage.clear()")


def sign_in(driver: Any, user: str, password: str) -> None:
    for field, value in (("#user", user), ("#password", password)):
        css(driver, field).clear()
        css(driver, field).send_keys(value)
    css(driver, "#signin button").click()
