"""A real browser: headless Chromium on the gradient explorer of notebook 02 and on one slide deck, offline.

The first test runs a copy of notebook 02 at the smoke size in JupyterLab on 127.0.0.1, moves the explorer's
checkpoint slider, and checks that the figure changed and that no cell raised. The second builds notebook 00's
deck the way `make slides` does and opens it from file:// with the network cut off, to check that it works in a
room with no internet. Screenshots are saved to build/artifacts/ for CI. Skipped, with the reason, only where
Chromium, its driver, selenium (or, for the deck, npm) are missing (`.ci/run` installs Debian's chromium and
chromium-driver). The server the first test starts is stopped by its PID, whatever happens.
"""
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import slides  # noqa: E402
ARTIFACTS = ROOT / "build" / "artifacts"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="Chromium or chromedriver missing: apt-get install chromium chromium-driver")

from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
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


def serve(notebook, tmp_path):
    """JupyterLab on 127.0.0.1 serving a copy of `notebook` (autosave must never touch the committed one), at the smoke
    size; yields (address, token) and stops the server by its PID, whatever happens. Both browser tests use it."""
    shutil.copy(ROOT / "notebooks" / notebook, tmp_path / notebook)
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
def lab(tmp_path):
    """JupyterLab serving a copy of notebook 02."""
    yield from serve("02_dni.ipynb", tmp_path)


FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync")


def chromium(tmp_path_factory, *extra):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}", "--window-size=1500,1300", *extra):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=DRIVER), options=options)


@pytest.fixture
def browser(tmp_path_factory):
    driver = chromium(tmp_path_factory)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def offline_browser(tmp_path_factory):
    """Chromium that can reach no host: every name resolves to nothing and network access is emulated off."""
    driver = chromium(tmp_path_factory, "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9")
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd("Network.emulateNetworkConditions",
                               {"offline": True, "latency": 0, "downloadThroughput": 0, "uploadThroughput": 0})
        yield driver
    finally:
        driver.quit()


def explorer_image(driver):
    """The explorer's current image (its data URL), or None while there is none. The widget replaces its image
    when it redraws, so an element found a moment ago can be gone when it is read: that also reads as None, and
    the caller's wait looks again."""
    images = driver.find_elements(By.CSS_SELECTOR, ".widget-output img, .jupyter-widgets-output-area img")
    try:
        return images[0].get_attribute("src") if images else None
    except StaleElementReferenceException:
        return None


NOTEBOOK_JS = ("const panel = Array.from(window.jupyterapp ? window.jupyterapp.shell.widgets('main') : [])"
               ".find(w => w.sessionContext && w.content && w.content.widgets);")


def kernel_idle(driver):
    return driver.execute_script(NOTEBOOK_JS + "const s = panel && panel.sessionContext.session;"
                                 "return !!(s && s.kernel && s.kernel.status === 'idle');")


def all_cells_ran(driver):
    return kernel_idle(driver) and driver.execute_script(
        NOTEBOOK_JS + "return panel.content.widgets.filter(c => c.model.type === 'code')"
        ".every(c => c.model.executionCount !== null);")


def stderr_texts(driver):
    """The text of every stderr output, or False while the page is still re-rendering them (a stale element):
    for WebDriverWait, which polls until it gets a list."""
    try:
        return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[data-mime-type='application/vnd.jupyter.stderr']")] or [""]
    except StaleElementReferenceException:
        return False


def test_gradient_explorer_in_a_real_browser(lab, browser):
    url, token = lab
    browser.get(f"{url}/lab/tree/02_dni.ipynb?token={token}")
    wait = WebDriverWait(browser, 300, poll_frequency=1, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(kernel_idle)
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells');")
    time.sleep(2)
    wait.until(all_cells_ran)
    tracebacks = wait.until(stderr_texts)
    assert not [t for t in tracebacks if "Traceback" in t or "Error" in t], tracebacks[0][:2000]
    before = wait.until(explorer_image)            # polls until the explorer shows an image, and returns it
    handle = browser.find_element(By.CSS_SELECTOR, ".widget-slider .noUi-handle, .widget-hslider .noUi-handle")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'});", handle)
    handle.click()
    handle.send_keys(Keys.HOME)   # the first checkpoint
    wait.until(lambda d: explorer_image(d) not in (None, before))   # a new image: the slider redrew it
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "browser_gradient_explorer.png"))
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".widget-label")]
    assert "iteration 20" in labels, labels   # the caption follows the slider to the first checkpoint


DECK = ROOT / "notebooks" / "00_introduction.ipynb"   # the smallest deck


