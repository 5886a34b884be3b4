"""The ``jetgen serve`` page in a real headless Chromium driven by Selenium: load it, sample by label,
keep a sample and move an Explore slider, interpolate, draw a stroke, complete it and watch the result
change, then the same page at phone width; no console error may be logged. A PNG screenshot of each
state goes to the test's tmp dir and, when ``JETGEN_SCREENSHOTS`` names a directory, there too.

The model is a small real 28x28 conditional bundle from tests/runtime_fixtures.py (random weights:
its samples are noise, but every path of the page and the API runs). ``JETGEN_SERVE_BUNDLE`` names
another bundle to use instead (for screenshots of a trained model). Skipped, with the reason, where
Chromium, chromedriver or selenium are missing (.ci/run installs them).
"""
import os
import shutil
import threading

import pytest

from jetgen.serve import make_server
from tests.runtime_fixtures import make_bundle

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
DRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

pytestmark = [
    pytest.mark.skipif(not HAVE_SELENIUM, reason="selenium is not installed (pip install selenium)"),
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here (apt-get install chromium)"),
    pytest.mark.skipif(DRIVER is None, reason="no chromedriver here (apt-get install chromium-driver)"),
]
WAIT = 30  # seconds for any one thing the page does


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    bundle = os.environ.get("JETGEN_SERVE_BUNDLE")
    if not bundle:
        root = str(tmp_path_factory.mktemp("browser-bundle"))
        bundle = make_bundle(os.path.join(root, "digits.jetgen"), kind="cvae", latent_dim=8, n_labels=10,
                             shape=(1, 28, 28), name="fixture-digits")[0]
    lines = []
    server = make_server([bundle], port=0, threads=1, log=lines.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    yield server, lines
    server.shutdown()
    server.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1200,1000", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


class Shots(object):
    """Screenshots of each state: always under the test's tmp dir, and in $JETGEN_SCREENSHOTS if set."""

    def __init__(self, driver, tmp_path):
        self.driver = driver
        self.dirs = [str(tmp_path / "screenshots")] + ([os.environ["JETGEN_SCREENSHOTS"]]
                                                       if os.environ.get("JETGEN_SCREENSHOTS") else [])
        for d in self.dirs:
            os.makedirs(d, exist_ok=True)
        self.files = []

    def __call__(self, name):
        png = self.driver.get_screenshot_as_png()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        for d in self.dirs:
            path = os.path.join(d, "serve-{}.png".format(name))
            with open(path, "wb") as handle:
                handle.write(png)
            self.files.append(path)


def canvas_stats(driver, element):
    """(sum of grey values, a short fingerprint) of a canvas's pixels, read in the page."""
    return driver.execute_script("""
        const c = arguments[0], d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let sum = 0, h = 0;
        for (let i = 0; i < d.length; i += 4) { sum += d[i]; h = (h * 31 + d[i]) % 1000000007; }
        return [sum, h];""", element)


def wait_for(driver, condition, what):
    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: condition(d), message=what)


