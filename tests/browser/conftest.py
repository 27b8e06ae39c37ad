"""Fixtures for the browser tests: a live app on 127.0.0.1 and headless Chromium driven by selenium.

Chromium and chromedriver come from the Debian packages (``scripts/install-system-deps``): /usr/bin/chromium and
/usr/bin/chromedriver. Selenium Manager is never asked to download anything (the driver path is given and
``SE_OFFLINE`` is set). Without them the tests skip with the reason, unless ``EVIDENCE_REQUIRE_SERVICES=1`` (then
they fail). Screenshots go to ``test-artifacts/browser/`` (gitignored) for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from service.api import create_app, stop_sealer
from service.config import Settings
from service.core.formats import utc_now
from service.runtime import Runtime
from service.storage import db
from service.tenants import create_tenant
from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


@dataclass
class LiveApp:
    url: str
    runtime: Runtime
    app: Flask
    api_key: str


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The whole service (embedded sealer, SQLite) on a free port of 127.0.0.1, in a thread."""
    tmp = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{tmp}/evidence.db"
    db.upgrade(url)
    # public_url must name the port, which is known only once the socket is bound: bind first, then build the app.
    server: BaseWSGIServer = make_server("127.0.0.1", 0, Flask("placeholder"), threaded=True)
    base = f"http://127.0.0.1:{server.server_port}"
    settings = Settings(data_dir=tmp / "data", database_url=url, public_url=base, batch_max_age=0.3)
    runtime = Runtime.from_settings(settings)
    runtime.prepare_signing()
    app = create_app(runtime=runtime, start_sealer=True)
    server.app = app  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="live-app", daemon=True)
    thread.start()
    with runtime.engine.begin() as conn:
        key = create_tenant(conn, "browser-tests", utc_now())
    try:
        yield LiveApp(base, runtime, app, key)
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        stop_sealer(app)
        runtime.engine.dispose()


@pytest.fixture(scope="session")
def downloads() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="evidence-downloads-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def driver(downloads: Path) -> Iterator[Any]:
    """One headless Chromium for the session, with a fresh profile and no background networking."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        skip_or_fail(
            f"{' and '.join(missing)} missing: install the Debian packages chromium and chromium-driver "
            "(scripts/install-system-deps)"
        )
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="evidence-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=1280,1800",
        "--lang=zh-CN",
    ):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "safebrowsing.enabled": False,
        },
    )
    browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.set_script_timeout(60)
    try:
        yield browser
    finally:
        browser.quit()
        shutil.rmtree(profile, ignore_errors=True)


def screenshot(driver: Any, name: str) -> Path:
    """A full-page PNG of the current page under test-artifacts/browser/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)")
    width = 1280
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": int(height), "deviceScaleFactor": 1, "mobile": False},
    )
    path = ARTIFACTS / f"{name}.png"
    try:
        path.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    return path
