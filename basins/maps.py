"""Interactive maps (folium). Every text that came from a data file is escaped.

The maps need no network: no tile layer is added by default (an optional tile
layer can be switched on and fails gracefully offline).
"""

from __future__ import annotations

import html

import folium

from . import settings as st
from .sections import Discovery

LEVEL_COLOURS = {"province": "#d62728", "city": "#ff7f0e", "county": "#2ca02c"}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def network_map(result: Discovery, title: str = "basins", tiles: str | None = None,
                simplify_m: float = 200.0) -> folium.Map:
    """Counties, oriented reaches (flagged ones dashed), boundary rivers and sections.

    Parameters
    ----------
    result
        Output of :func:`basins.discover.discover`.
    title
        Shown in the page title and legend.
    tiles
        Optional folium tile layer name (needs internet); none by default.
    simplify_m
        Simplification of county outlines for the web, metres.
    """
    cty = result.counties.to_crs(result.graph.graph["crs"])
    cty = cty.assign(geometry=cty.geometry.simplify(simplify_m)).to_crs(st.OUTPUT_CRS)
    b = cty.total_bounds
    m = folium.Map(location=[(b[1] + b[3]) / 2, (b[0] + b[2]) / 2], zoom_start=7, tiles=None,
                   control_scale=True)
    if tiles:
        folium.TileLayer(tiles, name="base map (online)", overlay=False).add_to(m)
    m.get_root().header.add_child(folium.Element(f"<title>{_e(title)}</title>"))
    fg = folium.FeatureGroup(name="counties")
    folium.GeoJson(
        cty[["county_id", "county", "city", "province", "geometry"]].assign(
            county=cty.county.map(_e), city=cty.city.map(_e), province=cty.province.map(_e),
            county_id=cty.county_id.map(_e)),
        style_function=lambda f: {"color": "#777", "weight": 0.6, "fillColor": "#f2efe6",
                                  "fillOpacity": 0.6},
        tooltip=folium.GeoJsonTooltip(["county", "city", "province"]),
    ).add_to(fg)
    fg.add_to(m)
    rg = folium.FeatureGroup(name="reaches (dashed: orientation flagged)")
    for _, r in result.reaches.iterrows():
        coords = [(y, x) for x, y in r.geometry.coords]
        flagged = bool(r.orientation_flag)
        folium.PolyLine(
            coords, color="#1f77b4", weight=2, dash_array="6 4" if flagged else None,
            tooltip=_e(f"{r.river or r.reach_id} ({r.orientation}) {r.orientation_flag}"),
        ).add_to(rg)
        if len(coords) >= 2:  # direction mark at the downstream end
            folium.RegularPolygonMarker(coords[-1], number_of_sides=3, radius=3,
                                        color="#1f77b4", fill=True).add_to(rg)
    rg.add_to(m)
    bg = folium.FeatureGroup(name="boundary rivers (界河)")
    for _, r in result.boundary_rivers.iterrows():
        geoms = getattr(r.geometry, "geoms", [r.geometry])
        for g in geoms:
            folium.PolyLine([(y, x) for x, y in g.coords], color="#9467bd", weight=5, opacity=0.7,
                            tooltip=_e(f"{r.river}: left {r.left_names} | right {r.right_names}"),
                            ).add_to(bg)
    bg.add_to(m)
    sg = folium.FeatureGroup(name="sections")
    for _, s in result.sections.iterrows():
        popup = (
            f"<b>{_e(s.river or '(unnamed river)')}</b><br>{_e(s.section_id)} · {_e(s.kind)} · "
            f"{_e(s.level)}<br>upstream: {_e(s.upstream_names)} ({_e(s.upstream_shares)})<br>"
            f"downstream: {_e(s.downstream_names)} ({_e(s.downstream_shares)})"
            + (f"<br><i>{_e(s.flags)}</i>" if s.flags else "")
        )
        folium.CircleMarker(
            (s.geometry.y, s.geometry.x), radius=6, color="#222", weight=1, fill=True,
            fill_color=LEVEL_COLOURS.get(s.level, "#999"), fill_opacity=0.9,
            popup=folium.Popup(popup, max_width=320), class_name="basins-section",
        ).add_to(sg)
    sg.add_to(m)
    legend = (
        "<div id='basins-legend' style='position:fixed;bottom:20px;left:20px;z-index:9999;"
        "background:white;padding:8px;border:1px solid #999;font-size:12px'>"
        f"<b>{_e(title)}</b><br>"
        + "".join(f"<span style='color:{c}'>●</span> {lv}-level section<br>"
                  for lv, c in LEVEL_COLOURS.items())
        + "<span style='color:#9467bd'>━</span> boundary river<br>"
        "<span style='color:#1f77b4'>━</span> reach (▲ downstream end)</div>"
    )
    m.get_root().html.add_child(folium.Element(legend))
    folium.LayerControl(collapsed=False).add_to(m)
    m.fit_bounds([[b[1], b[0]], [b[3], b[2]]])
    return m