def raw_tex(driver):
    """Markdown text on the slides that still shows $...$, i.e. maths MathJax has not typeset."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.reveal .slides section .jp-MarkdownOutput'))"
        ".map(e => e.innerText).filter(t => /\\$[^$\\s][^$]*\\$/.test(t));")


REMOTE = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)


@pytest.mark.skipif(shutil.which("npm") is None and not all(
    (slides.OUT / "vendor" / "node_modules" / f).is_file() for f in slides.VENDOR_FILES),
    reason="npm missing (apt-get install npm): it fetches reveal.js and MathJax for the slides once")
def test_a_slide_deck_works_offline(offline_browser):
    """Notebook 00's deck, built as `make slides` builds it, renders as slides with typeset maths, offline."""
    deck, = slides.build([DECK])
    html = deck.read_text(encoding="utf-8")
    assert not REMOTE.search(html), "no script or style sheet is loaded from the network"
    expected = len(slides.slides(slides.for_the_room(nbformat.read(DECK, as_version=4))))   # a figure a sub-slide
    offline_browser.get(deck.as_uri())
    wait = WebDriverWait(offline_browser, 60, poll_frequency=0.5)
    wait.until(lambda d: d.execute_script("return !!(window.Reveal && Reveal.isReady && Reveal.isReady());"))
    assert offline_browser.execute_script("return Reveal.getTotalSlides();") == expected
    typeset = lambda d: d.execute_script("return document.querySelector('mjx-container') !== null;") and not raw_tex(d)
    try:
        wait.until(typeset)
    except TimeoutException:
        pass
    assert offline_browser.execute_script("return document.querySelector('mjx-container') !== null;"), "MathJax ran"
    assert not raw_tex(offline_browser), f"maths left as raw TeX: {raw_tex(offline_browser)[0][:300]}"
    # show the first slide with a display formula, and save it
    offline_browser.execute_script(
        "const m = document.querySelector('mjx-container[display=\"true\"]') || document.querySelector('mjx-container');"
        "const s = m.closest('section'); const i = Reveal.getIndices(s); Reveal.slide(i.h, i.v);")
    time.sleep(1.5)   # the slide transition
    assert offline_browser.execute_script(
        "return document.querySelector('section.present mjx-container') !== null;"), "the shown slide has typeset maths"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    offline_browser.save_screenshot(str(ARTIFACTS / "slides_00.png"))


FIGURE_DECK = ROOT / "notebooks" / "04_synthetic_loss.ipynb"   # its figure cells had up to 45 lines of plotting code
FIGURES = ".reveal .slides section .jp-OutputArea-output img"


def show_figure(driver, k):
    """Go to the slide of the deck's k-th figure; return its image's box and the viewport: [left, top, right,
    bottom, width, height] in CSS pixels, once the slide is the one shown and the image has loaded."""
    driver.execute_script("const s = document.querySelectorAll(arguments[0])[arguments[1]].closest('section');"
                          "const i = Reveal.getIndices(s); Reveal.slide(i.h, i.v);", FIGURES, k)
    WebDriverWait(driver, 10, poll_frequency=0.1).until(lambda d: d.execute_script(
        "const img = document.querySelectorAll(arguments[0])[arguments[1]];"
        "return img.complete && img.closest('section').classList.contains('present');", FIGURES, k))
    time.sleep(0.2)   # reveal lays the slide out on the next frame
    return driver.execute_script(
        "const r = document.querySelectorAll(arguments[0])[arguments[1]].getBoundingClientRect();"
        "return [r.left, r.top, r.right, r.bottom, window.innerWidth, window.innerHeight];", FIGURES, k)


def slide_bottom(driver, k):
    """The lowest point of anything on the slide of the deck's k-th figure (shown), in CSS pixels."""
    return driver.execute_script(
        "const s = document.querySelectorAll(arguments[0])[arguments[1]].closest('section');"
        "return Math.max(...Array.from(s.querySelectorAll('*')).map(e => e.getBoundingClientRect().bottom));",
        FIGURES, k)


@pytest.mark.skipif(shutil.which("npm") is None and not all(
    (slides.OUT / "vendor" / "node_modules" / f).is_file() for f in slides.VENDOR_FILES),
    reason="npm missing (apt-get install npm): it fetches reveal.js and MathJax for the slides once")
def test_every_figure_of_a_deck_is_in_view_at_1280x720(offline_browser, tmp_path):
    """Notebook 04's deck on a 1280x720 projector: on each figure's slide the whole image, and everything else on
    that slide, lies inside the viewport, without scrolling (the deck hides the plotting code and caps a figure's
    height; a figure shares its slide with a caption at most)."""
    notebook = nbformat.read(FIGURE_DECK, as_version=4)
    slides.apply(notebook)             # the rules as they are (tests/test_slides.py checks the notebooks keep them)
    nbformat.write(notebook, tmp_path / FIGURE_DECK.name)
    deck, = slides.build([tmp_path / FIGURE_DECK.name])
    offline_browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                    {"width": 1280, "height": 720, "deviceScaleFactor": 1, "mobile": False})
    offline_browser.get(deck.as_uri())
    WebDriverWait(offline_browser, 60, poll_frequency=0.5).until(
        lambda d: d.execute_script("return !!(window.Reveal && Reveal.isReady && Reveal.isReady());"))
    offline_browser.execute_script("Reveal.configure({transition: 'none'});")
    offline_browser.execute_async_script(   # typeset maths first: it changes the height of the prose above a figure
        "const done = arguments[0]; (window.MathJax && MathJax.startup ? MathJax.startup.promise : Promise.resolve())"
        ".then(() => done(), () => done());")
    count = offline_browser.execute_script("return document.querySelectorAll(arguments[0]).length;", FIGURES)
    assert count >= 3, "the deck has its figures"
    boxes, bottoms = [], []
    for k in range(count):
        boxes.append(show_figure(offline_browser, k))
        bottoms.append(slide_bottom(offline_browser, k))
    outside = [(k, box) for k, box in enumerate(boxes)
               if box[0] < 0 or box[1] < 0 or box[2] > box[4] or box[3] > box[5] or box[3] - box[1] < 50]
    overflowing = [(k, round(bottom)) for k, bottom in enumerate(bottoms) if bottom > boxes[k][5]]
    tallest = max(range(count), key=lambda k: boxes[k][3] - boxes[k][1])
    show_figure(offline_browser, tallest)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    offline_browser.save_screenshot(str(ARTIFACTS / "slides_04_tallest_figure.png"))
    assert not outside, f"figures not wholly in view at 1280x720 (index, [left, top, right, bottom, w, h]): {outside}"
    assert not overflowing, f"figure slides running past the bottom of the screen (index, bottom): {overflowing}"
