"""The built-in test page of `exeml serve` in a real headless browser (Chromium driven by
Selenium): load the page, type a table row, press Predict, read the rendered prediction; the same
with an API key; and a refused input shown with the field it names."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import exeml

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

if not (CHROMIUM and DRIVER and os.environ.get("EXEML_BIN")):
    if os.environ.get("CI"):
        raise RuntimeError("CI must run the browser test: chromium, chromedriver and EXEML_BIN are needed")
    pytest.skip("chromium, chromedriver or EXEML_BIN missing (scripts/setup.sh installs them)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service as DriverService  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SETOSA = {"sepal_length_cm": "5.0", "sepal_width_cm": "3.4", "petal_length_cm": "1.5", "petal_width_cm": "0.2"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory, iris_path: Path) -> Path:
    out = tmp_path_factory.mktemp("page") / "iris-model"
    exeml.TabularPredictor("species", families=["linear"]).fit(str(iris_path), time_limit=5).save(out)
    return out


def serve(model: Path, *extra: str) -> tuple[subprocess.Popen[str], str]:
    exe = os.environ["EXEML_BIN"]
    proc = subprocess.Popen([exe, "serve", "--model", str(model), "--port", "0", *extra],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line.startswith("listening on http://"), line
    return proc, line.removeprefix("listening on ")


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    code = proc.wait(timeout=30)
    if proc.stdout is not None:
        proc.stdout.close()
    assert code == 0, "a clean exit on SIGTERM"


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or ""
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=DriverService(executable_path=DRIVER), options=options)
    yield driver
    driver.quit()


def fill_row(browser: webdriver.Chrome, row: dict[str, str]) -> None:
    for field in browser.find_elements(By.CSS_SELECTOR, "#inputs input"):
        name = field.get_attribute("data-name")
        if name in row:
            field.clear()
            field.send_keys(row[name])


def predict(browser: webdriver.Chrome) -> None:
    browser.find_element(By.ID, "submit").click()


def wait_text(browser: webdriver.Chrome, element_id: str, text: str) -> str:
    WebDriverWait(browser, 20).until(ec.text_to_be_present_in_element((By.ID, element_id), text))
    return str(browser.find_element(By.ID, element_id).text)


def test_the_page_predicts_a_typed_row_and_shows_refusals(browser: webdriver.Chrome, model_dir: Path) -> None:
    proc, url = serve(model_dir)
    try:
        browser.get(url + "/")
        WebDriverWait(browser, 20).until(ec.visibility_of_element_located((By.ID, "form")))
        names = [f.get_attribute("data-name") for f in browser.find_elements(By.CSS_SELECTOR, "#inputs input")]
        assert names == list(SETOSA)
        fill_row(browser, SETOSA)
        predict(browser)
        assert wait_text(browser, "prediction", "Prediction:") == "Prediction: setosa"
        assert "Answered by model iris-model" in browser.find_element(By.ID, "status").text

        fill_row(browser, {"sepal_length_cm": "wide"})
        predict(browser)
        status = wait_text(browser, "status", "HTTP 400")
        assert "data.req_data[0].sepal_length_cm" in status and "expected a number" in status
    finally:
        stop(proc)


def test_the_page_asks_for_the_api_key_and_then_predicts(browser: webdriver.Chrome, model_dir: Path) -> None:
    proc, url = serve(model_dir, "--api-key", "page-test-key")
    try:
        browser.get(url + "/")
        wait_text(browser, "status", "needs an API key")
        browser.find_element(By.ID, "key").send_keys("page-test-key")
        predict(browser)  # loads the models with the key
        WebDriverWait(browser, 20).until(ec.presence_of_element_located((By.ID, "field-0")))
        fill_row(browser, SETOSA)
        predict(browser)
        assert wait_text(browser, "prediction", "Prediction:") == "Prediction: setosa"
    finally:
        stop(proc)
