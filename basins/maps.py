"""Maps: interactive (folium) and static (matplotlib) maps of network, coverage and settlement.

Interactive maps need no network: Leaflet is inlined from ``basins/static``
(BSD-2) and no tile layer is added by default; an optional tile layer (``tiles=``)
needs internet and simply stays blank offline. Every text that came from a data
file is escaped before it reaches HTML. County outlines are simplified as a
topology (shared borders once, with :func:`shapely.coverage_simplify`) so
neighbouring counties keep a common border.

Static maps (PNG and PDF for reports) have a legend, a scale bar and a north
arrow, and use a CJK font for Chinese names (:func:`cjk_font`).
"""

from __future__ import annotations

import html
import math
import os
from functools import lru_cache
from pathlib import Path

import folium
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from . import settings as st
from .sections import Discovery

LEVEL_COLOURS = {"province": "#d62728", "city": "#ff7f0e", "county": "#2ca02c"}
COVERAGE_COLOURS = {"full": "#1a9850", "partial": "#fee08b", "none": "#d73027",
                    "no_cross_boundary_river": "#e8e8e8"}
SECTION_STATUS_COLOURS = {"covered": "#1a9850", "incomplete": "#fc8d59",
                          "mis_oriented": "#762a83", "missing": "#d73027"}
OUT_OF_SCOPE = "#bdbdbd"
WEB_PRECISION_DEG = 1e-5
STATIC = Path(__file__).with_name("static")


def _e(value) -> str:
    return html.escape(str(value), quote=True)


# ---------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------
def stable_ids(m: folium.Map) -> folium.Map:
    """Number the map's elements in document order instead of folium's random ids.

    folium names every element (and the JavaScript variable behind it) with 32
    random hex digits, so the same map saved twice differs on every line. Here
    each element gets its position in the element tree instead, and the
    children's keys (which folium's templates also print) follow. The same
    inputs then give a byte-identical HTML file, and a map kept in git diffs
    only where the data changed.
    """
    from collections import OrderedDict

    from branca.element import Element

    count = 0
    seen: set[int] = set()

    def walk(el: Element) -> None:
        nonlocal count
        if id(el) in seen:
            return
        seen.add(id(el))
        el._id = f"{count:032x}"
        count += 1
        children = OrderedDict()
        for key, child in list(el._children.items()):
            was = child.get_name()
            walk(child)
            # keys given explicitly (not the element's own name) stay as they are
            children[child.get_name() if key == was else key] = child
        el._children = children
        for part in ("header", "html", "script"):  # a figure's or popup's own parts
            x = getattr(el, part, None)
            if isinstance(x, Element):
                walk(x)

    walk(m.get_root())
    return m


def simplify_counties(counties: gpd.GeoDataFrame, tolerance_m: float, crs: str) -> gpd.GeoDataFrame:
    """Simplify county outlines keeping shared borders shared (coverage simplification)."""
    c = counties.to_crs(crs)
    geoms = np.asarray(c.geometry.array, dtype=object)
    try:
        simple = shapely.coverage_simplify(geoms, tolerance_m)
    except Exception:  # pragma: no cover - invalid coverage: fall back to per-polygon
        simple = shapely.simplify(geoms, tolerance_m, preserve_topology=True)
    out = c.assign(geometry=simple).to_crs(st.OUTPUT_CRS)
    # 1e-5 degree (about 1 m) is plenty for the web and halves the file
    return out.assign(geometry=shapely.set_precision(np.asarray(out.geometry.array, dtype=object),
                                                     WEB_PRECISION_DEG))


