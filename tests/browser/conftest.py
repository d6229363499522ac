"""Headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by Selenium.

In CI a missing browser, driver or selenium is a failure; elsewhere the
tests are skipped with the reason printed (tests.support.require).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.faults.procs import PYTHON, clean_env, write_sprocket_toml
from tests.fixtures.tes_server import ServedTes
from tests.support import require

try:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select
except ImportError:  # then the browser fixture fails (in CI) or skips, saying why
    By = Select = None  # type: ignore[assignment,misc]

__all__ = ["By", "Select", "console_errors"]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def _selenium() -> Any:
    try:
        import selenium.webdriver as webdriver
    except ImportError:
        return None
    return webdriver


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session, reading its console log."""
    webdriver = _selenium()
    require(webdriver is not None, "the selenium package (pip install -e '.[test]')")
    require(Path(CHROMIUM).exists(), "chromium (apt-get install chromium)")
    require(Path(CHROMEDRIVER).exists(), "chromedriver (apt-get install chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1400,1000")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER)
    )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: Any) -> list[str]:
    """Console messages of level SEVERE since the last call (the log is drained)."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@dataclass(frozen=True, slots=True)
class Run200:
    """A finished 200-task ``tesengine run --report`` on the local runtime."""

    report: Path
    served: ServedTes
    failed: tuple[str, ...]  # names of the tasks whose executor exits 2


def failing(index: int) -> bool:
    """Which of the 200 tasks fail: 10 of them, spread through the run."""
    return index % 20 == 7


@pytest.fixture(scope="session")
def run_200(local_tes: ServedTes, tmp_path_factory: pytest.TempPathFactory) -> Run200:
    """200 tasks (10 failing with a stderr line) run by the CLI with ``--report``."""
    base = tmp_path_factory.mktemp("run200")
    config = write_sprocket_toml(base / "sprocket.toml", local_tes.url, local_tes.storage_dir)
    lines = []
    for i in range(200):
        script = f"echo sample {i:03d} broke: no reads >&2; exit 2" if failing(i) else "true"
        lines.append(f'[[tasks]]\nname = "sample-{i:03d}"\ncommand = ["sh", "-c", \'{script}\']\n')
    tasks = base / "tasks.toml"
    tasks.write_text("\n".join(lines))
    report = base / "run200.html"
    result = subprocess.run(
        [PYTHON, "-m", "tesengine", "run", "--config", str(config), "-f", str(tasks),
         "--report", str(report), "-q"],
        cwd=base, env=clean_env(base), capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr[-3000:]
    failed = tuple(f"sample-{i:03d}" for i in range(200) if failing(i))
    return Run200(report, local_tes, failed)
