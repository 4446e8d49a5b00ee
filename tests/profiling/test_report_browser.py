"""The HTML report renders in a real browser: headless Chromium (the Debian package that
``make sysdeps`` installs) driven by selenium through /usr/bin/chromedriver, so selenium-manager never
downloads anything.  Fails on any script error, on a chart that is missing, empty or zero-sized, and
on a screenshot that is blank.  A page with a broken script and an empty chart must fail the same
checks (the negative control: these checks can fail)."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tilewise.frontends.report import ReportOptions, build, html

from . import report_data as D

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000",
         # nothing may come from the network: every host name resolves to nothing
         "--host-resolver-rules=MAP * ~NOTFOUND"]

# installed before any page script runs: records uncaught errors and unhandled rejections
_ERROR_HOOK = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + String(e.reason)));
"""

# per chart: its size, how many traces plotly drew, how many drawn marks have geometry
_CHARTS = """
return Array.from(document.querySelectorAll('.plotly-graph-div')).map(el => {
  const r = el.getBoundingClientRect();
  const marks = Array.from(el.querySelectorAll('path.point, path.js-line, g.bars path, g.hbar path, g.bar path'))
    .filter(p => (p.getAttribute('d') || '').length > 3 && p.getAttribute('d') !== 'M0,0Z');
  return {id: el.id, drawn: el.classList.contains('js-plotly-plot'), width: r.width, height: r.height,
          svgs: el.querySelectorAll('svg.main-svg').length, traces: el.querySelectorAll('g.trace').length,
          data: (el.data || []).length, marks: marks.length};
});
"""

# share of pixels of a PNG (base64) that differ from its top-left pixel, computed by the browser
_INK = """
const done = arguments[arguments.length - 1];
const img = new Image();
img.onload = () => {
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let ink = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i] - d[0]) + Math.abs(d[i + 1] - d[1]) + Math.abs(d[i + 2] - d[2]) > 30) ink++;
  done(ink / (d.length / 4));
};
img.onerror = () => done(-1);
img.src = 'data:image/png;base64,' + arguments[0];
"""


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("headless Chromium is missing: run `make sysdeps` (Debian packages chromium, chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="tilewise-chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _ERROR_HOOK})
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def render(driver, path: Path, screenshot: Path) -> dict:
    """Open ``path``; return its script errors, its charts and the screenshot's ink share."""
    driver.get(path.resolve().as_uri())
    driver.execute_script("return document.readyState")
    height = driver.execute_script("return document.body.scrollHeight")
    driver.set_window_size(1400, min(height + 100, 16000))
    driver.save_screenshot(str(screenshot))
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    errors = driver.execute_script("return window.__errors || ['error hook missing']") + severe
    charts = driver.execute_script(_CHARTS)
    ink = driver.execute_async_script(_INK, driver.get_screenshot_as_base64())
    return {"errors": errors, "charts": charts, "ink": ink}


def chart_problems(charts: list[dict]) -> list[str]:
    problems = []
    for c in charts:
        if not c["drawn"] or c["svgs"] == 0:
            problems.append(f"{c['id']}: plotly drew nothing")
        if c["width"] < 200 or c["height"] < 150:
            problems.append(f"{c['id']}: {c['width']:.0f}x{c['height']:.0f} px")
        if c["data"] == 0 or c["traces"] == 0 or c["marks"] == 0:
            problems.append(f"{c['id']}: empty ({c['data']} traces in data, {c['traces']} drawn, {c['marks']} marks)")
    return problems


def test_report_renders_without_errors_and_every_chart_is_drawn(browser, tmp_path, target):
    D.fake_roofline(target, tmp_path / "roofline")
    D.model_trace(target).save(tmp_path / "trace.json")
    with D.build_store(tmp_path / "r.db", target) as store:
        rep = build(store, ReportOptions(roofline_cache=str(tmp_path / "roofline"),
                                         model_trace=str(tmp_path / "trace.json")), target=target)
    page = Path(html.write(rep, tmp_path / "report.html"))
    shot = Path(os.environ.get("TILEWISE_REPORT_SCREENSHOT", tmp_path / "report.png"))
    result = render(browser, page, shot)
    assert result["errors"] == []
    expected = page.read_text().count('<div id="chart-')
    assert expected == 13 and len(result["charts"]) == expected
    assert chart_problems(result["charts"]) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
    assert result["ink"] > 0.05, f"screenshot is nearly blank ({result['ink']:.1%} non-background pixels)"


def test_a_broken_page_fails_the_same_checks(browser, tmp_path):
    page = tmp_path / "broken.html"
    from plotly.offline import get_plotlyjs
    page.write_text(f"<html><head><script>{get_plotlyjs()}</script></head><body>"
                    "<div id='chart-0' class='plotly-graph-div' style='height:300px;width:600px'></div>"
                    "<script>Plotly.newPlot('chart-0', [], {}); undefinedFunction();</script></body></html>")
    result = render(browser, page, tmp_path / "broken.png")
    assert any("undefinedFunction" in e for e in result["errors"])
    assert chart_problems(result["charts"]) and "empty" in chart_problems(result["charts"])[0]