def _base_map(counties_web: gpd.GeoDataFrame, title: str, tiles: str | None) -> folium.Map:
    b = counties_web.total_bounds
    m = folium.Map(location=[(b[1] + b[3]) / 2, (b[0] + b[2]) / 2], zoom_start=7, tiles=None,
                   control_scale=True, prefer_canvas=False)
    m.default_js = []
    m.default_css = []
    root = m.get_root()
    leaflet_css = (STATIC / "leaflet" / "leaflet.css").read_text(encoding="utf-8")
    leaflet_js = (STATIC / "leaflet" / "leaflet.js").read_text(encoding="utf-8")
    root.header.add_child(folium.Element(
        f"<title>{_e(title)}</title>\n<style>{leaflet_css}</style>\n<script>{leaflet_js}</script>\n"
        # folium builds popup content with jQuery's $(html)[0]; this stand-in parses
        # our (already escaped) HTML in an inert <template>, so no jQuery download
        "<script>window.$=window.$||function(h){const t=document.createElement('template');"
        "t.innerHTML=String(h).trim();return [t.content.firstChild];};</script>\n"
        "<style>html,body{width:100%;height:100%;margin:0;padding:0}"
        "#map{position:absolute;top:0;bottom:0;right:0;left:0}</style>"), name="basins_leaflet")
    if tiles:
        folium.TileLayer(tiles, name="base map (online)", overlay=False).add_to(m)
    m.fit_bounds([[b[1], b[0]], [b[3], b[2]]])
    return m


def _legend(m: folium.Map, title: str, items: list[tuple[str, str, str]], extra: str = "") -> None:
    """Fixed legend box with id ``basins-legend``; items are (colour, symbol, label)."""
    body = "".join(f"<span style='color:{c}'>{sym}</span> {_e(label)}<br>" for c, sym, label in items)
    m.get_root().html.add_child(folium.Element(
        "<div id='basins-legend' style='position:fixed;bottom:30px;right:10px;z-index:9999;"
        "background:white;padding:8px;border:1px solid #999;font-size:12px;max-width:340px'>"
        f"<b>{_e(title)}</b><br>{body}{extra}</div>"))


def _counties_layer(cty: gpd.GeoDataFrame, name: str, colour_of, fields: list[str],
                    aliases: list[str], show: bool = True, overlay: bool = True) -> folium.FeatureGroup:
    fg = folium.FeatureGroup(name=name, show=show, overlay=overlay)
    data = cty[fields + ["geometry"]].copy()
    for f in fields:
        data[f] = data[f].map(_e)
    data["_fill"] = [colour_of(r) for _, r in cty.iterrows()]
    folium.GeoJson(
        data,
        style_function=lambda f: {"color": "#666", "weight": 0.6,
                                  "fillColor": f["properties"]["_fill"], "fillOpacity": 0.7},
        tooltip=folium.GeoJsonTooltip(fields, aliases=aliases),
    ).add_to(fg)
    return fg


def _latlon(line) -> list[tuple[float, float]]:
    """(lat, lon) pairs rounded to 5 decimals (about 1 m) for the web."""
    return [(round(y, 5), round(x, 5)) for x, y in line.coords]


def _arrow(fg, coords: list[tuple[float, float]], colour: str, weight: float = 2,
           tooltip: str | None = None, size_deg: float = 0.03) -> None:
    """A polyline with a V arrowhead at its end, drawn with plain Leaflet lines."""
    folium.PolyLine(coords, color=colour, weight=weight, tooltip=tooltip).add_to(fg)
    (y1, x1), (y2, x2) = coords[-2], coords[-1]
    ang = math.atan2(y2 - y1, (x2 - x1) * math.cos(math.radians(y2)))
    for da in (math.radians(155), math.radians(-155)):
        a = ang + da
        tip = (y2 + size_deg * math.sin(a), x2 + size_deg * math.cos(a) / math.cos(math.radians(y2)))
        folium.PolyLine([tip, (y2, x2)], color=colour, weight=weight).add_to(fg)


def _boundary_layer(boundary: gpd.GeoDataFrame) -> folium.FeatureGroup:
    bg = folium.FeatureGroup(name="boundary rivers (界河)")
    for _, r in boundary.iterrows():
        for g in getattr(r.geometry, "geoms", [r.geometry]):
            folium.PolyLine(_latlon(g), color="#9467bd", weight=5, opacity=0.7,
                            tooltip=_e(f"{r.river}: left bank {r.left_names} | right bank "
                                       f"{r.right_names}")).add_to(bg)
    return bg


def _section_marker(fg, s, colour: str, popup: str) -> None:
    folium.CircleMarker(
        (s.geometry.y, s.geometry.x), radius=6, color="#222", weight=1, fill=True,
        fill_color=colour, fill_opacity=0.9, popup=folium.Popup(popup, max_width=360),
        tooltip=_e(f"{s.river} {s.section_id}"), class_name="basins-section",
    ).add_to(fg)


