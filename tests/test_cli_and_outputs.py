"""CLI, output contract, determinism, atomic writes, snapping, map escaping."""

from __future__ import annotations

import geopandas as gpd
import pyogrio
import pytest
import shapely
from typer.testing import CliRunner

from basins.cli import app
from basins.discover import write_discovery
from basins.maps import network_map
from basins.read import counties_from_gdf, rivers_from_gdf
from basins.sections import snap_points_to_sections
from basins.synthetic import make_basin
from conftest import discover_synthetic

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("in")
    basin = make_basin(seed=4, rows=6, cols=6, n_boundary=1, n_meanders=1)
    basin.rivers.rename(columns={"NAME": "rname"}).to_file(d / "rivers.shp")
    basin.counties.rename(columns={"county_id": "code", "county": "name", "city": "shi",
                                   "province": "sheng"}).to_file(d / "counties.geojson")
    return basin, d


def test_discover_with_files_writes_four_layers(files, tmp_path):
    basin, d = files
    out = tmp_path / "out.gpkg"
    res = runner.invoke(app, [
        "discover", "--rivers", str(d / "rivers.shp"), "--counties", str(d / "counties.geojson"),
        "--county-id", "code", "--county-name", "name", "--city", "shi", "--province", "sheng",
        "--river-name", "rname", "--out", str(out)])
    assert res.exit_code == 0, res.output
    layers = {name for name, _ in pyogrio.list_layers(out)}
    assert layers == {"sections", "boundary_rivers", "reaches", "qa"}
    s = gpd.read_file(out, layer="sections")
    assert len(s) == len(basin.truth)
    assert s.crs.to_epsg() == 4326
    assert "sections" in res.output  # the summary table


def test_discover_bad_field_exits_with_message(files, tmp_path):
    _, d = files
    res = runner.invoke(app, [
        "discover", "--rivers", str(d / "rivers.shp"), "--counties", str(d / "counties.geojson"),
        "--county-id", "nope", "--county-name", "name", "--city", "shi", "--province", "sheng",
        "--out", str(tmp_path / "x.gpkg")])
    assert res.exit_code == 2
    assert "nope" in res.output and "Available fields" in res.output


def test_discover_default_region(tmp_path):
    out = tmp_path / "sd.gpkg"
    res = runner.invoke(app, ["discover", "--out", str(out)])
    assert res.exit_code == 0, res.output
    s = gpd.read_file(out, layer="sections")
    assert (s.river == "黄河").any()
    # the summary counts the sections whose flags ask for a look (the 卫河 from 清丰
    # to 南乐 runs through Henan land the Shandong extract leaves out)
    through = s["flags"].fillna("").str.contains("in neither county", regex=False).sum()
    assert through >= 1
    row = [ln for ln in res.output.splitlines() if "through neither county" in ln]
    assert len(row) == 1 and row[0].split()[-2] == str(through), row


def test_rerun_is_identical_and_ids_stable(files, tmp_path):
    basin, _ = files
    a = discover_synthetic(basin)
    b = discover_synthetic(basin)
    assert a.sections.to_wkb().equals(b.sections.to_wkb())
    pa, pb = write_discovery(a, tmp_path / "a.gpkg"), write_discovery(b, tmp_path / "b.gpkg")
    assert pa.read_bytes() == pb.read_bytes()
    for layer in ("sections", "boundary_rivers", "reaches", "qa"):
        x = gpd.read_file(pa, layer=layer)
        y = gpd.read_file(pb, layer=layer)
        assert x.equals(y), layer


def test_atomic_write_keeps_previous_output(files, tmp_path, monkeypatch):
    basin, _ = files
    res = discover_synthetic(basin)
    out = write_discovery(res, tmp_path / "keep.gpkg")
    before = out.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gpd.GeoDataFrame, "to_file", boom)
    with pytest.raises(RuntimeError):
        write_discovery(res, out)
    assert out.read_bytes() == before
    assert not list(tmp_path.glob(".basins-*"))


def test_snap_monitoring_points(files):
    basin, _ = files
    res = discover_synthetic(basin)
    s = res.sections.to_crs(basin.counties.crs)
    first = s.iloc[0]
    pts = gpd.GeoDataFrame(
        {"name": ["bridge station", "wrong river", "nowhere"],
         "river": [first.river, "Other river", ""]},
        geometry=[shapely.Point(first.geometry.x + 800, first.geometry.y),
                  shapely.Point(first.geometry.x + 800, first.geometry.y),
                  shapely.Point(0, 0)], crs=basin.counties.crs)
    out = snap_points_to_sections(pts, res.sections)
    assert out.status.iloc[0] == "matched" and out.section_id.iloc[0] == first.section_id
    assert 700 < out.distance_m.iloc[0] < 900
    assert "other rivers" in out.status.iloc[1]
    assert out.status.iloc[2].startswith("no section within")