def severe_logs(driver):
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def test_the_page_samples_explores_draws_and_completes(site, browser, tmp_path):
    server, lines = site
    shots = Shots(browser, tmp_path)
    d = browser
    d.get(server.url)
    wait_for(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page to load")
    card = server.api.models()["models"][0]
    assert d.find_element(By.ID, "model").get_attribute("value") == card["name"]
    d.find_element(By.ID, "card-toggle").click()
    assert "latent" in d.find_element(By.ID, "card").text and card["backend"] in d.find_element(By.ID, "status").text
    shots("1-loaded")

    # Sample by label: the chip "3" alone, 16 samples, all tagged 3
    d.find_element(By.ID, "card-toggle").click()
    d.find_element(By.CSS_SELECTOR, '#chips button[data-label="3"]').click()
    d.find_element(By.ID, "seed").send_keys("7")
    d.find_element(By.ID, "sample-btn").click()
    wait_for(d, lambda d: d.find_element(By.ID, "grid").get_attribute("data-ready"), "the sample grid")
    tiles = d.find_elements(By.CSS_SELECTOR, "#grid .tile")
    assert len(tiles) == 16 and {t.find_element(By.CLASS_NAME, "tag").text for t in tiles} == {"3"}
    sums = [canvas_stats(d, t.find_element(By.TAG_NAME, "canvas"))[0] for t in tiles]
    assert min(sums) > 0 and len(set(sums)) > 1  # drawn, and not all the same
    assert "seed 7" in d.find_element(By.ID, "sample-info").text
    tiles[0].click()
    tiles[5].click()
    assert len(d.find_elements(By.CSS_SELECTOR, "#kept .kept-item")) == 2
    shots("2-sampled-label-3")

    # Explore: the kept sample moves when a direction slider moves
    d.find_elements(By.CSS_SELECTOR, "#kept .kept-item")[0].click()
    wait_for(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#sliders input")) == 6, "the Explore sliders")
    canvas = d.find_element(By.ID, "explore-canvas")
    before = canvas_stats(d, canvas)
    d.execute_script("const s = arguments[0]; s.value = '2.5'; s.dispatchEvent(new Event('input'));",
                     d.find_elements(By.CSS_SELECTOR, "#sliders input")[0])
    wait_for(d, lambda d: canvas_stats(d, canvas) != before, "the explored sample to change")
    d.find_element(By.ID, "interp-btn").click()
    wait_for(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#strip canvas")) == 8, "the interpolation strip")
    shots("3-explore-interpolate")

    # Draw: a stroke on the pad, the bottom half hidden, Complete, and the result appears
    d.find_element(By.CSS_SELECTOR, '[data-tab="draw"]').click()
    pad = d.find_element(By.ID, "draw-canvas")
    assert canvas_stats(d, pad)[0] == 0
    ActionChains(d).move_to_element_with_offset(pad, -10, -90).click_and_hold().move_by_offset(30, 0) \
        .move_by_offset(10, 40).move_by_offset(-20, 60).move_by_offset(-5, 40).release().perform()
    assert canvas_stats(d, pad)[0] > 0
    assert Select(d.find_element(By.ID, "region")).first_selected_option.get_attribute("value") == "bottom-half"
    shots("4-drawn")
    result = d.find_element(By.ID, "result-canvas")
    blank = canvas_stats(d, result)
    d.find_element(By.ID, "complete-btn").click()
    wait_for(d, lambda d: result.get_attribute("data-done"), "the completion to finish")
    assert canvas_stats(d, result) != blank
    info = d.find_element(By.ID, "complete-info").text
    assert info.startswith("done in 150 steps") and "(inferred)" in info
    assert d.find_element(By.ID, "result-keep").is_enabled()
    shots("5-completed")

    # the API saw the page's requests, each logged once with its status
    assert any(" POST /api/models/{}/complete 202 ".format(card["name"]) in line for line in lines)
    statuses = [line.split()[3] for line in lines]
    assert statuses and all(code in ("200", "202") for code in statuses), lines

    # phone width: nothing wider than the screen
    d.set_window_size(360, 780)
    d.find_element(By.CSS_SELECTOR, '[data-tab="sample"]').click()
    wait_for(d, lambda d: d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"),
             "the page to fit a phone's width")
    shots("6-phone-sample")
    d.find_element(By.CSS_SELECTOR, '[data-tab="draw"]').click()
    shots("7-phone-draw")
    assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    d.set_window_size(1200, 1000)
    assert severe_logs(d) == []
    assert len(shots.files) >= 7


def test_the_token_travels_in_the_fragment_and_can_be_typed(site, browser, tmp_path):
    server, _ = site
    bundle = server.api.slots[server.api.order[0]].path
    guarded = make_server([bundle], port=0, token="auto", log=lambda line: None)
    thread = threading.Thread(target=guarded.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    d = browser
    try:
        d.get(guarded.url)  # http://127.0.0.1:PORT/#token=...
        wait_for(d, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1", "the page to load")
        assert "token" not in d.current_url  # taken out of the address bar once read
        d.execute_script("sessionStorage.clear()")
        d.get(guarded.url.split("#")[0])
        box = d.find_element(By.ID, "token-box")
        wait_for(d, lambda d: box.is_displayed(), "the token prompt")
        assert "needs its token" in d.find_element(By.ID, "alert").text
        Shots(d, tmp_path)("8-token-prompt")
        d.find_element(By.ID, "token-input").send_keys(guarded.token)
        box.find_element(By.TAG_NAME, "button").click()
        wait_for(d, lambda d: d.find_element(By.ID, "model").get_attribute("value") == server.api.order[0],
                 "the models after the token")
        assert not box.is_displayed()
        # only the 401s of the prompt reached the console (the browser logs a failed fetch as an error)
        assert all("401" in e["message"] for e in severe_logs(d))
    finally:
        guarded.shutdown()
        guarded.close()
