"""The drawing canvas in a real browser: Streamlit server, headless Chromium, mouse input.

AppTest cannot draw on ``streamlit-drawable-canvas`` (a v2 custom component), so these
tests check that it renders under this Streamlit version and that what is drawn reaches
the pages: a polygon becomes a stored corrected mask (Review), a rectangle is scored
(Teaching). Slow (a server start and model loading); skipped without Chromium.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from utils.review import ReviewStore

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")
WAIT_S = 300  # the first page loads TensorFlow and the segmenter


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A Streamlit server of the app with its own review database: (base URL, db URL)."""
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium and chromedriver are needed for the browser tests")
    folder = tmp_path_factory.mktemp("browser")
    db_url = f"sqlite:///{folder / 'reviews.sqlite3'}"
    port = _free_port()
    env = dict(
        os.environ, TUMORLENS_REVIEW_DB=db_url, TUMORLENS_DATA_DIR=str(folder / "no-datasets")
    )
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)]
    command += ["--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}", db_url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def driver() -> Iterator:
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--window-size=1400,2400"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


def _canvas(driver, wait: WebDriverWait):
    """The canvas's drawing layer, inside the component's shadow root."""
    script = (
        "return Array.from(document.querySelectorAll('*'))"
        ".find(e => e.shadowRoot && e.shadowRoot.querySelector('canvas.upper-canvas'))"
    )
    host = wait.until(lambda d: d.execute_script(script))
    return host.shadow_root.find_element(By.CSS_SELECTOR, "canvas.upper-canvas")


def _click_text(wait: WebDriverWait, text: str) -> None:
    wait.until(ec.element_to_be_clickable((By.XPATH, f"//label[.//p[text()='{text}']]"))).click()


def _wait_for_text(wait: WebDriverWait, text: str):
    return wait.until(ec.presence_of_element_located((By.XPATH, f"//*[contains(text(),{text!r})]")))


def test_a_drawn_polygon_is_stored_as_the_corrected_mask(server, driver) -> None:
    base_url, db_url = server
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{base_url}/Review")
    name = wait.until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "input[aria-label^='Your name']"))
    )
    name.send_keys("Dr Browser\n")
    _click_text(wait, "Draw the lesion")
    canvas = _canvas(driver, wait)
    assert canvas.size == {"width": 560, "height": 448}  # the examples' 5:4 aspect
    time.sleep(1)
    # Polygon (the default tool): four corners, then the first again to close it.
    for x, y in [(-80, -60), (80, -60), (80, 60), (-80, 60), (-80, -60)]:
        ActionChains(driver).move_to_element_with_offset(canvas, x, y).click().perform()
        time.sleep(0.3)
    drawn = _wait_for_text(wait, "Drawn:").text  # before the page reruns
    for label, option in (("Your class", "benign"), ("BI-RADS category", "4A")):
        box = driver.find_element(
            By.XPATH, f"//div[@data-testid='stSelectbox'][.//p[text()='{label}']]//input"
        )
        box.send_keys(option + "\n")
        time.sleep(1)
    wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Save review']]"))
    ).click()
    _wait_for_text(wait, "Saved your review")

    store = ReviewStore(db_url)
    [review] = store.reviews()
    store.close()
    mask = review.corrected_mask
    assert mask.shape == (400, 500)
    # 160 x 120 canvas px at 500/560 image px per canvas px: about 143 x 107 px.
    assert 0.85 * 143 * 107 < mask.sum() < 1.2 * 143 * 107
    assert f"{mask.sum()} px" in drawn
    assert mask[200, 250] and not mask[20, 20]  # the centre, not the corner


def test_a_drawn_rectangle_is_scored_in_the_quiz(server, driver) -> None:
    base_url, _ = server
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{base_url}/Teaching")
    _click_text(wait, "benign")
    canvas = _canvas(driver, wait)
    time.sleep(1)
    ActionChains(driver).move_to_element_with_offset(
        canvas, -60, -40
    ).click_and_hold().move_by_offset(60, 40).move_by_offset(60, 40).release().perform()
    time.sleep(2)
    wait.until(
        ec.element_to_be_clickable((By.XPATH, "//button[.//p[text()='Check my answer']]"))
    ).click()
    feedback = wait.until(
        lambda d: d.find_elements(
            By.XPATH, "//*[contains(text(),'IoU') or contains(text(),'but you marked one')]"
        )
    )
    assert feedback