def _section_popup(s) -> str:
    return (f"<b>{_e(s.river or '(unnamed river)')}</b><br>{_e(s.section_id)} · {_e(s.kind)} · "
            f"{_e(s.level)}<br>upstream: {_e(s.upstream_names)} ({_e(s.upstream_shares)})<br>"
            f"downstream: {_e(s.downstream_names)} ({_e(s.downstream_shares)})"
            + (f"<br><i>{_e(s['flags'])}</i>" if "flags" in s.index and s["flags"] else ""))


def web_tolerance(counties: gpd.GeoDataFrame, crs: str, settings: st.Settings = st.DEFAULT) -> float:
    """Simplification tolerance (m) for web maps, scaled to the map's extent."""
    b = counties.to_crs(crs).total_bounds
    diag = math.hypot(b[2] - b[0], b[3] - b[1])
    return max(settings.web_simplify_min_m, settings.web_simplify_fraction * diag)


def _web_counties(result: Discovery, simplify_m: float | None) -> gpd.GeoDataFrame:
    crs = result.network.crs
    tol = simplify_m if simplify_m is not None else web_tolerance(result.counties, crs)
    return simplify_counties(result.counties, tol, crs)


# ---------------------------------------------------------------------------
# 1. network
# ---------------------------------------------------------------------------
def network_map(result: Discovery, title: str = "basins", tiles: str | None = None,
                simplify_m: float | None = None) -> folium.Map:
    """Counties, oriented reaches (flagged ones dashed, arrowheads downstream),
    boundary rivers and sections coloured by level.

    Parameters
    ----------
    result
        Output of :func:`basins.discover.discover`.
    title
        Shown in the page title and legend.
    tiles
        Optional folium tile layer name (needs internet); none by default.
    simplify_m
        Simplification of county outlines for the web, metres (default: scaled
        to the extent, see ``Settings.web_simplify_fraction``).
    """
    cty = _web_counties(result, simplify_m)
    m = _base_map(cty, title, tiles)
    _counties_layer(cty, "counties", lambda r: "#f2efe6", ["county", "city", "province"],
                    ["county", "city", "province"]).add_to(m)
    rg = folium.FeatureGroup(name="reaches (dashed: orientation flagged)")
    for _, r in result.reaches.iterrows():
        coords = _latlon(r.geometry)
        flagged = bool(r.orientation_flag)
        virtual = bool(getattr(r, "virtual", False))
        tip = _e(f"{r.river or r.reach_id} ({r.orientation}) {r.orientation_flag}"
                 + (" virtual link through a water body drawn only as an area" if virtual
                    else ""))
        folium.PolyLine(coords, color="#1f77b4", weight=2,
                        dash_array="1 5" if virtual else ("6 4" if flagged else None),
                        tooltip=tip).add_to(rg)
        if len(coords) >= 2:
            _arrow(rg, coords[-2:], "#1f77b4", 2, None, 0.02)
    rg.add_to(m)
    _boundary_layer(result.boundary_rivers).add_to(m)
    groups = {lv: folium.FeatureGroup(name=f"sections: {lv} level") for lv in st.LEVELS}
    for _, s in result.sections.iterrows():
        _section_marker(groups.get(s.level, groups["county"]), s,
                        LEVEL_COLOURS.get(s.level, "#999"), _section_popup(s))
    for g in groups.values():
        g.add_to(m)
    qa = result.qa
    flagged = int((qa.status == "flagged").sum()) if len(qa) else 0
    _legend(m, title, [(c, "●", f"{lv}-level section") for lv, c in LEVEL_COLOURS.items()]
            + [("#9467bd", "━", "boundary river"), ("#1f77b4", "━", "reach (arrow: downstream)"),
               ("#1f77b4", "┅", "reach with orientation flag"),
               ("#1f77b4", "⋯", "virtual link through a water body")],
            f"<br>QA: {flagged} feature(s) flagged")
    folium.LayerControl(collapsed=False).add_to(m)
    return m


