"""What the browser tests need: a tiny trained run, the app serving it (`python -m imagegen.app` in
a subprocess, as a user starts it) and headless Chromium from the system's packages driven by
selenium through the system's chromedriver (nothing is downloaded). Each is skipped with the
reason when absent: CI machines may lack Chromium or the `app` extra."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("IMAGEGEN_TEST_ARTIFACTS", REPO / "test-artifacts")) / "app"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
STARTUP_SECONDS = 300  # importing torch and gradio on a busy 2-core machine takes a minute or more


def _system_chromium() -> tuple[str, str]:
    """(browser, chromedriver) paths from PATH; skips naming the packages when either is missing."""
    browser = next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip(
            "headless Chromium and chromedriver are not installed "
            "(Debian/Ubuntu: apt-get install chromium chromium-driver; see docs/app.md)"
        )
    return browser, driver


@pytest.fixture(scope="session")
def browser():
    """A headless Chromium window of 1280 x 900 px, driven by selenium."""
    pytest.importorskip("gradio", reason='gradio is not installed (pip install "imagegen[app]")')
    webdriver = pytest.importorskip(
        "selenium.webdriver", reason="selenium is not installed (pip install selenium)"
    )
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = _system_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, text_cache_dir) -> Path:
    """A runs folder holding one 16 px diffusion run of configs/tiny-test.yaml (2 steps), `tiny`."""
    from imagegen.config import load_config
    from imagegen.training.trainer import train

    runs = tmp_path_factory.mktemp("app") / "runs"
    overrides = [
        f"train.output_dir={runs}",
        f"text.cache_dir={text_cache_dir}",
        "train.run_name=tiny",
        "train.max_steps=2",
        "train.checkpoint_every=2",
    ]
    train(load_config(REPO / "configs" / "tiny-test.yaml", overrides))
    return runs


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"python -m imagegen.app exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"python -m imagegen.app did not serve {url} within {STARTUP_SECONDS} s:\n{log.read_text()}")


@pytest.fixture(scope="session")
def app_url(browser, tiny_runs, tmp_path_factory):
    """`python -m imagegen.app --runs <tiny_runs> --port <free>` serving; its URL. Stopped after."""
    port = _free_port()
    work = tmp_path_factory.mktemp("app-server")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(work / "gradio"),
    }
    log = work / "app.log"
    command = [sys.executable, "-m", "imagegen.app", "--runs", str(tiny_runs), "--port", str(port)]
    with open(log, "w") as out:
        server = subprocess.Popen(command, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_serving(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where the browser tests leave screenshots (IMAGEGEN_TEST_ARTIFACTS, default test-artifacts/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
