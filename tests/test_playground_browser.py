"""A real browser on the live playground of notebook 03b: play, the figure changes; switch the method, the curves part.

A copy of notebook 03b runs at the smoke size in JupyterLab on 127.0.0.1, driven by headless Chromium (the pattern
and the helpers of tests/test_browser.py). The test presses play and checks that the panels' image changes while
the step counter climbs, pauses, switches the method from cDNI to no backprop (a new run from the same network and
batches), plays again, and checks that the two runs' losses at comparable steps are far apart, as the widget's
comparison line reports them. A screenshot goes to build/artifacts/playground.png. Skipped, with the reason, where
Chromium, its driver or selenium are missing. The server is stopped by its PID, whatever happens.
"""
import re
import time

import pytest

from test_browser import ARTIFACTS, CHROMIUM, DRIVER, all_cells_ran, browser, kernel_idle, serve  # noqa: F401

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Chromium or chromedriver missing: apt-get install chromium chromium-driver")

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

NOTEBOOK = "03b_playground.ipynb"


@pytest.fixture
def lab(tmp_path):
    """JupyterLab serving a copy of notebook 03b."""
    yield from serve(NOTEBOOK, tmp_path)


def playground(driver):
    found = driver.find_elements(By.CSS_SELECTOR, ".sg-playground")
    return found[0] if found else None


def image(driver):
    """The panels' image (its data URL), or None while there is none. The widget replaces elements as it redraws,
    live, so one found a moment ago can be gone when it is read: that reads as None too, and a wait looks again."""
    try:
        box = playground(driver)
        images = box.find_elements(By.CSS_SELECTOR, "img") if box else []
        return images[0].get_attribute("src") if images else None
    except StaleElementReferenceException:
        return None


def label(driver, start):
    """The text of the first label starting with `start`; "" while there is none (or it was just redrawn)."""
    try:
        box = playground(driver)
        texts = [e.text for e in box.find_elements(By.CSS_SELECTOR, ".widget-label")] if box else []
    except StaleElementReferenceException:
        return ""
    return next((t for t in texts if t.startswith(start)), "")


def step(driver):
    match = re.match(r"step ([\d,]+) ", label(driver, "step "))
    return int(match.group(1).replace(",", "")) if match else -1


def press(driver, name):
    button = next(b for b in playground(driver).find_elements(By.CSS_SELECTOR, "button") if b.text.strip() == name)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", button)
    button.click()


def loss(text):
    return float(re.search(r"loss ([\d.]+)", text).group(1))


def test_the_playground_trains_live_and_the_curves_part(lab, browser):
    url, token = lab
    browser.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
    wait = WebDriverWait(browser, 300, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(kernel_idle)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    time.sleep(2)
    wait.until(all_cells_ran)
    errors = browser.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [e.text for e in errors if "Traceback" in e.text or "Error" in e.text]
    assert not tracebacks, tracebacks[0][:2000]
    wait.until(lambda d: image(d) is not None and step(d) >= 0)

    # play: the panels are redrawn as the steps go by
    before, first = image(browser), step(browser)
    press(browser, "play")
    wait.until(lambda d: step(d) >= first + 300 and image(d) != before)
    press(browser, "pause")
    time.sleep(1)
    assert "cdni" in label(browser, "step ")

    # switch the method: a new run from the same start; the cDNI run stays for comparison
    method = next(Select(e) for e in playground(browser).find_elements(By.CSS_SELECTOR, "select")
                  if "nobackprop" in [o.text for o in Select(e).options])
    method.select_by_visible_text("nobackprop")
    wait.until(lambda d: step(d) == 0 and "nobackprop" in label(d, "step "))
    press(browser, "play")
    wait.until(lambda d: step(d) >= 200 and label(d, "earlier run (cdni)"))
    press(browser, "pause")
    time.sleep(1)
    panels = playground(browser).find_element(By.CSS_SELECTOR, "img")
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'});", panels)
    time.sleep(0.5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "playground.png"))
    now, earlier = label(browser, "step "), label(browser, "earlier run (cdni)")
    assert loss(now) > loss(earlier) + 0.1, (now, earlier)   # no backprop stays high where cDNI went on down