# ---------------------------------------------------------------------------
# 2. coverage
# ---------------------------------------------------------------------------
def coverage_map(result: Discovery, audit, claim=None, title: str = "coverage",
                 tiles: str | None = None, simplify_m: float | None = None) -> folium.Map:
    """Counties by coverage status, sections by agreement status, boundary rivers
    with both banks, stale agreements listed, and the claim verdict in a panel."""
    cov = audit.counties.set_index("county_id")
    cty = _web_counties(result, simplify_m)
    cty["status"] = [cov.status.get(i, "out of scope") for i in cty.county_id]
    cty["sections"] = [str(cov.sections.get(i, "")) for i in cty.county_id]
    cty["covered"] = [str(cov.covered.get(i, "")) for i in cty.county_id]
    m = _base_map(cty, title, tiles)
    _counties_layer(cty, "counties by coverage", lambda r: COVERAGE_COLOURS.get(r.status, "#fafafa"),
                    ["county", "city", "status", "sections", "covered"],
                    ["county", "city", "coverage", "sections", "covered"]).add_to(m)
    _boundary_layer(result.boundary_rivers).add_to(m)
    groups = {k: folium.FeatureGroup(name=f"sections: {k}") for k in SECTION_STATUS_COLOURS}
    groups["out_of_scope"] = folium.FeatureGroup(name="sections: outside the audit scope")
    for _, s in audit.sections.iterrows():
        popup = (_section_popup(s) + f"<br>status: <b>{_e(s.status)}</b>"
                 + (f"<br>agreements: {_e(s.agreement_ids)}" if s.agreement_ids else "")
                 + ("" if s.in_scope else "<br>(outside the audit scope)"))
        key = s.status if s.in_scope else "out_of_scope"
        _section_marker(groups[key], s, SECTION_STATUS_COLOURS.get(key, OUT_OF_SCOPE), popup)
    for g in groups.values():
        g.add_to(m)
    met = audit.metrics()
    stale = audit.findings[audit.findings.finding == "stale"]
    extra = (f"<hr style='margin:4px 0'>{_e(audit.label)} · {_e(audit.scope or 'all counties')}<br>"
             f"sections {met['sections']} (covered {met['sections_covered']}), counties with "
             f"cross-boundary rivers {met['counties']}, fully covered {met['counties_full']} "
             f"({met['share_counties_full']:.0%}; by area {met['area_share_full']:.0%})")
    if len(stale):
        extra += "<br>stale agreements: " + ", ".join(_e(a) for a in stale.agreement_id)
    if claim is not None:
        colour = "#1a9850" if claim.holds else "#d73027"
        extra += (f"<div id='basins-claim' style='margin-top:4px;color:{colour}'><b>claim "
                  f"{_e(claim.verdict)}</b>: " + "; ".join(
                      f"{_e(r.figure)} {r.claimed:g} vs {r.computed:g}"
                      for r in claim.table.itertuples()) + "</div>")
    _legend(m, title, [(c, "■", f"county: {k.replace('_', ' ')}") for k, c in COVERAGE_COLOURS.items()]
            + [(c, "●", f"section: {k.replace('_', ' ')}") for k, c in SECTION_STATUS_COLOURS.items()]
            + [(OUT_OF_SCOPE, "●", "section outside the audit scope"),
               ("#9467bd", "━", "boundary river (both banks named)")], extra)
    folium.LayerControl(collapsed=False).add_to(m)
    return m


# ---------------------------------------------------------------------------
# 3. settlement
# ---------------------------------------------------------------------------
def _diverging(net_wan: float, vmax: float) -> str:
    """Red (pays) – white – blue (receives), centred on zero."""
    if vmax <= 0 or net_wan == 0:
        return "#f7f7f7"
    t = max(-1.0, min(1.0, net_wan / vmax))
    if t > 0:
        c0, c1 = np.array([247, 247, 247]), np.array([33, 102, 172])
    else:
        c0, c1, t = np.array([247, 247, 247]), np.array([178, 24, 43]), -t
    rgb = (c0 + (c1 - c0) * t).round().astype(int)
    return "#%02x%02x%02x" % tuple(rgb)


