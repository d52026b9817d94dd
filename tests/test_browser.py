"""A real browser: JupyterLab on 127.0.0.1, the gradient explorer of notebook 02 run in headless Chromium.

It runs a copy of the notebook at the smoke size, moves the explorer's checkpoint slider, and checks that the
figure changed and that no cell raised. A screenshot is saved to build/artifacts/ for CI. Skipped, with the
reason, only where Chromium, its driver or selenium are missing (`.ci/run` installs Debian's chromium and
chromium-driver). The server it starts is stopped by its PID, whatever happens.
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Chromium or chromedriver missing: apt-get install chromium chromium-driver")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_server(url, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"JupyterLab did not answer at {url} within {timeout} s")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of notebook 02 (autosave must never touch the committed notebook)."""
    shutil.copy(ROOT / "notebooks" / "02_dni.ipynb", tmp_path / "02_dni.ipynb")
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ, SG_SIZE="smoke", TQDM_DISABLE="1", PYTHONPATH=str(ROOT), SG_RESULTS=str(tmp_path / "results"))
    log = open(tmp_path / "lab.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}", "--LabApp.expose_app_in_browser=True",
         "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        try:
            wait_for_server(f"http://127.0.0.1:{port}/api/status?token={token}", process)
        except (RuntimeError, TimeoutError) as error:
            raise RuntimeError(f"{error}; its log ends:\n{(tmp_path / 'lab.log').read_text()[-3000:]}") from None
        yield f"http://127.0.0.1:{port}", token
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        assert process.poll() is not None, "the JupyterLab server is stopped"


@pytest.fixture
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1500,1300"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def explorer_image(driver):
    images = driver.find_elements(By.CSS_SELECTOR, ".widget-output img, .jupyter-widgets-output-area img")
    return images[0].get_attribute("src") if images else None


NOTEBOOK_JS = ("const panel = Array.from(window.jupyterapp ? window.jupyterapp.shell.widgets('main') : [])"
               ".find(w => w.sessionContext && w.content && w.content.widgets);")


def kernel_idle(driver):
    return driver.execute_script(NOTEBOOK_JS + "const s = panel && panel.sessionContext.session;"
                                 "return !!(s && s.kernel && s.kernel.status === 'idle');")


def all_cells_ran(driver):
    return kernel_idle(driver) and driver.execute_script(
        NOTEBOOK_JS + "return panel.content.widgets.filter(c => c.model.type === 'code')"
        ".every(c => c.model.executionCount !== null);")


def test_gradient_explorer_in_a_real_browser(lab, browser):
    url, token = lab
    browser.get(f"{url}/lab/tree/02_dni.ipynb?token={token}")
    wait = WebDriverWait(browser, 300, poll_frequency=1)
    wait.until(kernel_idle)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    time.sleep(2)
    wait.until(all_cells_ran)
    errors = browser.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [e.text for e in errors if "Traceback" in e.text or "Error" in e.text]
    assert not tracebacks, tracebacks[0][:2000]
    wait.until(lambda d: explorer_image(d) is not None)
    before = explorer_image(browser)
    handle = browser.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle, .widget-hslider .noUi-handle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    handle.send_keys(Keys.HOME)   # the first checkpoint
    wait.until(lambda d: explorer_image(d) not in (None, before))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "browser_gradient_explorer.png"))
    assert explorer_image(browser) != before
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".widget-label")]
    assert "iteration 20" in labels, labels   # the caption follows the slider to the first checkpoint
