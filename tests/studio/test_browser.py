"""VARiant Studio in a real browser: headless Chromium from the OS's packages, driven by Selenium.

Needs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium, /usr/bin/chromedriver;
`.ci/run` installs them); nothing is downloaded at test time. Skipped, saying so, where they are
missing. `pytest tests/studio/test_browser.py --studio-screenshot docs/studio.png` refreshes the
README's screenshot.
"""

import shutil
import time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")

pytestmark = [
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="no OS Chromium: apt-get install chromium chromium-driver (Debian) "
                              "gives /usr/bin/chromium and /usr/bin/chromedriver"),
    pytest.mark.filterwarnings("ignore::Warning:gradio.queueing"),  # its pandas calls
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed: "
                                                              'pip install -e ".[dev]"')
By = pytest.importorskip("selenium.webdriver.common.by").By
Keys = pytest.importorskip("selenium.webdriver.common.keys").Keys
WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait
Stale = pytest.importorskip("selenium.common.exceptions").StaleElementReferenceException

WIDTH = 1280
OPTION = "li[data-testid='dropdown-option']"  # Gradio's dropdown options, aria-label = label


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={WIDTH},1000", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=webdriver.ChromeService(str(CHROMEDRIVER)),
                              options=options)
    yield driver
    driver.quit()


def _type_into(driver, css: str, text: str, clear: bool = True, custom: bool = False) -> None:
    """Type into a picker and take the (first) match, or for a `custom` entry (no option
    matches) the text itself; then leave it, closing its list."""
    box = driver.find_element(By.CSS_SELECTOR, css)
    box.click()
    if clear:
        box.send_keys(Keys.CONTROL, "a", Keys.BACKSPACE)
    box.send_keys(text)
    # Enter takes the highlighted option: wait until the list shows only matches, and at least
    # one unless the entry is custom (an empty, not yet rendered list would pass too), or Enter
    # can take an option highlighted before the filter ran (seen in CI) or none at all
    options = f"{css.split()[0]} {OPTION}"  # this picker's list (another may linger in the DOM)

    def filtered(d) -> bool:
        shown = d.find_elements(By.CSS_SELECTOR, options)
        return (custom or bool(shown)) and all(text in o.get_attribute("aria-label")
                                               for o in shown)

    WebDriverWait(driver, 10, ignored_exceptions=(Stale,)).until(filtered)  # it re-renders
    box.send_keys(Keys.ENTER)
    driver.find_element(By.TAG_NAME, "h2").click()


def _cost_table(driver) -> list[dict]:
    table = driver.find_element(By.ID, "cost-table")
    heads = [th.text.replace("\n", " ") for th in table.find_elements(By.TAG_NAME, "th")]
    return [dict(zip(heads, (td.text.replace("\n", " ") for td in
                             tr.find_elements(By.TAG_NAME, "td"))))
            for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]


def test_compare_two_configurations_in_the_browser(server, browser, tmp_path, request):
    wait = WebDriverWait(browser, 120)
    start = time.perf_counter()
    browser.get(server.url)
    generate = wait.until(lambda d: d.find_element(By.ID, "generate"))
    load_s = time.perf_counter() - start

    # the searchable picker: type part of a name, take the match
    _type_into(browser, "#classes input", "ring", clear=False)
    _type_into(browser, "#classes input", "triang", clear=False)
    _type_into(browser, "#config-1 input", "full")
    _type_into(browser, "#config-2 input", "d2")
    start = time.perf_counter()
    generate.click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#cost-table tbody tr")) == 2
               and all(d.find_elements(By.CSS_SELECTOR, f"#grid-{i} img") for i in (1, 2)))
    generate_s = time.perf_counter() - start

    rows = _cost_table(browser)
    assert [(r["configuration"], r["plan"]) for r in rows] == [("full", "full"), ("d2", "d2")]
    assert rows[0]["KV saving vs full"] == "0%" and rows[1]["KV saving vs full"] == "67%"
    assert rows[1]["peak KV"].endswith(("KiB", "MiB")) and float(rows[1]["images/s"]) > 0
    assert rows[1]["speed-up vs full (transformer)"].endswith("×)")
    assert not browser.find_elements(By.CSS_SELECTOR, "#grid-3 img")
    commands = browser.find_element(By.ID, "commands").text
    assert "--plan d2 --labels 0 1 2 3 " in commands  # disc, two_bars, ring, triangle
    assert "faster" in browser.find_element(By.ID, "stats-2").text

    # a window tall enough for the page down to the cost table and chart
    bottom = browser.execute_script(
        "const r = document.getElementById('costs').getBoundingClientRect();"
        "return Math.max(r.bottom, document.getElementById('chart')"
        ".getBoundingClientRect().bottom) + window.scrollY + 16;")
    frame = browser.execute_script("return window.outerHeight - window.innerHeight;")
    browser.set_window_size(WIDTH, int(bottom + frame))
    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "studio.png"
    assert browser.save_screenshot(str(shot))
    if request.config.getoption("--studio-screenshot"):
        shutil.copyfile(shot, request.config.getoption("--studio-screenshot"))
    print(f"\nstudio in Chromium: page ready {load_s:.2f} s, generate (full + d2, 4 images) "
          f"{generate_s:.2f} s")

    # bad input: a message on the page, and the page keeps working
    _type_into(browser, "#config-2 input", "d9", custom=True)
    generate.click()
    wait.until(lambda d: "subnet_depth must be in 1..8" in d.find_element(By.TAG_NAME,
                                                                          "body").text)