def settlement_map(result: Discovery, settlement, years: list[str] | None = None,
                   title: str = "settlement", tiles: str | None = None,
                   simplify_m: float | None = None, monitoring_classes: pd.DataFrame | None = None,
                   agreements=None) -> folium.Map:
    """Counties coloured by yearly net position (万元, diverging around zero; one
    switchable layer per year), payer → payee arrows per year, and one marker per
    section with parties, shares, target, monthly classes and the money moved."""
    cty = _web_counties(result, simplify_m)
    m = _base_map(cty, title, tiles)
    pos = settlement.positions
    yearly = pos[(pos.stage == "yearly") & (pos.level == "county")]
    years = years or sorted(yearly.period.unique()) or [""]
    vmax = float(yearly.net_fen.abs().max() / 1e6) if len(yearly) else 0.0
    rep = {i: (p.y, p.x) for i, p in zip(cty.county_id, cty.geometry.representative_point())}
    for k, yr in enumerate(years):
        net = {p: n / 1e6 for p, n, per in zip(yearly.party, yearly.net_fen, yearly.period)
               if per == yr}
        c = cty.assign(net_wan=[f"{net.get(i, 0.0):,.2f}" for i in cty.county_id])
        _counties_layer(c, f"net position {yr} (万元)",
                        lambda r, net=net: _diverging(net.get(r.county_id, 0.0), vmax),
                        ["county", "city", "net_wan"], ["county", "city", "net (万元)"],
                        show=(k == len(years) - 1), overlay=False).add_to(m)
    led = settlement.ledger
    yl = led[led.stage == "yearly"]
    for yr in years:
        by_tpl: dict[str, folium.FeatureGroup] = {}
        sel = yl[yl.period == yr]
        agg = sel.groupby(["template", "payer", "payer_name", "payee", "payee_name"],
                          sort=True).amount_fen.sum()
        for (tpl, payer, pn, payee, qn), fen in agg.items():
            a, b = rep.get(payer), rep.get(payee)
            if a is None or b is None:
                continue  # a province or city party has no single county point
            fg = by_tpl.setdefault(tpl, folium.FeatureGroup(name=f"flows {yr}: {tpl}",
                                                           show=(yr == years[-1])))
            w = 1.5 + 4 * min(1.0, fen / 1e6 / max(vmax, 1e-9))
            _arrow(fg, [a, b], "#444", w, _e(f"{pn} → {qn}: {fen / 1e6:,.2f} 万元 ({tpl}, {yr})"))
        for fg in by_tpl.values():
            fg.add_to(m)
    # sections
    money = led.groupby(["section_id", "period", "stage"]).amount_fen.sum()
    target_of = {}
    if agreements is not None:
        for a in agreements:
            for r in a.sections:
                if r.section_id:
                    target_of.setdefault(r.section_id, r.target_class)
    classes = {}
    if monitoring_classes is not None and len(monitoring_classes):
        for sid, g in monitoring_classes.groupby("section_id"):
            classes[sid] = g
    groups = {lv: folium.FeatureGroup(name=f"sections: {lv} level") for lv in st.LEVELS}
    for _, s in result.sections.iterrows():
        popup = _section_popup(s)
        if s.section_id in target_of:
            popup += f"<br>target class: {_e(target_of[s.section_id])}"
        g = classes.get(s.section_id)
        if g is not None:
            last = g[g.month.str.startswith(years[-1])]
            popup += "<br>monthly classes " + _e(years[-1]) + ": " + " ".join(
                _e(f"{mo[5:]}:{c}") for mo, c in zip(last.month, last["class"]))
        moved = [(per, fen) for (sid, per, stg), fen in money.items()
                 if sid == s.section_id and stg == "yearly"]
        if moved:
            popup += "<br>settled: " + ", ".join(f"{_e(per)} {fen / 1e6:,.2f} 万元"
                                                 for per, fen in moved)
        _section_marker(groups.get(s.level, groups["county"]), s,
                        LEVEL_COLOURS.get(s.level, "#999"), popup)
    for g in groups.values():
        g.add_to(m)
    _legend(m, title, [("#2166ac", "■", "county receives (net > 0)"),
                       ("#b2182b", "■", "county pays (net < 0)"),
                       ("#444", "→", "payer → payee (yearly)")]
            + [(c, "●", f"{lv}-level section") for lv, c in LEVEL_COLOURS.items()],
            f"<br>colour scale: ±{vmax:,.0f} 万元; amounts are exact in the ledger")
    folium.LayerControl(collapsed=False).add_to(m)
    return m


# ---------------------------------------------------------------------------
# static maps
# ---------------------------------------------------------------------------
CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans SC", "Source Han Sans SC",
             "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei",
             "PingFang SC", "Heiti SC", "AR PL UMing CN")


