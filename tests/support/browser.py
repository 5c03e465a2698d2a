"""A real headless browser for tests: Debian's chromium, driven by selenium via chromedriver.

``make browser`` installs both Debian packages when they are missing (CI runs it
as part of ``make test``); ``ensure_browser`` calls it once more for a test run
outside make. Nothing is downloaded by selenium: the driver and the browser are
the system's, and Selenium Manager is kept offline.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import REPO

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,2000",
)


class BrowserMissing(RuntimeError):
    pass


def ensure_browser() -> None:
    """Chromium and chromedriver are installed, or BrowserMissing says why not."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    result = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "browser"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0 or not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        raise BrowserMissing(
            f"'make browser' could not install chromium and chromium-driver "
            f"(exit {result.returncode}): {result.stdout[-1500:]} {result.stderr[-1500:]}"
        )


@contextmanager
def chromium() -> Iterator[object]:
    """A selenium WebDriver on headless chromium with a fresh profile; quit on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ensure_browser()
    os.environ.setdefault("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
