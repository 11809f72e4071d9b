"""End-to-end test in a real browser: the app served by Streamlit, driven by chromium.

The test starts ``streamlit run app.py`` on a free localhost port, opens the Analyse
page in headless Debian chromium (through chromedriver), uploads a built-in example
through the file uploader, waits for the analysis, checks the four panels and the
classification area, downloads the PDF report, and saves a screenshot to
``artifacts/e2e/analyse.png`` (also to ``docs/screenshots/analyse.png``, the README's,
when ``TUMORLENS_UPDATE_SCREENSHOT=1``: ``make screenshot``).

``make test`` installs chromium and chromium-driver (``make browser-deps``); without
them this test fails with a message rather than skipping, so CI cannot pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.utils.pdf_text import page_count, pdf_text

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent.parent
CHROMIUM = Path(os.environ.get("TUMORLENS_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("TUMORLENS_CHROMEDRIVER", "/usr/bin/chromedriver"))
ARTIFACTS = ROOT / "artifacts" / "e2e"
README_SCREENSHOT = ROOT / "docs" / "screenshots" / "analyse.png"
EXAMPLE = ROOT / "examples" / "malignant_irregular_01.png"
CLASSIFIER_BUNDLE = ROOT / "saved_models" / "ultrasound_classifier.keras"
SERVER_START_TIMEOUT = 90
# The first analysis loads and warms up the models: slow on a busy 2-core CPU.
ANALYSIS_TIMEOUT = 240
NO_CLASSIFIER = "No classifier is installed yet"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"streamlit exited with {process.returncode}; log:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(
        f"streamlit did not answer within {SERVER_START_TIMEOUT} s; log:\n{log.read_text()}"
    )


@pytest.fixture(scope="module")
def app_url() -> Iterator[str]:
    """The app, served by ``streamlit run`` on a free port for the module's tests."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = ARTIFACTS / "streamlit.log"
    command = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true",
        "--server.port", str(port),
        "--server.address", "127.0.0.1",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with log.open("w") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless chromium through chromedriver, downloading into a temporary folder."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    if missing:
        pytest.fail(
            f"The browser test needs {' and '.join(missing)}: run `make browser-deps` (Debian "
            "packages chromium and chromium-driver), or set TUMORLENS_CHROMIUM / "
            "TUMORLENS_CHROMEDRIVER."
        )
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        "--window-size=1600,1200",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.download_dir = downloads  # type: ignore[attr-defined]
    try:
        yield driver
    finally:
        driver.quit()


def _visible_text(driver: WebDriver) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def _wait_for(driver: WebDriver, condition, timeout: float, what: str):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / "failure.png"))
        pytest.fail(
            f"Timed out after {timeout} s waiting for {what}; screenshot in "
            f"{ARTIFACTS / 'failure.png'}. Page text:\n{_visible_text(driver)[:3000]}"
        )


def _panel_captions(driver: WebDriver) -> list[str]:
    return [
        caption.text
        for caption in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stImageCaption"]')
    ]


def test_analyse_page_in_a_real_browser(app_url: str, browser: WebDriver) -> None:
    # As a user: the home page, then the Analyse page from the sidebar navigation.
    browser.get(app_url)
    analyse_link = _wait_for(
        browser,
        expected_conditions.element_to_be_clickable(
            (By.XPATH, "//*[@data-testid='stSidebarNav']//a[contains(., 'Analyse')]")
        ),
        SERVER_START_TIMEOUT,
        "the sidebar navigation",
    )
    analyse_link.click()
    _wait_for(
        browser,
        lambda driver: "Analyse an ultrasound image" in _visible_text(driver),
        SERVER_START_TIMEOUT,
        "the Analyse page",
    )
    upload_choice = _wait_for(
        browser,
        expected_conditions.element_to_be_clickable(
            (By.XPATH, "//*[@data-testid='stRadio']//label[contains(., 'Upload')]")
        ),
        ANALYSIS_TIMEOUT,
        "the image-source radio",
    )
    upload_choice.click()
    file_input = _wait_for(
        browser,
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, "input[type='file']")),
        60,
        "the file uploader",
    )
    file_input.send_keys(str(EXAMPLE))

    def analysed(driver: WebDriver) -> bool:
        # The built-in example was analysed before the upload: wait for a finished run
        # (no stale element, no running indicator) showing the upload's results (its
        # pixel spacing is unknown, the example's is known).
        if driver.find_elements(By.CSS_SELECTOR, '[data-stale="true"]'):
            return False
        if driver.find_elements(By.CSS_SELECTOR, '[data-testid^="stStatusWidgetRunning"]'):
            return False
        captions = " ".join(_panel_captions(driver))
        finished = "Lesion mask (threshold" in captions and "predicted lesion area" in captions
        return finished and "Pixel spacing: unknown" in _visible_text(driver)

    _wait_for(browser, analysed, ANALYSIS_TIMEOUT, "the analysis results")
    assert not browser.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    captions = _panel_captions(browser)
    assert captions[0] == "Original"
    assert captions[1].startswith("Lesion mask (threshold")
    assert captions[-1] == "Segmenter gradcam: predicted lesion area"
    images = browser.find_elements(By.CSS_SELECTOR, '[data-testid="stImage"] img')

    def decoded(_: WebDriver) -> bool:
        return all(image.get_property("naturalWidth") for image in images)

    _wait_for(browser, decoded, 60, "the panel images to load")
    # Saved before the checks, so a failing run leaves its picture too.
    screenshot = ARTIFACTS / "analyse.png"
    assert browser.save_screenshot(str(screenshot))
    text = _visible_text(browser)
    assert "not a diagnosis" in text
    assert "Lesion measurements" in text and "Pixel spacing: unknown" in text  # an upload
    assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')
    if CLASSIFIER_BUNDLE.is_file():
        # Four image panels, the classifier's CAM among them, and the probabilities.
        assert len(images) == 4 and any(c.startswith("Classifier gradcam") for c in captions)
        assert browser.find_elements(By.CSS_SELECTOR, '[data-testid="stPlotlyChart"]')
        assert "Predicted:" in text
    else:
        # Three image panels and the fourth says why the classifier's is missing.
        assert len(images) == 3
        assert NO_CLASSIFIER in text

    if os.environ.get("TUMORLENS_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, README_SCREENSHOT)

    # The report button builds the PDF on click; the browser saves it.
    button = browser.find_element(
        By.XPATH, "//*[@data-testid='stDownloadButton']//button[contains(., 'PDF report')]"
    )
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    downloads: Path = browser.download_dir  # type: ignore[attr-defined]
    pdfs = _wait_for(
        browser, lambda _: list(downloads.glob("tumorlens_report_*.pdf")), 120, "the PDF report"
    )
    pdf = pdfs[0].read_bytes()
    shutil.copyfile(pdfs[0], ARTIFACTS / "report.pdf")
    assert page_count(pdf) == 1
    assert "decision support, not a diagnosis" in " ".join(pdf_text(pdf).split())