@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """Name of an installed font with Chinese glyphs, or None.

    On Debian/Ubuntu: ``apt-get install fonts-noto-cjk``; on other systems install
    Noto Sans CJK SC (or any font listed in :data:`CJK_FONTS`) and clear
    matplotlib's font cache.
    """
    import glob

    from matplotlib import font_manager

    def find() -> str | None:
        names = {f.name for f in font_manager.fontManager.ttflist}
        return next((n for n in CJK_FONTS if n in names), None)

    found = find()
    if found is None:  # installed after matplotlib built its font cache: register the files
        for pattern in ("/usr/share/fonts/**/*CJK*", "/usr/share/fonts/**/wqy*",
                        "/usr/local/share/fonts/**/*CJK*", os.path.expanduser("~/.fonts/**/*CJK*"),
                        os.path.expanduser("~/.local/share/fonts/**/*CJK*")):
            for f in sorted(glob.glob(pattern, recursive=True)):
                if f.lower().endswith((".ttc", ".otf", ".ttf")):
                    try:
                        font_manager.fontManager.addfont(f)
                    except Exception:  # pragma: no cover - unreadable font file
                        continue
        found = find()
    return found


def _scale_bar(ax, length_km: float | None = None) -> None:
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    span = (x1 - x0) / 1000
    if length_km is None:
        raw = span / 5
        mag = 10 ** math.floor(math.log10(raw))
        length_km = min((m * mag for m in (1, 2, 5, 10)), key=lambda v: abs(v - raw))
    bx, by = x0 + (x1 - x0) * 0.05, y0 + (y1 - y0) * 0.05
    ax.plot([bx, bx + length_km * 1000], [by, by], color="black", lw=3, solid_capstyle="butt")
    ax.text(bx + length_km * 500, by + (y1 - y0) * 0.012, f"{length_km:g} km", ha="center",
            va="bottom", fontsize=8)


def _north_arrow(ax) -> None:
    ax.annotate("N", xy=(0.95, 0.95), xytext=(0.95, 0.85), xycoords="axes fraction",
                ha="center", va="center", fontsize=12, fontweight="bold",
                arrowprops=dict(facecolor="black", width=4, headwidth=10))


