"""A real browser for the pages' tests: Debian's headless Chromium, driven by selenium through chromedriver.

`.ci/run` installs the two packages (chromium, chromium-driver) on a machine that lacks them; locally a
missing browser skips the tests, in CI it fails them. Helpers reach into the elements' shadow roots, run
axe-core in the page, and keep a screenshot of a failing test under test-artifacts/.
"""

from __future__ import annotations

import importlib.resources
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webelement import WebElement

from .services import absent
from .wait import wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
#: axe-core's impacts that fail a page: a keyboard or screen-reader user could not use it.
BLOCKING_IMPACTS = ("serious", "critical")


def require_browser() -> None:
    """Skip the test without Chromium and chromedriver, unless in CI, where that is a failure."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if not missing:
        return
    absent(
        f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver)", ci=".ci/run installs them"
    )


def start_browser(*, width: int = 1280, height: int = 900, reduced_motion: bool = True) -> webdriver.Chrome:
    require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={width},{height}",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    if reduced_motion:
        options.add_argument("--force-prefers-reduced-motion")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    return driver


def shadow(driver: webdriver.Chrome, host: str, selector: str) -> WebElement:
    """The element ``selector`` in the shadow root of the page's ``host`` element."""
    root = driver.find_element("css selector", host).shadow_root
    return root.find_element("css selector", selector)


def shadow_all(driver: webdriver.Chrome, host: str, selector: str) -> list[WebElement]:
    return driver.find_element("css selector", host).shadow_root.find_elements("css selector", selector)


def in_page(driver: webdriver.Chrome, script: str, *args: Any) -> Any:
    return driver.execute_script(script, *args)


def wait_in_page(driver: webdriver.Chrome, script: str, *, timeout: float = 10.0, what: str) -> Any:
    """Poll ``script`` (a function body returning a value) in the page until it returns something truthy."""
    return wait_for(lambda: driver.execute_script(script), timeout=timeout, interval=0.05, what=what)


def accessibility_violations(driver: webdriver.Chrome) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (shadow roots included)."""
    axe = (importlib.resources.files("axe_core_python") / "axe.min.js").read_text()
    driver.execute_script(axe)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(done, (error) => done({error: String(error)}));"
    )
    assert "error" not in result, result
    return [
        {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in result["violations"]
        if v["impact"] in BLOCKING_IMPACTS
    ]


def save_screenshot(driver: webdriver.Chrome, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(path))
    return path


def keep_on_failure(request: pytest.FixtureRequest, driver: webdriver.Chrome) -> Callable[[], None]:
    """A finaliser that saves a screenshot and the console log of ``driver`` if the test failed."""

    def finalise() -> None:
        report = getattr(request.node, "rep_call", None)
        if report is None or not report.failed:
            return
        name = request.node.name.replace("/", "_")
        save_screenshot(driver, ARTIFACTS / f"{name}.png")
        console = "\n".join(f"{entry['level']} {entry['message']}" for entry in driver.get_log("browser"))
        (ARTIFACTS / f"{name}.console.txt").write_text(console)

    return finalise