def test_map_escapes_names_from_data(tmp_path):
    basin = make_basin(seed=4, rows=5, cols=5, n_boundary=0, n_meanders=0)
    evil = "<img src=x onerror=alert(1)>"
    c = basin.counties.copy()
    c.loc[0, "county"] = evil
    r = basin.rivers.copy()
    r["NAME"] = "<script>alert(2)</script>"
    res = discover_synthetic(type(basin)(c, r, basin.truth, basin.outlet, basin.downstream_county))
    html = network_map(res).get_root().render()
    assert evil not in html and "<script>alert(2)" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert html.count("basins-section") >= len(res.sections)


def test_audit_and_settle_on_own_files(files, tmp_path):
    """`basins audit` and `basins settle` on the user's own layers (SYNTHETIC), not a region."""
    from datetime import date
    from decimal import Decimal

    import pandas as pd

    from basins.agreements import Agreement, SectionRef, write_agreements

    basin, d = files
    args = ["--rivers", str(d / "rivers.shp"), "--counties", str(d / "counties.geojson"),
            "--river-name", "rname", "--county-id", "code", "--county-name", "name",
            "--city", "shi", "--province", "sheng"]
    missing = runner.invoke(app, ["audit", *args, "--out-dir", str(tmp_path)])
    assert missing.exit_code == 2 and "--agreements" in missing.output
    res = discover_synthetic(basin)
    s = res.sections[res.sections.kind == "crossing"].iloc[0]
    reg = [Agreement(agreement_id="A1", name="own", signed=date(2024, 1, 1),
                     valid_from=date(2024, 1, 1), valid_to=date(2026, 12, 31),
                     template="shandong_county", annual_amount=Decimal(12_000_000),
                     sections=(SectionRef(where="", row=1, section_id=s.section_id,
                                          upstream=(s.upstream_ids,),
                                          downstream=(s.downstream_ids,)),))]
    write_agreements(reg, tmp_path / "reg.csv")
    out = runner.invoke(app, ["audit", *args, "--agreements", str(tmp_path / "reg.csv"),
                              "--year", "2025", "--out-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "audit.xlsx").exists() and "missing_agreement" in out.output
    mon = pd.DataFrame([dict(section_id=s.section_id, date=f"2025-{m:02d}-01", indicator="NH3-N",
                             value="0.3", unit="mg/L") for m in range(1, 13)])
    mon.to_csv(tmp_path / "mon.csv", index=False)
    out = runner.invoke(app, ["settle", *args, "--agreements", str(tmp_path / "reg.csv"),
                              "--monitoring", str(tmp_path / "mon.csv"), "--year", "2025",
                              "--out-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    led = pd.read_csv(tmp_path / "settlement_ledger.csv")
    # class II every month against target III: downstream pays upstream
    assert set(led.payer) == {s.downstream_ids} and set(led.payee) == {s.upstream_ids}


class _FakeLibc:
    """Stands in for glibc: records mallopt calls."""

    def __init__(self, glibc: bool = True):
        self.calls = []
        if glibc:
            self.gnu_get_libc_version = lambda: b"2.36"

    def mallopt(self, param, value):
        self.calls.append((param.value, value.value))
        return 1


@pytest.mark.parametrize("case", ["asked", "env", "tunables", "none", "not glibc"])
def test_malloc_arena_limit_is_asked_once_and_only_when_the_process_has_none(case, monkeypatch):
    import importlib
    import sys

    import basins.settings as st
    bd = importlib.import_module("basins.discover")  # (the package's ``discover`` is the function)
    fake = _FakeLibc(glibc=case != "not glibc")
    monkeypatch.setattr(bd, "_arenas_asked", False)
    monkeypatch.setattr(bd.ctypes, "CDLL", lambda _name: fake)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
    if case == "env":
        monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    if case == "tunables":
        monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")
    if case == "none":
        monkeypatch.setattr(st, "MALLOC_ARENAS", None)
    assert bd.limit_malloc_arenas() is (case == "asked")
    assert bd.limit_malloc_arenas() is False  # never twice
    assert fake.calls == ([(-8, st.MALLOC_ARENAS)] if case == "asked" else [])


_ARENAS_CHILD = r"""
import ctypes, sys, tempfile, threading
from basins.discover import limit_malloc_arenas
if sys.argv[1] == "limit":
    assert limit_malloc_arenas()
hold = []
def work():  # allocations past pymalloc's 512 bytes, below the mmap threshold: arenas
    hold.append([bytes(2000) for _ in range(2000)])
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile(suffix=".xml") as f:
    fp = libc.fopen(f.name.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(open(f.name).read().count("<heap nr="))
"""


def test_discovery_process_keeps_one_malloc_arena():
    # glibc's own report of its arenas (malloc_info): threads allocating in a
    # process that asked for the limit share one; without it they get their own
    import ctypes
    import os
    import subprocess
    import sys
    try:
        ctypes.CDLL(None).gnu_get_libc_version
    except (OSError, AttributeError):
        pytest.skip("not glibc")
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_ARENA_MAX", "GLIBC_TUNABLES")}
    heaps = {}
    for mode in ("limit", "default"):
        out = subprocess.run([sys.executable, "-c", _ARENAS_CHILD, mode], env=env,
                             capture_output=True, text=True, check=True)
        heaps[mode] = int(out.stdout.split()[-1])
    assert heaps["default"] > 1  # (the report sees per-thread arenas: the test means something)
    assert heaps["limit"] == 1