def static_map(kind: str, result: Discovery, audit=None, settlement=None, year: str | None = None,
               title: str = ""):
    """A report map (matplotlib Figure): ``network``, ``coverage`` or ``settlement``.

    Drawn in the equal-area analysis CRS (metres) with legend, scale bar, north
    arrow and county names of the sections' parties in a CJK font when one is
    installed (see :func:`cjk_font`).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    font = cjk_font()
    # explicit family names (not the generic "sans-serif"): texts keep them when the
    # figure is drawn later, outside this rc context
    rc = {"font.family": ([font] if font else []) + ["DejaVu Sans"], "axes.unicode_minus": False}
    crs = result.network.crs
    cty = result.counties.to_crs(crs)
    with plt.rc_context(rc):
        fig, ax = plt.subplots(figsize=(10, 8), dpi=120)
        handles = []
        if kind == "coverage" and audit is not None:
            st_of = dict(zip(audit.counties.county_id, audit.counties.status))
            colours = [COVERAGE_COLOURS.get(st_of.get(i), "#fafafa") for i in cty.county_id]
            cty.plot(ax=ax, color=colours, edgecolor="#777", linewidth=0.3)
            handles += [Patch(color=c, label=f"county: {k.replace('_', ' ')}")
                        for k, c in COVERAGE_COLOURS.items()]
        elif kind == "settlement" and settlement is not None:
            pos = settlement.positions
            y = pos[(pos.stage == "yearly") & (pos.level == "county")
                    & (pos.period == (year or (pos.period.max() if len(pos) else "")))]
            net = dict(zip(y.party, y.net_fen / 1e6))
            vmax = max([abs(v) for v in net.values()] + [1e-9])
            cty.plot(ax=ax, color=[_diverging(net.get(i, 0.0), vmax) for i in cty.county_id],
                     edgecolor="#777", linewidth=0.3)
            handles += [Patch(color="#2166ac", label=f"receives (up to {vmax:,.0f} 万元)"),
                        Patch(color="#b2182b", label=f"pays (up to {vmax:,.0f} 万元)")]
        else:
            cty.plot(ax=ax, color="#f2efe6", edgecolor="#999", linewidth=0.3)
        reaches = result.reaches.to_crs(crs)
        reaches.plot(ax=ax, color="#1f77b4", linewidth=0.8)
        handles.append(Line2D([], [], color="#1f77b4", label="river reach"))
        if len(result.boundary_rivers):
            result.boundary_rivers.to_crs(crs).plot(ax=ax, color="#9467bd", linewidth=2.5,
                                                    alpha=0.7)
            handles.append(Line2D([], [], color="#9467bd", lw=2.5, label="boundary river (界河)"))
        secs = (audit.sections if audit is not None else result.sections).to_crs(crs)
        if kind == "coverage" and audit is not None:
            oos = secs[~secs.in_scope.astype(bool)]
            if len(oos):
                oos.plot(ax=ax, color=OUT_OF_SCOPE, markersize=20, edgecolor="black",
                         linewidth=0.5, zorder=5)
                handles.append(Line2D([], [], marker="o", ls="", color=OUT_OF_SCOPE,
                                      markeredgecolor="black", label="section outside scope"))
            for k, c in SECTION_STATUS_COLOURS.items():
                sel = secs[(secs.status == k) & secs.in_scope.astype(bool)]
                if len(sel):
                    sel.plot(ax=ax, color=c, markersize=30, edgecolor="black", linewidth=0.5,
                             zorder=5)
                handles.append(Line2D([], [], marker="o", ls="", color=c, markeredgecolor="black",
                                      label=f"section: {k.replace('_', ' ')}"))
        else:
            for lv, c in LEVEL_COLOURS.items():
                sel = secs[secs.level == lv]
                if len(sel):
                    sel.plot(ax=ax, color=c, markersize=30, edgecolor="black", linewidth=0.5,
                             zorder=5)
                handles.append(Line2D([], [], marker="o", ls="", color=c, markeredgecolor="black",
                                      label=f"{lv}-level section"))
        # label the counties that are party to a section
        party = set()
        for col in ("upstream_ids", "downstream_ids"):
            for v in secs[col]:
                party.update(str(v).split(st.SEP))
        lab = cty[cty.county_id.isin(party)]
        for name, p in zip(lab.county, lab.geometry.representative_point()):
            ax.text(p.x, p.y, name, fontsize=6, ha="center", va="center", color="#333", zorder=6)
        ax.set_axis_off()
        ax.set_aspect("equal")
        _scale_bar(ax)
        _north_arrow(ax)
        ax.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.9)
        ax.set_title(title or kind)
        fig.tight_layout()
    return fig


def write_maps(result: Discovery, audit=None, settlement=None, out_dir: str | os.PathLike = "maps",
               prefix: str = "basins", year: int | str | None = None, claim=None,
               monitoring_classes: pd.DataFrame | None = None, static: bool = True) -> list[Path]:
    """Write the interactive maps (HTML) and, with ``static``, PNG and PDF versions.

    Files: ``{prefix}_network``, ``{prefix}_coverage`` (with an audit) and
    ``{prefix}_settlement`` (with a settlement), each ``.html`` (+ ``.png``, ``.pdf``).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from .output import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    yr = str(year) if year is not None else None
    maps = {"network": network_map(result, title=f"{prefix}: network")}
    if audit is not None:
        maps["coverage"] = coverage_map(result, audit, claim, title=f"{prefix}: coverage "
                                        f"{audit.label}")
    if settlement is not None:
        maps["settlement"] = settlement_map(result, settlement, title=f"{prefix}: settlement",
                                            monitoring_classes=monitoring_classes,
                                            agreements=getattr(audit, "agreements", None))
    paths = []
    for kind, m in maps.items():
        p = out_dir / f"{prefix}_{kind}.html"
        with atomic_path(p, ".html") as tmp:
            stable_ids(m).save(str(tmp))
        paths.append(p)
        if static:
            fig = static_map(kind, result, audit, settlement, yr,
                             title=f"{prefix}: {kind}" + (f" {yr}" if yr and kind != "network"
                                                          else ""))
            for ext in ("png", "pdf"):
                q = out_dir / f"{prefix}_{kind}.{ext}"
                meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
                with atomic_path(q, f".{ext}") as tmp:
                    fig.savefig(tmp, format=ext, metadata=meta)
                paths.append(q)
            plt.close(fig)
    return paths

