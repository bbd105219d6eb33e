"""The triage report in a real browser: headless Chromium driven by Selenium.

Skipped cleanly when Selenium, Chromium or chromedriver is absent (CI
installs Debian's ``chromium`` and ``chromium-driver``). The browser is given
its driver explicitly: Selenium never downloads one.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from .report_case import BROKEN_NAME, HOSTILE_EXIF, HOSTILE_NAMES, localize_case

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _find(names):
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture(scope="module")
def browser():
    binary, driver_path = _find(_BROWSERS), _find(("chromedriver",))
    if binary is None or driver_path is None:
        pytest.skip("no Chromium and chromedriver here (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--allow-file-access-from-files"):
        options.add_argument(flag)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - a browser that does not start is an environment problem
        pytest.skip(f"Chromium did not start: {str(exc).splitlines()[0]}")
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def case(tmp_path_factory, tiny_model_dir):
    folder = tmp_path_factory.mktemp("report-browser")
    out, _ = localize_case(folder, tiny_model_dir, np.random.default_rng(1), ["--report", "--exif-consistency"])
    return out / "report.html"


@pytest.fixture
def page(browser, case):
    browser.get(case.as_uri())
    browser.get_log("browser")  # start each test with an empty log... of this load only:
    browser.refresh()
    assert browser.execute_script("return document.documentElement.dataset.ready") == "1"
    return browser


def _rows(driver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows tr td.name")]


def _problems(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def test_opens_without_console_errors_and_every_thumbnail_loads(page, tmp_path):
    assert _problems(page) == []
    sizes = page.execute_script("return Array.from(document.querySelectorAll('#rows img'), i => i.naturalWidth)")
    assert len(sizes) == 4 and all(w > 0 for w in sizes), sizes  # the broken input has no picture
    assert len(_rows(page)) == 5
    shot = tmp_path / "report.png"
    assert page.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_sorting_and_filtering_change_the_visible_rows(page):
    by_score = _rows(page)
    scores = [float(s) for s in page.execute_script(
        "return Array.from(document.querySelectorAll('#rows tr'), r => r.children[2].textContent)") if s != "\u2013"]
    assert scores == sorted(scores, reverse=True), "sorted by score, highest first, by default"
    page.find_element(By.CSS_SELECTOR, "button[data-sort=name]").click()
    by_name = _rows(page)
    assert by_name == sorted(by_name, key=str.lower) and by_name != by_score
    page.find_element(By.CSS_SELECTOR, "button[data-sort=name]").click()
    assert _rows(page) == by_name[::-1]
    page.find_element(By.CSS_SELECTOR, "button[data-sort=fit]").click()
    fits = [c.text for c in page.find_elements(By.CSS_SELECTOR, "#rows tr td:nth-child(6)")]
    known = [float(f) for f in fits if f != "\u2013"]
    assert len(known) == 4 and known == sorted(known, reverse=True) and fits[-1] == "\u2013"
    page.find_element(By.ID, "search").send_keys("rotated")
    assert _rows(page) == ["rotated.jpg"]
    page.find_element(By.ID, "search").clear()
    page.find_element(By.ID, "search").send_keys(" ")  # clear() fires no input event; a keystroke does
    page.find_element(By.ID, "search").send_keys(Keys.BACKSPACE)
    assert len(_rows(page)) == 5
    page.find_element(By.CSS_SELECTOR, "#show option[value=failed]").click()
    assert _rows(page) == [BROKEN_NAME]
    page.find_element(By.CSS_SELECTOR, "#show option[value=all]").click()
    page.find_element(By.ID, "min-score").send_keys("1000")
    assert _rows(page) == []


def test_detail_view_opens_by_click_and_by_keyboard(page, tmp_path):
    first = _rows(page)[0]
    page.find_element(By.CSS_SELECTOR, "#rows tr").click()
    assert page.find_element(By.ID, "detail").is_displayed()
    assert page.find_element(By.ID, "detail-title").text == first
    assert "of other cameras' EXIF fit less well" in page.find_element(By.ID, "detail-body").text
    loaded = page.execute_script("return document.querySelector('#detail img.preview').naturalWidth")
    assert loaded > 0, "the preview file next to the page loads"
    page.save_screenshot(str(tmp_path / "detail.png"))
    body = page.find_element(By.TAG_NAME, "body")
    body.send_keys(Keys.ARROW_RIGHT)
    assert page.find_element(By.ID, "detail-title").text == _rows(page)[1]
    body.send_keys(Keys.ESCAPE)
    assert not page.find_element(By.ID, "detail").is_displayed()
    focused = page.switch_to.active_element
    assert focused.find_element(By.CSS_SELECTOR, "td.name").text == _rows(page)[1], "back on the row last shown"
    focused.send_keys("j")
    page.switch_to.active_element.send_keys(Keys.ENTER)
    assert page.find_element(By.ID, "detail-title").text == _rows(page)[2]
    assert _problems(page) == []


def test_overlay_toggle_and_theme(page):
    before = page.execute_script("return document.querySelector('#rows img').src")
    page.find_element(By.TAG_NAME, "body").send_keys("h")
    after = page.execute_script("return document.querySelector('#rows img').src")
    assert after != before and page.find_element(By.ID, "overlay").is_selected()
    page.find_element(By.ID, "theme").click()
    assert page.execute_script("return document.documentElement.dataset.theme") == "light"
    page.find_element(By.ID, "theme").click()
    dark = page.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert page.execute_script("return document.documentElement.dataset.theme") == "dark"
    assert dark != "rgb(253, 253, 252)", "the dark background, not the light one"


def test_hostile_names_and_exif_stay_text(page):
    def intact():
        assert page.execute_script("return typeof window.__xss") == "undefined"
        assert page.execute_script("return document.scripts.length") == 2
        injected = page.execute_script(
            "return document.querySelectorAll('img[src=x], img[src$=\"/x\"], [onerror], [onload], body svg:not(.hist),"
            " iframe, object, embed').length")
        assert injected == 0
        hrefs = page.execute_script("return Array.from(document.querySelectorAll('a'), a => a.protocol)")
        assert set(hrefs) <= {"file:"}, hrefs

    intact()
    assert set(HOSTILE_NAMES) | {BROKEN_NAME} <= set(_rows(page)), "the names are shown as written"
    for name in (*HOSTILE_NAMES, BROKEN_NAME):
        page.find_element(By.ID, "search").clear()
        page.execute_script("const s = document.getElementById('search'); s.value = arguments[0];"
                            "s.dispatchEvent(new Event('input'));", name)
        page.find_element(By.CSS_SELECTOR, "#rows tr").click()
        assert page.find_element(By.ID, "detail-title").text == name
        text = page.find_element(By.ID, "detail-body").text
        if name != BROKEN_NAME:
            assert HOSTILE_EXIF["Model"] in text and HOSTILE_EXIF["Make"] in text
            links = page.execute_script("return Array.from(document.querySelectorAll('#detail a'),"
                                        " a => [a.protocol, a.getAttribute('href')])")
            assert len(links) == 4 and all(p == "file:" and h.startswith(("./", "../")) for p, h in links), links
        intact()
        page.find_element(By.ID, "close").click()
    assert not [e for e in _problems(page) if "Content Security Policy" in e["message"]]
