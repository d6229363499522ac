"""The report of a real 200-task run, opened from disk in headless Chromium."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.conftest import By, Run200, Select, console_errors
from tests.support import wait_until


def css(driver: Any, selector: str) -> Any:
    return driver.find_element(By.CSS_SELECTOR, selector)


def background(driver: Any, element: Any) -> str:
    return str(
        driver.execute_script("return getComputedStyle(arguments[0]).backgroundColor", element)
    )


VISIBLE_ROWS = """
const view = arguments[0], top = view.scrollTop, bottom = top + view.clientHeight;
const rows = [...document.querySelectorAll('#tl-spacer .tl-row')]
    .filter(r => r.offsetTop + r.offsetHeight > top && r.offsetTop < bottom);
if (!rows.length) return null;
const first = Math.min(...rows.map(r => r.offsetTop));
const last = Math.max(...rows.map(r => r.offsetTop + r.offsetHeight));
const end = Math.min(bottom, view.scrollHeight);
// Drawn on the scroll event (a frame later): only a view that is filled counts.
return first <= top && last >= end ? rows.map(r => Number(r.dataset.index)) : null;
"""


def timeline_rows_seen(driver: Any) -> set[int]:
    """Scroll the (virtualised) timeline top to bottom; every row index seen on the way."""
    seen: set[int] = set()
    view = css(driver, "#timeline")
    height = driver.execute_script("return arguments[0].scrollHeight", view)
    drawn: list[int] = []

    def filled() -> bool:
        drawn[:] = driver.execute_script(VISIBLE_ROWS, view) or []
        return bool(drawn)

    for top in range(0, height + 300, 300):
        driver.execute_script("arguments[0].scrollTop = arguments[1]", view, top)
        wait_until(filled, timeout=10, what="the timeline to draw the rows in view")
        seen.update(drawn)
    driver.execute_script("arguments[0].scrollTop = 0", view)
    return seen


def test_report_of_200_tasks_as_a_person_sees_it(
    browser: Any, run_200: Run200, tmp_path: Path
) -> None:
    driver = browser
    console_errors(driver)  # drain what earlier pages logged
    driver.get(run_200.report.as_uri())
    wait_until(lambda: driver.execute_script("return document.body.dataset.ready") == "1")
    assert css(driver, "#tl-count").text == "200 of 200 tasks"
    assert len(timeline_rows_seen(driver)) == 200
    summary = css(driver, "#summary").text
    assert "COMPLETE: 190" in summary and "EXECUTOR_ERROR: 10" in summary
    driver.save_screenshot(str(tmp_path / "report.png"))

    failed_colour = background(driver, css(driver, ".legend-failed .swatch"))
    complete_colour = background(driver, css(driver, ".legend-complete .swatch"))
    assert failed_colour != complete_colour

    Select(css(driver, "#state-filter")).select_by_value("EXECUTOR_ERROR")
    rows = driver.find_elements(By.CSS_SELECTOR, "#tl-spacer .tl-row")
    assert css(driver, "#tl-count").text == "10 of 200 tasks"
    assert len(rows) == 10
    assert {row.find_element(By.CSS_SELECTOR, ".tl-name").text for row in rows} == set(
        run_200.failed
    )
    for row in rows:
        assert background(driver, row.find_element(By.CSS_SELECTOR, ".seg.final")) == failed_colour
    assert len(driver.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")) == 10

    target = next(
        r for r in rows if r.find_element(By.CSS_SELECTOR, ".tl-name").text == "sample-027"
    )
    assert not css(driver, "#detail-stderr").is_displayed()
    target.click()
    assert css(driver, "#detail-stderr").is_displayed()
    assert css(driver, "#detail-stderr").text == "sample 027 broke: no reads"
    assert "exit codes\n2" in css(driver, "#detail-fields").text

    Select(css(driver, "#state-filter")).select_by_value("COMPLETE")
    assert css(driver, "#tl-count").text == "190 of 200 tasks"
    assert console_errors(driver) == []
