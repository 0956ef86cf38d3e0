"""Benchmark 5: HTML map size and load time in headless Chromium (Shandong and national).

Writes the network map of the embedded Shandong data and of the national run,
prints each file's size and the time Chromium takes to load it (document complete
and every section marker drawn); the baseline measured in the same run is the load
time of an empty basins map (Leaflet inlined, no data). Target (issue): the
national map under 10 MB.

    python benchmarks/bench_maps.py            # needs chromium + chromedriver + selenium
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import shapely

from basins.data import load_region
from basins.discover import discover
from basins.maps import _base_map, network_map


def load_seconds(driver, path: Path, markers: int) -> float:
    t = time.perf_counter()
    driver.get(path.resolve().as_uri())
    while True:
        done = driver.execute_script(
            "return document.readyState === 'complete' && "
            "document.querySelectorAll('path.basins-section').length")
        if done is not False and int(done) >= markers:
            return time.perf_counter() - t
        if time.perf_counter() - t > 120:
            raise RuntimeError(f"{path} did not finish loading")
        time.sleep(0.02)


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        opts.add_argument(a)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    out = Path(tempfile.mkdtemp())
    try:
        empty = out / "empty.html"
        _base_map(gpd.GeoDataFrame(geometry=[shapely.box(115, 35, 116, 36)], crs="EPSG:4326"),
                  "empty", None).save(str(empty))
        base = min(load_seconds(driver, empty, 0) for _ in range(3))
        print(f"empty map (baseline): {empty.stat().st_size / 1e6:6.2f} MB, load {base:.2f} s")
        for region in ("shandong", "national"):
            reg = load_region(region)
            res = discover(reg.rivers, reg.counties, reg.water, reg.dem)
            p = out / f"{region}_network.html"
            t = time.perf_counter()
            network_map(res, title=region).save(str(p))
            build = time.perf_counter() - t
            secs = min(load_seconds(driver, p, len(res.sections)) for _ in range(2))
            print(f"{region:9s} network map: {p.stat().st_size / 1e6:6.2f} MB "
                  f"({len(res.counties)} counties, {len(res.sections)} sections), built in "
                  f"{build:.1f} s, loads in {secs:.2f} s = {secs / base:.1f}x the empty map")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()
