"""Audit (`basins audit`): agreements against discovered sections, coverage by county, claims.

For an assessment year or date, :func:`audit` matches the registry to the
sections and reports

* section status: ``covered``, ``missing`` (no agreement in force),
  ``incomplete`` (a boundary-river side where a bank county did not sign),
  ``mis_oriented`` (the party named upstream is downstream by the flow graph);
* findings (:data:`FINDINGS`), one row each, naming agreement, section, file and row;
* coverage per county (``full``/``partial``/``none``/``no_cross_boundary_river``)
  and roll-ups per city and province, with an area-weighted share in the
  spirit of SDG indicator 6.5.2 (territory of fully covered counties over the
  territory of counties with cross-boundary rivers).

:func:`check_claim` compares a public claim ("16 cities, 133 counties, 301
sections") with the computed figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd

from . import settings as st
from .agreements import Agreement, check_resolved_overlaps, resolve_agreements
from .money import WAN
from .read import BasinsInputError, analysis_crs_for
from .sections import Discovery

#: Kinds of finding, in report order.
FINDINGS = ("missing_agreement", "stale", "mis_oriented", "incomplete_bank_parties",
            "party_mismatch", "below_minimum", "expired", "not_yet_in_force")
SECTION_STATUSES = ("covered", "incomplete", "mis_oriented", "missing")
COUNTY_STATUSES = ("full", "partial", "none", "no_cross_boundary_river")
LEVEL_NAMES = {"province": "cross_province", "city": "cross_city", "county": "within_city"}
FINDING_COLUMNS = ["finding", "agreement_id", "section_id", "river", "parties", "where", "detail"]
#: Figures a claim can name (see :func:`check_claim`).
METRICS = ("cities", "counties", "counties_total", "sections", "cross_province", "cross_city",
           "within_city", "sections_covered", "counties_full", "counties_partial",
           "counties_none", "share_counties_full", "share_sections_covered", "area_share_full")
_MATCH_TO_STATUS = {"ok": "covered", "incomplete": "incomplete", "mis_oriented": "mis_oriented"}


@dataclass
class Audit:
    """Result of :func:`audit`. Tables are ready for CSV/Excel; GeoDataFrames for maps."""

    period: tuple[date, date]
    label: str
    scope: str | None
    sections: gpd.GeoDataFrame
    counties: gpd.GeoDataFrame
    cities: pd.DataFrame
    provinces: pd.DataFrame
    findings: pd.DataFrame
    clauses: pd.DataFrame
    boundary_rivers: gpd.GeoDataFrame
    agreements: list[Agreement] = field(repr=False, default_factory=list)

    def metrics(self) -> dict[str, float]:
        """The computed figures in scope (keys :data:`METRICS`)."""
        return _metrics(self.sections[self.sections.in_scope], self.counties)

    def behind(self, key: str) -> list[str]:
        """The sections or counties behind a figure (for a claim discrepancy)."""
        s = self.sections[self.sections.in_scope]
        c = self.counties
        wc = c[c.status != "no_cross_boundary_river"]
        level = {v: k for k, v in LEVEL_NAMES.items()}
        if key == "cities":
            return sorted(wc.city.unique().tolist())
        if key == "counties":
            return (wc.county + " (" + wc.county_id + ", " + wc.status + ")").tolist()
        if key == "counties_total":
            return (c.county + " (" + c.county_id + ")").tolist()
        if key in ("sections", "sections_covered", "share_sections_covered") or key in level:
            sel = s
            if key in level:
                sel = s[s.level == level[key]]
            if key != "sections" and key not in level:
                sel = s[s.status != "covered"]  # the ones that fall short
            return [f"{r.section_id} {r.river} {r.upstream_names}→{r.downstream_names} ({r.status})"
                    for r in sel.itertuples()]
        if key in ("counties_full", "share_counties_full", "area_share_full"):
            short = wc[wc.status != "full"]
            return (short.county + " (" + short.county_id + ", " + short.status + ")").tolist()
        if key in ("counties_partial", "counties_none"):
            sel = wc[wc.status == key.split("_")[1]]
            return (sel.county + " (" + sel.county_id + ")").tolist()
        return []


def _period(year: int | None, on: date | None) -> tuple[tuple[date, date], str]:
    if (year is None) == (on is None):
        raise BasinsInputError("give an assessment year or a date (one of them).")
    if year is not None:
        return (date(year, 1, 1), date(year, 12, 31)), str(year)
    return (on, on), on.isoformat()


def audit(
    discovery: Discovery,
    agreements: list[Agreement],
    year: int | None = None,
    on: date | None = None,
    province: str | None = None,
    templates: dict | None = None,
    settings: st.Settings = st.DEFAULT,
) -> Audit:
    """Match agreements to sections for a year (or a date) and compute coverage.

    Parameters
    ----------
    discovery
        Output of :func:`basins.discover.discover`.
    agreements
        From :func:`basins.agreements.read_agreements`.
    year, on
        Assessment year (an agreement in force on any day of it counts) or date.
    province
        Restrict coverage and figures to the counties of one province and the
        sections with a party in it (e.g. ``山东省``). Default: every county.
    templates
        Templates by id, for the floor amounts (default: built-ins and
        ``$BASINS_TEMPLATES``).
    """
    if templates is None:
        from .policies import load_templates
        templates = load_templates()
    (start, end), label = _period(year, on)
    cty = discovery.counties
    if province is not None and province not in set(cty.province):
        raise BasinsInputError(f"province {province!r} is not in the county layer; it has "
                               f"{', '.join(sorted(set(cty.province)))}.")
    secs = discovery.sections.reset_index(drop=True).copy()
    clauses = resolve_agreements(agreements, secs, cty, settings)
    check_resolved_overlaps(agreements, clauses)
    by_id = {a.agreement_id: a for a in agreements}
    name_of = dict(zip(cty.county_id.astype(str), cty.county.astype(str)))
    prov_of = dict(zip(cty.county_id.astype(str), cty.province.astype(str)))

    def parties_of(ids: str) -> set[str]:
        return set(str(ids).split(st.SEP))

    if province is None:
        in_scope = pd.Series(True, index=secs.index)
    else:
        in_scope = pd.Series([any(prov_of.get(i) == province for i in
                                  parties_of(u) | parties_of(d))
                              for u, d in zip(secs.upstream_ids, secs.downstream_ids)],
                             index=secs.index)
    secs["in_scope"] = in_scope.to_numpy()
    findings: list[dict] = []
    sec_row = {sid: r for sid, r in zip(secs.section_id, secs.itertuples())}

    def add(kind: str, a: Agreement | None, sid: str = "", where: str = "", detail: str = ""):
        r = sec_row.get(sid)
        parties = f"{r.upstream_names} → {r.downstream_names}" if r is not None else ""
        findings.append(dict(finding=kind, agreement_id=a.agreement_id if a else "",
                             section_id=sid, river=r.river if r is not None else "",
                             parties=parties, where=where or (a.source if a else ""),
                             detail=detail))

    # agreement-level findings
    in_force = {}
    for a in agreements:
        in_force[a.agreement_id] = a.in_force(start, end)
        if a.valid_to < start:
            add("expired", a, detail=f"valid {a.valid_from}–{a.valid_to}, before {label}")
        elif a.valid_from > end:
            add("not_yet_in_force", a, detail=f"valid from {a.valid_from}, after {label}")
        tpl = templates.get(a.template)
        if tpl is not None and in_force[a.agreement_id]:
            mine = clauses[clauses.agreement_id == a.agreement_id]
            n = max(mine.section_id[mine.section_id != ""].nunique(), 1) \
                if len(mine) else len(a.sections)
            floor = tpl.floor_for(n)
            if a.annual_amount < floor:
                per = f"{n} section(s) × " if tpl.floor_per == "section_year" else ""
                add("below_minimum", a, detail=(
                    f"annual amount {a.annual_amount / WAN:,.0f}万 is under the floor of "
                    f"{per}{tpl.floor_yuan / WAN:,.0f}万 ({tpl.id})"))
    # clause findings and section status
    status: dict[str, str] = {}
    agreements_of: dict[str, set[str]] = {}
    rank = {s: k for k, s in enumerate(SECTION_STATUSES)}
    for c in clauses.itertuples():
        a = by_id[c.agreement_id]
        if c.match == "stale":
            add("stale", a, where=c.where, detail=c.detail)
            continue
        if not in_force[a.agreement_id]:
            continue
        if c.match == "mis_oriented":
            add("mis_oriented", a, c.section_id, c.where,
                "the party named upstream is downstream by the flow graph")
        elif c.match == "incomplete":
            missing = ", ".join(f"{name_of.get(i, i)} ({i})" for i in c.missing_parties.split(st.SEP))
            add("incomplete_bank_parties", a, c.section_id, c.where, f"not signed by {missing}")
        elif c.match == "party_mismatch":
            add("party_mismatch", a, c.section_id, c.where,
                "the agreement's parties are not the section's parties")
        new = _MATCH_TO_STATUS.get(c.match, "missing")
        if rank[new] < rank.get(status.get(c.section_id, "missing"), 99):
            status[c.section_id] = new
        agreements_of.setdefault(c.section_id, set()).add(a.agreement_id)
    secs["status"] = [status.get(s, "missing") for s in secs.section_id]
    secs["agreement_ids"] = [st.SEP.join(sorted(agreements_of.get(s, ()))) for s in secs.section_id]
    for r in secs[secs.in_scope & (secs.status == "missing")].itertuples():
        add("missing_agreement", None, r.section_id, detail=f"{r.kind}, {r.level} level")
    fdf = pd.DataFrame(findings, columns=FINDING_COLUMNS)
    if len(fdf):
        fdf["_o"] = fdf.finding.map({k: i for i, k in enumerate(FINDINGS)})
        fdf = fdf.sort_values(["_o", "agreement_id", "section_id"], kind="stable").drop(columns="_o")
        fdf = fdf.reset_index(drop=True)
    counties = coverage_by_county(secs[secs.in_scope], cty, province)
    cities = coverage_rollup(secs[secs.in_scope], counties, ["province", "city"])
    provinces = coverage_rollup(secs[secs.in_scope], counties, ["province"])
    return Audit(period=(start, end), label=label, scope=province, sections=secs, counties=counties,
                 cities=cities, provinces=provinces, findings=fdf, clauses=clauses,
                 boundary_rivers=discovery.boundary_rivers, agreements=list(agreements))


def coverage_by_county(sections: pd.DataFrame, counties: gpd.GeoDataFrame,
                       province: str | None = None) -> gpd.GeoDataFrame:
    """Per county: sections it is party to, how many are covered, and its status.

    Every county of the layer (of ``province`` when given) gets a row; a county
    party to no section is ``no_cross_boundary_river``.
    """
    cty = counties if province is None else counties[counties.province == province]
    total: dict[str, int] = {}
    covered: dict[str, int] = {}
    for r in sections.itertuples():
        ids = set(str(r.upstream_ids).split(st.SEP)) | set(str(r.downstream_ids).split(st.SEP))
        for i in ids:
            total[i] = total.get(i, 0) + 1
            covered[i] = covered.get(i, 0) + (r.status == "covered")
    out = cty[["county_id", "county", "city", "province", "geometry"]].copy()
    out["sections"] = [total.get(i, 0) for i in out.county_id]
    out["covered"] = [covered.get(i, 0) for i in out.county_id]
    out["status"] = [
        "no_cross_boundary_river" if t == 0 else "full" if c == t else "partial" if c else "none"
        for t, c in zip(out.sections, out.covered)]
    crs = analysis_crs_for(out) if len(out) else st.OUTPUT_CRS
    out["area_km2"] = (out.to_crs(crs).area / 1e6).round(1) if len(out) else []
    return out.reset_index(drop=True)


def _metrics(sections: pd.DataFrame, counties: pd.DataFrame) -> dict[str, float]:
    wc = counties[counties.status != "no_cross_boundary_river"]
    full = wc[wc.status == "full"]
    n_s = len(sections)
    m = dict(
        cities=int(wc.city.nunique()),
        counties=len(wc),
        counties_total=len(counties),
        sections=n_s,
        sections_covered=int((sections.status == "covered").sum()),
        counties_full=len(full),
        counties_partial=int((wc.status == "partial").sum()),
        counties_none=int((wc.status == "none").sum()),
    )
    for lv, name in LEVEL_NAMES.items():
        m[name] = int((sections.level == lv).sum())
    m["share_counties_full"] = round(len(full) / len(wc), 4) if len(wc) else 0.0
    m["share_sections_covered"] = round(m["sections_covered"] / n_s, 4) if n_s else 0.0
    area = float(wc.area_km2.sum())
    m["area_share_full"] = round(float(full.area_km2.sum()) / area, 4) if area else 0.0
    return {k: m[k] for k in METRICS}


def coverage_rollup(sections: pd.DataFrame, counties: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Figures of :data:`METRICS` per city (``by=["province", "city"]``) or province."""
    rows = []
    for key, grp in counties.groupby(by, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        ids = set(grp.county_id)
        mask = [bool((set(str(u).split(st.SEP)) | set(str(d).split(st.SEP))) & ids)
                for u, d in zip(sections.upstream_ids, sections.downstream_ids)]
        m = _metrics(sections[mask] if len(sections) else sections, grp)
        rows.append(dict(zip(by, key), **m))
    return pd.DataFrame(rows, columns=by + list(METRICS))


# ---------------------------------------------------------------------------
# claims
# ---------------------------------------------------------------------------
@dataclass
class ClaimCheck:
    """Verdict on a claim: ``holds`` and one row per claimed figure."""

    holds: bool
    table: pd.DataFrame

    @property
    def verdict(self) -> str:
        return "holds" if self.holds else "does not hold"


def parse_claim(items: list[str]) -> dict[str, float]:
    """``["cities=16", "counties=133"]`` → ``{"cities": 16, "counties": 133}``."""
    out = {}
    for it in items:
        for part in str(it).replace(",", " ").split():
            k, sep, v = part.partition("=")
            if not sep:
                raise BasinsInputError(f"claim {part!r}: write name=value, e.g. sections=301.")
            k = k.strip().replace("-", "_")
            if k not in METRICS:
                raise BasinsInputError(f"claim {part!r}: unknown figure {k!r}; known: "
                                       f"{', '.join(METRICS)}.")
            try:
                out[k] = float(v)
            except ValueError as exc:
                raise BasinsInputError(f"claim {part!r}: {v!r} is not a number.") from exc
    return out


def check_claim(result: Audit, claims: dict[str, float],
                target_share: float | None = None) -> ClaimCheck:
    """Compare claimed figures with computed ones.

    ``target_share`` is a target such as "60 % of counties with cross-boundary
    rivers have a mechanism": it holds when ``share_counties_full`` reaches it.
    A share is compared to 4 decimals, a count exactly.
    """
    m = result.metrics()
    rows = []
    for k, v in claims.items():
        comp = m[k]
        ok = abs(comp - v) < 5e-5 if isinstance(comp, float) else int(v) == comp and v == int(v)
        rows.append(dict(figure=k, claimed=v, computed=comp, holds=bool(ok),
                         behind="" if ok else "; ".join(result.behind(k))))
    if target_share is not None:
        comp = m["share_counties_full"]
        ok = comp >= target_share
        rows.append(dict(figure="share_counties_full >= target", claimed=target_share,
                         computed=comp, holds=bool(ok),
                         behind="" if ok else "; ".join(result.behind("share_counties_full"))))
    if not rows:
        raise BasinsInputError("nothing to check: give claimed figures or a target share.")
    table = pd.DataFrame(rows, columns=["figure", "claimed", "computed", "holds", "behind"])
    return ClaimCheck(holds=bool(table.holds.all()), table=table)


# ---------------------------------------------------------------------------
# outputs
# ---------------------------------------------------------------------------
def write_audit(result: Audit, out_dir: str | os.PathLike, prefix: str = "audit",
                claim: ClaimCheck | None = None) -> list[Path]:
    """Write the audit as an Excel workbook, CSVs and a GeoPackage for coverage maps.

    Files: ``{prefix}.xlsx`` (sheets summary, sections, counties, cities,
    provinces, findings, claim), ``{prefix}_sections.csv``, ``_counties.csv``,
    ``_cities.csv``, ``_provinces.csv``, ``_findings.csv``, and ``{prefix}.gpkg``
    (layers ``coverage_counties``, ``coverage_sections``, ``boundary_rivers``,
    ``findings``). Byte-identical on rerun.
    """
    from .output import write_csv, write_gpkg, write_xlsx

    out_dir = Path(out_dir)
    summary = pd.DataFrame([dict(figure=k, value=v) for k, v in result.metrics().items()])
    summary = pd.concat([pd.DataFrame([dict(figure="assessment", value=result.label),
                                       dict(figure="scope", value=result.scope or "all counties")]),
                         summary], ignore_index=True)
    secs = result.sections.drop(columns=["_rowid_sid"], errors="ignore")
    cty = result.counties
    sheets = {"summary": summary, "sections": secs, "counties": cty, "cities": result.cities,
              "provinces": result.provinces, "findings": result.findings}
    if claim is not None:
        sheets["claim"] = claim.table
    paths = [write_xlsx(sheets, out_dir / f"{prefix}.xlsx")]
    for name in ("sections", "counties", "cities", "provinces", "findings"):
        df = sheets[name]
        if name == "counties":  # polygons belong in the GeoPackage, not in a CSV
            df = pd.DataFrame(df.drop(columns="geometry"))
        paths.append(write_csv(df, out_dir / f"{prefix}_{name}.csv"))
    if claim is not None:
        paths.append(write_csv(claim.table, out_dir / f"{prefix}_claim.csv"))
    paths.append(write_gpkg({"coverage_counties": cty, "coverage_sections": secs,
                             "boundary_rivers": result.boundary_rivers,
                             "findings": result.findings}, out_dir / f"{prefix}.gpkg"))
    return paths
