"""`python -m imagegen.app` in a real headless Chromium (issue 19): type a prompt, press Generate,
wait, and the page shows the grid of the images the shown Python call makes; a bad value or a bad
model path shows a one-line error in the page, never a traceback. Screenshots go to
test-artifacts/app/ (docs/img/app.png is one of them)."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
import pytest
from PIL import Image

from imagegen.cli import app_form

WAIT_SECONDS = 300  # one click: load the model and the text encoder, sample, on a busy CPU
TINY_SIDE = 16  # configs/tiny-test.yaml's resolution


def _by_css(driver, selector: str):
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, selector)


def _wait(driver, condition, seconds: float = WAIT_SECONDS):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds, poll_frequency=0.5).until(condition)


def _open(driver, url: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    _wait(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#prompt textarea, #prompt input"), 120)


def _type(driver, box: str, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    field = _by_css(driver, f"#{box} textarea, #{box} input")
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(Keys.DELETE)
    field.send_keys(text)
    field.send_keys(Keys.TAB)  # gradio takes a box's value when it loses focus


def _status_after_click(driver) -> tuple[str, str]:
    """Press Generate; wait for the status line; (its class: ok | error, its text)."""
    from selenium.webdriver.common.by import By

    _by_css(driver, "#generate").click()
    found = _wait(
        driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#status .status-ok, #status .status-error")
    )
    return found[0].get_attribute("class").removeprefix("status-"), found[0].text


def _shown_grid(driver) -> Image.Image:
    """The grid the page shows, fetched from the <img> source once the browser has decoded it."""
    image = _wait(
        driver,
        lambda d: next(
            (img for img in d.find_elements("css selector", "#grid img") if img.get_property("naturalWidth")),
            False,
        ),
    )
    with urllib.request.urlopen(image.get_attribute("src"), timeout=30) as response:
        grid = Image.open(io.BytesIO(response.read())).convert("RGB")
    assert grid.size == (image.get_property("naturalWidth"), image.get_property("naturalHeight"))
    return grid


def test_typing_a_prompt_and_pressing_generate_shows_the_grid_of_the_shown_call(
    app_url, browser, tiny_runs, artifacts
):
    _open(browser, app_url)
    model = str(tiny_runs / "tiny")
    _type(browser, "model", model)  # the bundled "default" is listed (and chosen) first when it loads
    _type(browser, "prompt", "a red circle")
    _type(browser, "count input[type=number], #count", "2")
    kind, text = _status_after_click(browser)
    assert kind == "ok", text
    assert f"2 images of {TINY_SIDE}x{TINY_SIDE} px" in text
    grid = _shown_grid(browser)
    browser.save_screenshot(str(artifacts / "app-generated.png"))
    # two 16 px images, upscaled to 96 px cells with 4 px padding, side by side
    assert grid.size == (2 * (96 + 4) + 4, 96 + 2 * 4)
    # the page shows exactly what its Python call makes (same seed, same model, in this process)
    call = app_form.build_call(model, "a red circle", num_images=2, seed=0)
    _, expected = app_form.run_call(call)
    assert np.array_equal(np.asarray(grid), np.asarray(expected))
    code = _by_css(browser, "#code .cm-content").text
    assert "imagegen.generate(" in code and '"a red circle"' in code and "num_images_per_prompt=2" in code


@pytest.mark.parametrize(
    ("box", "value", "message"),
    [
        ("guidance", "1000", "error: guidance_scale: expected a number in [0, 100]"),
        ("steps", "many", "error: num_steps: expected a number, got 'many'"),
        ("model", "/no/such/run", "error: model path /no/such/run does not exist"),
    ],
)
def test_a_bad_value_shows_a_one_line_error_in_the_page(app_url, browser, artifacts, box, value, message):
    _open(browser, app_url)
    _type(browser, "prompt", "a blue square")
    _type(browser, box, value)
    kind, text = _status_after_click(browser)
    assert kind == "error" and text.startswith(message), text
    page = browser.find_element("css selector", "body").text
    assert "Traceback" not in page and 'File "' not in page
    assert not browser.find_elements("css selector", "#grid img")  # no image for a refused call
    browser.save_screenshot(str(artifacts / f"app-error-{box}.png"))
