"""`basins demo` end to end, static maps with Chinese text, and every HTML map in
headless Chromium (Debian's chromium + chromedriver, via selenium).

Browser tests skip when Chromium is missing, unless ``BASINS_REQUIRE_BROWSER=1``
(set by ``.ci/run``), where a missing browser fails the run. Screenshots are
saved under ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from basins.cli import app
from basins.maps import cjk_font, coverage_map, network_map
from basins.synthetic import make_basin
from conftest import discover_synthetic

ARTIFACTS = Path(__file__).parent / "artifacts"
EVIL = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = CliRunner().invoke(app, ["demo", "--out-dir", str(out)])
    assert r.exit_code == 0, r.output
    (out / "stdout.txt").write_text(r.output, encoding="utf-8")
    return out


def test_demo_runs_every_stage_and_says_what_it_wrote(demo_dir, shandong):
    _, res = shandong
    out = (demo_dir / "stdout.txt").read_text(encoding="utf-8")
    assert "ILLUSTRATIVE" in out and "money conserved" in out and "done in" in out
    for name in ("sections.gpkg", "audit.xlsx", "audit_findings.csv", "settlement_ledger.csv",
                 "settlement.xlsx", "network.html", "coverage.html", "settlement.html",
                 "network.png", "coverage.pdf", "settlement.png"):
        p = demo_dir / f"shandong_{name}"
        assert p.exists() and p.stat().st_size > 0, name
        assert str(p) in out.replace("\n", "")
    import pandas as pd
    led = pd.read_csv(demo_dir / "shandong_settlement_ledger.csv", dtype={"amount_fen": int})
    pos = pd.read_csv(demo_dir / "shandong_settlement_positions.csv")
    assert (pos.groupby(["stage", "period", "level"]).net_fen.sum() == 0).all()
    assert set(led.period.str[:4]) == {"2024", "2025"}
    for f in ("network", "coverage"):
        assert (demo_dir / f"shandong_{f}.html").stat().st_size < 1_500_000  # README states ~1 MB


def test_static_maps_have_a_cjk_font_with_the_names(demo_dir, shandong):
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    name = cjk_font()
    if name is None:
        if os.environ.get("BASINS_REQUIRE_BROWSER"):
            pytest.fail("no CJK font installed (apt-get install fonts-noto-cjk)")
        pytest.skip("no CJK font installed")
    font = FT2Font(font_manager.findfont(font_manager.FontProperties(family=name)))
    _, res = shandong
    for ch in set("".join(res.counties.county)) | set("界河"):
        assert font.get_char_index(ord(ch)) != 0, ch
    import matplotlib.image as mpimg
    img = mpimg.imread(demo_dir / "shandong_coverage.png")
    assert img.shape[0] > 500 and img.shape[1] > 500
    assert (demo_dir / "shandong_coverage.pdf").read_bytes().startswith(b"%PDF")


# ---------------------------------------------------------------------------
# headless Chromium
# ---------------------------------------------------------------------------
def _chromium():
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    drv = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        exe = None
    if not exe or not drv:
        if os.environ.get("BASINS_REQUIRE_BROWSER"):
            pytest.fail("chromium/chromedriver/selenium missing (see .ci/run)")
        pytest.skip("chromium, chromedriver or selenium missing")
    return exe, drv


@pytest.fixture(scope="session")
def browser():
    exe, drv = _chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = exe
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1280,900"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(drv), options=opts)
    yield d
    d.quit()


def _open(browser, path: Path):
    browser.get(path.resolve().as_uri())
    browser.get_log("browser")  # (drop anything older)
    browser.refresh()
    import time
    for _ in range(50):
        if browser.execute_script("return document.readyState") == "complete":
            break
        time.sleep(0.1)
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


@pytest.mark.parametrize("kind", ["network", "coverage", "settlement"])
def test_demo_maps_load_in_chromium(browser, demo_dir, shandong, kind):
    _, res = shandong
    errors = _open(browser, demo_dir / f"shandong_{kind}.html")
    assert errors == [], errors
    n = browser.execute_script("return document.querySelectorAll('path.basins-section').length")
    assert n == len(res.sections)
    assert browser.execute_script("return !!document.getElementById('basins-legend')")
    assert browser.execute_script("return typeof L === 'object' && L.version") == "1.9.4"
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / f"shandong_{kind}.png"))


def test_hostile_names_show_as_text_and_run_nothing(browser, tmp_path):
    basin = make_basin(seed=4, rows=5, cols=5, n_boundary=0, n_meanders=0)
    first = basin.truth.iloc[0]
    c = basin.counties.copy()
    c.loc[c.county_id == first.upstream_ids, "county"] = EVIL
    res = discover_synthetic(type(basin)(c, basin.rivers, basin.truth, basin.outlet,
                                         basin.downstream_county))
    assert EVIL in "".join(res.sections.upstream_names)
    p = tmp_path / "evil.html"
    network_map(res, title=EVIL).save(str(p))
    errors = _open(browser, p)
    assert errors == [], errors
    # find the popup naming the hostile county, open it, read what the page shows
    shown = browser.execute_script("""
        const layers = [];
        for (const k of Object.keys(window)) {
          const m = window[k];
          if (m && m instanceof L.Map) m.eachLayer(l => {
            if (l.getPopup && l.getPopup()) layers.push(l); });
        }
        const hit = layers.find(l => l.getPopup().getContent().textContent.includes('<img'));
        if (!hit) return null;
        hit.openPopup();
        return document.querySelector('.leaflet-popup-content').innerText;""")
    assert shown is not None and EVIL in shown, shown
    assert "Flags(" not in shown
    assert browser.execute_script("return document.querySelectorAll('img[src=\"x\"]').length") == 0
    from selenium.common.exceptions import NoAlertPresentException
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018
    assert EVIL in browser.title
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "hostile_names.png"))


def test_coverage_map_without_network_access_has_no_external_resources(shandong, tmp_path):
    from basins.agreements import read_agreements
    from basins.audit import audit
    from basins.data import geodata_dir

    _, res = shandong
    ags = read_agreements(geodata_dir() / "shandong_agreements_ILLUSTRATIVE.csv", res.counties)
    html = coverage_map(res, audit(res, ags, year=2025)).get_root().render()
    import re
    external = re.findall(r"""<(?:script|link|img)[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""",
                          html)
    assert external == []  # no CDN script, stylesheet or image: the map opens offline


def test_optional_tile_layer_fails_gracefully_offline(browser, shandong, tmp_path):
    """With an online tile layer and no network, the map still draws every section
    and its legend; the only errors are the tiles that could not be fetched."""
    _, res = shandong
    p = tmp_path / "tiles.html"
    network_map(res, tiles="OpenStreetMap").save(str(p))
    errors = _open(browser, p)
    assert all("tile" in e["message"].lower() or "net::" in e["message"] or
               "Failed to load resource" in e["message"] for e in errors), errors
    n = browser.execute_script("return document.querySelectorAll('path.basins-section').length")
    assert n == len(res.sections)
    assert browser.execute_script("return !!document.getElementById('basins-legend')")


def test_html_maps_are_byte_identical_on_rerun(shandong, tmp_path):
    # folium names every element with random hex; write_maps numbers them instead,
    # so the same inputs give the same file (maps kept in git diff only where data did)
    from basins.agreements import read_agreements
    from basins.audit import audit
    from basins.data import geodata_dir
    from basins.maps import write_maps

    _, res = shandong
    ags = read_agreements(geodata_dir() / "shandong_agreements_ILLUSTRATIVE.csv", res.counties)
    au = audit(res, ags, year=2025)
    runs = [write_maps(res, au, out_dir=tmp_path / f"run{k}", static=False) for k in (1, 2)]
    assert [p.name for p in runs[0]] == ["basins_network.html", "basins_coverage.html"]
    for a, b in zip(*runs):
        assert a.read_bytes() == b.read_bytes(), a.name
    # and the popups still point at their own content (names follow the new ids)
    html = runs[0][0].read_text(encoding="utf-8")
    assert "setContent(html_" in html and html.count("popup_") > len(res.sections)
