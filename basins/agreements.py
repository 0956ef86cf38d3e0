"""Agreement registry (协议台账): read, validate and resolve signed agreements.

Planners keep agreements in CSV, Excel, YAML or a GeoPackage table; all four are
read into the same validated records (:class:`Agreement`, :class:`SectionRef`).
A bad row raises :class:`~basins.read.BasinsInputError` naming the file, the row
and the field.

Flat tables (CSV, Excel, GeoPackage) hold one row per agreement × section
(columns :data:`AGREEMENT_COLUMNS`); rows with the same ``agreement_id`` form one
agreement (a group agreement 组团 covers several sections) and must agree on the
agreement-level fields. YAML nests the sections::

    agreements:
      - agreement_id: SD-2021-001
        name: 梁山—东平 京杭运河
        signed: 2021-03-01
        valid_from: 2021-01-01
        valid_to: 2023-12-31
        template: shandong_county
        annual_amount: 1200万
        sections:
          - {section_id: Sa480bd3570, upstream_ids: "370832",
             downstream_ids: "410927|370923", target_class: III}

A section is referenced by ``section_id``, by the coordinates of its monitoring
point (``lon``/``lat``, EPSG:4326; matched to the nearest discovered section on the
same river within ``Settings.monitoring_snap_m``), or by ``river`` plus the party
pair. Parties are county ids, or ``province:<name>`` / ``city:<name>`` for an
agreement between provinces or cities. A side with two bank counties lists both,
joined with ``|``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd

from . import settings as st
from .money import parse_yuan
from .read import BasinsInputError

AGREEMENT_COLUMNS = [
    "agreement_id", "name", "signed", "valid_from", "valid_to", "template", "parameters",
    "annual_amount", "section_id", "lon", "lat", "river", "upstream_ids", "downstream_ids",
    "target_class", "section_parameters", "note",
]
AGREEMENT_FIELDS = ("name", "signed", "valid_from", "valid_to", "template", "parameters",
                    "annual_amount", "note")
CLASSES = ("I", "II", "III", "IV", "V")
_CLASS_ALIASES = {"1": "I", "2": "II", "3": "III", "4": "IV", "5": "V", "Ⅰ": "I", "Ⅱ": "II",
                  "Ⅲ": "III", "Ⅳ": "IV", "Ⅴ": "V", "I类": "I", "II类": "II", "III类": "III",
                  "IV类": "IV", "V类": "V"}
SECTION_ID_RE = re.compile(r"^S[0-9a-f]{10}(-\d+)?$")
AGGREGATE_PREFIXES = ("province:", "city:")


@dataclass(frozen=True)
class SectionRef:
    """One section an agreement covers, with its parties and target."""

    where: str                      # "file, row 5" — for messages
    row: int
    section_id: str = ""
    lon: float | None = None
    lat: float | None = None
    river: str = ""
    upstream: tuple[str, ...] = ()
    downstream: tuple[str, ...] = ()
    target_class: str = "III"
    parameters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def how(self) -> str:
        """How the section is referenced: ``section_id``, ``coordinates`` or ``river_parties``."""
        if self.section_id:
            return "section_id"
        if self.lon is not None:
            return "coordinates"
        return "river_parties"


@dataclass(frozen=True)
class Agreement:
    """A signed agreement (协议) covering one or more sections."""

    agreement_id: str
    name: str
    signed: date
    valid_from: date
    valid_to: date
    template: str
    annual_amount: Decimal
    sections: tuple[SectionRef, ...]
    parameters: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    source: str = ""
    note: str = ""

    def in_force(self, start: date, end: date) -> bool:
        """True when the validity period overlaps ``[start, end]``."""
        return self.valid_from <= end and self.valid_to >= start


# ---------------------------------------------------------------------------
# field parsers (each raises ValueError with a short reason)
# ---------------------------------------------------------------------------
def _blank(v) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return isinstance(v, str) and not v.strip()


def parse_date(v) -> date:
    """A date from ISO text, ``YYYY/MM/DD``, ``YYYYMMDD``, or a date/datetime value."""
    if isinstance(v, pd.Timestamp):
        if pd.isna(v):
            raise ValueError("empty date")
        return v.date()
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    if _blank(v):
        raise ValueError("empty date")
    s = str(v).strip()
    s = re.sub(r"[ T]00:00:00(\.0+)?$", "", s)
    for fmt in ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            pass
    raise ValueError(f"malformed date {s!r}; write YYYY-MM-DD")


def parse_class(v) -> str:
    """A water-quality target class I–V (also 1–5, Ⅲ, III类)."""
    if _blank(v):
        raise ValueError("empty target class")
    s = str(v).strip().upper().replace("CLASS", "").strip()
    s = _CLASS_ALIASES.get(s, s)
    if s not in CLASSES:
        raise ValueError(f"target class {v!r} is not one of {', '.join(CLASSES)}")
    return s


def parse_parties(v) -> tuple[str, ...]:
    """Party ids from ``a|b``, ``a,b`` or a list; order kept, duplicates refused."""
    if isinstance(v, (list, tuple)):
        items = [str(x).strip() for x in v]
    elif _blank(v):
        raise ValueError("no party given")
    else:
        items = [x.strip() for x in re.split(r"[|,，、]", str(v))]
    items = [_clean_id(x) for x in items if x]
    if not items:
        raise ValueError("no party given")
    if len(set(items)) != len(items):
        raise ValueError(f"party listed twice in {v!r}")
    if len(items) > 2:
        raise ValueError(f"a side has at most two (bank) parties, got {len(items)}")
    return tuple(items)


def _clean_id(x: str) -> str:
    return x[:-2] if re.fullmatch(r"\d+\.0", x) else x  # Excel turns 370832 into 370832.0


def parse_json_object(v) -> dict[str, Any]:
    if isinstance(v, dict):
        return v
    if _blank(v):
        return {}
    try:
        d = json.loads(str(v))
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON object: {v!r} ({exc.msg})") from exc
    if not isinstance(d, dict):
        raise ValueError(f"not a JSON object: {v!r}")
    return d


def _float_or_none(v, name: str) -> float | None:
    if _blank(v):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} {v!r} is not a number") from exc
    if not math.isfinite(f):
        raise ValueError(f"{name} is not finite")
    return f


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------
def _read_table(path: Path) -> tuple[list[dict], str]:
    """Rows as dicts and the label of a row number (``row`` or ``feature``)."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".txt"):
        raw = path.read_bytes()
        for enc in ("utf-8-sig", "gbk"):
            try:
                text = raw.decode(enc)
                break
            except UnicodeDecodeError:
                continue
        else:
            raise BasinsInputError(f"{path}: text is neither UTF-8 nor GBK.")
        lines = text.splitlines()
        skip = 0
        while skip < len(lines) and lines[skip].startswith("#"):
            skip += 1  # header comments, e.g. "# ILLUSTRATIVE sample"
        import io
        df = pd.read_csv(io.StringIO("\n".join(lines[skip:])), dtype=str, keep_default_na=False)
        return [dict(r, _row=i + 2 + skip) for i, r in enumerate(df.to_dict("records"))], "row"
    if suffix in (".xlsx", ".xlsm", ".xls"):
        sheets = pd.read_excel(path, sheet_name=None, dtype=object)
        name = "agreements" if "agreements" in sheets else next(iter(sheets))
        df = sheets[name]
        return [dict(r, _row=i + 2) for i, r in enumerate(df.to_dict("records"))], "row"
    if suffix in (".gpkg", ".geojson", ".json", ".shp", ".fgb"):
        import pyogrio

        layers = [lyr[0] for lyr in pyogrio.list_layers(path)]
        layer = "agreements" if "agreements" in layers else layers[0]
        gdf = pyogrio.read_dataframe(path, layer=layer)
        if isinstance(gdf, gpd.GeoDataFrame) and gdf.geometry.notna().any():
            g = gdf.to_crs(st.OUTPUT_CRS).geometry if gdf.crs else gdf.geometry
            lon = [p.x if p is not None and p.geom_type == "Point" else None for p in g]
            lat = [p.y if p is not None and p.geom_type == "Point" else None for p in g]
            df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name))
            if "lon" not in df:
                df["lon"], df["lat"] = lon, lat
            else:
                df["lon"] = [a if not _blank(a) else b for a, b in zip(df["lon"], lon)]
                df["lat"] = [a if not _blank(a) else b for a, b in zip(df["lat"], lat)]
        else:
            df = pd.DataFrame(gdf.drop(columns="geometry", errors="ignore"))
        return [dict(r, _row=i + 1) for i, r in enumerate(df.to_dict("records"))], "feature"
    raise BasinsInputError(f"{path}: unknown agreement format {suffix!r}; use .csv, .xlsx, .yaml "
                           "or .gpkg.")


def _yaml_rows(path: Path) -> list[dict]:
    import yaml

    try:
        d = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BasinsInputError(f"{path}: not valid YAML ({exc}).") from exc
    items = d.get("agreements") if isinstance(d, dict) else d
    if not isinstance(items, list):
        raise BasinsInputError(f"{path}: expected a list under 'agreements:'.")
    rows = []
    for i, a in enumerate(items):
        if not isinstance(a, dict):
            raise BasinsInputError(f"{path}: agreements[{i}] is not a mapping.")
        secs = a.get("sections")
        if not isinstance(secs, list) or not secs:
            raise BasinsInputError(f"{path}: agreements[{i}] field 'sections': give a list of "
                                   "at least one section.")
        for j, s in enumerate(secs):
            if not isinstance(s, dict):
                raise BasinsInputError(f"{path}: agreements[{i}].sections[{j}] is not a mapping.")
            r = {k: v for k, v in a.items() if k != "sections"}
            r.update({k: v for k, v in s.items() if k != "parameters"})
            r["section_parameters"] = s.get("parameters", {})
            r["_where"] = f"agreements[{i}].sections[{j}]"
            r["_row"] = i + 1
            rows.append(r)
    return rows


def read_agreements(
    path: str | os.PathLike,
    counties: gpd.GeoDataFrame | None = None,
    templates: dict | None = None,
    sections: set[str] | None = None,
) -> list[Agreement]:
    """Read and validate an agreement registry (CSV, Excel, YAML or GeoPackage).

    Parameters
    ----------
    path
        The registry file.
    counties
        Counties (schema of :func:`basins.read.read_counties`); when given, every
        party id must be one of them (or a ``province:``/``city:`` of them).
    templates
        Known templates by id (default: :func:`basins.policies.load_templates`).
    sections
        Known section ids; when given, a ``section_id`` that is not one of them
        is an error (strict mode). Without it, such a reference is reported by
        :func:`basins.audit.audit` as a stale agreement.

    Returns
    -------
    list of Agreement
        In file order of first appearance.

    Raises
    ------
    BasinsInputError
        Naming the file, the row and the field of the first problem: unknown
        county or template, malformed date or section id, negative amount,
        a section covered by two agreements with overlapping validity, ...
    """
    path = Path(path)
    if not path.exists():
        raise BasinsInputError(f"{path}: agreement file not found.")
    if path.suffix.lower() in (".yaml", ".yml"):
        rows, label = _yaml_rows(path), "yaml"
    else:
        rows, label = _read_table(path)
    if not rows:
        raise BasinsInputError(f"{path}: no agreements in the file.")
    return agreements_from_rows(rows, str(path), label, counties, templates, sections)


def agreements_from_rows(rows: list[dict], source: str, label: str = "row",
                         counties: gpd.GeoDataFrame | None = None,
                         templates: dict | None = None,
                         sections: set[str] | None = None) -> list[Agreement]:
    """Validate flat rows (one per agreement × section) into agreements."""
    if templates is None:
        from .policies import load_templates
        templates = load_templates()
    known = _known_parties(counties) if counties is not None else None
    by_id: dict[str, dict] = {}
    order: list[str] = []
    for r in rows:
        row = int(r.get("_row", 0))
        where = f"{source}, {r.get('_where') or f'{label} {row}'}"

        def bad(fld: str, msg: str) -> BasinsInputError:
            return BasinsInputError(f"{where}, field {fld!r}: {msg}.")

        aid = r.get("agreement_id")
        if _blank(aid):
            raise bad("agreement_id", "missing; every row needs the id of its agreement")
        aid = _clean_id(str(aid).strip())
        head = {}
        for fld in ("signed", "valid_from", "valid_to"):
            try:
                head[fld] = parse_date(r.get(fld))
            except ValueError as exc:
                raise bad(fld, str(exc)) from exc
        if head["valid_from"] > head["valid_to"]:
            raise bad("valid_to", f"{head['valid_to']} is before valid_from {head['valid_from']}")
        if head["signed"] > head["valid_to"]:
            raise bad("signed", f"{head['signed']} is after the end of validity {head['valid_to']}")
        tpl = r.get("template")
        if _blank(tpl) or str(tpl).strip() not in templates:
            raise bad("template", f"{tpl!r} is not a known template ({', '.join(sorted(templates))})"
                      "; add a template file or fix the name")
        head["template"] = str(tpl).strip()
        try:
            head["annual_amount"] = parse_yuan(r.get("annual_amount"))
        except ValueError as exc:
            raise bad("annual_amount", str(exc)) from exc
        if head["annual_amount"] < 0:
            raise bad("annual_amount", f"negative amount {r.get('annual_amount')!r}")
        try:
            head["parameters"] = parse_json_object(r.get("parameters"))
        except ValueError as exc:
            raise bad("parameters", str(exc)) from exc
        head["name"] = "" if _blank(r.get("name")) else str(r.get("name")).strip()
        head["note"] = "" if _blank(r.get("note")) else str(r.get("note")).strip()
        # section reference
        ref: dict[str, Any] = {"where": where, "row": row}
        sid = r.get("section_id")
        ref["section_id"] = "" if _blank(sid) else str(sid).strip()
        if ref["section_id"] and not SECTION_ID_RE.match(ref["section_id"]):
            raise bad("section_id", f"{sid!r} is not a section id (S + 10 hex digits); "
                      "leave it empty to reference by coordinates or river and parties")
        if ref["section_id"] and sections is not None and ref["section_id"] not in sections:
            raise bad("section_id", f"unknown section {ref['section_id']!r}: the discovered "
                      "network has no such section; check the id against the sections layer")
        try:
            ref["lon"] = _float_or_none(r.get("lon"), "lon")
            ref["lat"] = _float_or_none(r.get("lat"), "lat")
        except ValueError as exc:
            raise bad("lon/lat", str(exc)) from exc
        if (ref["lon"] is None) != (ref["lat"] is None):
            raise bad("lon/lat", "give both lon and lat, or neither")
        if ref["lon"] is not None and not (-180 <= ref["lon"] <= 180 and -90 <= ref["lat"] <= 90):
            raise bad("lon/lat", f"({ref['lon']}, {ref['lat']}) is not a lon/lat in degrees")
        ref["river"] = "" if _blank(r.get("river")) else str(r.get("river")).strip()
        for side in ("upstream", "downstream"):
            try:
                ref[side] = parse_parties(r.get(f"{side}_ids"))
            except ValueError as exc:
                raise bad(f"{side}_ids", str(exc)) from exc
            if known is not None:
                for p in ref[side]:
                    if p not in known:
                        raise bad(f"{side}_ids", f"unknown county id {p!r}; use a county id of "
                                  "the county layer, or province:<name> / city:<name>")
        if not ref["section_id"] and ref["lon"] is None and not ref["river"]:
            raise bad("section_id", "no section reference: give section_id, lon/lat, or river "
                      "with upstream_ids and downstream_ids")
        try:
            ref["target_class"] = parse_class(r.get("target_class"))
        except ValueError as exc:
            raise bad("target_class", str(exc)) from exc
        try:
            ref["parameters"] = parse_json_object(r.get("section_parameters"))
        except ValueError as exc:
            raise bad("section_parameters", str(exc)) from exc
        if aid not in by_id:
            by_id[aid] = dict(head, agreement_id=aid, refs=[], where=where)
            order.append(aid)
        else:
            first = by_id[aid]
            for fld, v in head.items():
                if fld in ("note",):
                    continue
                if first[fld] != v and not (fld == "name" and not v):
                    raise bad(fld, f"differs from the first row of agreement {aid!r} "
                              f"({first['where']}): {v!r} vs {first[fld]!r}")
        by_id[aid]["refs"].append(SectionRef(**ref))
    out = [Agreement(agreement_id=a, name=d["name"], signed=d["signed"], valid_from=d["valid_from"],
                     valid_to=d["valid_to"], template=d["template"],
                     annual_amount=d["annual_amount"], sections=tuple(d["refs"]),
                     parameters=d["parameters"], source=source, note=d["note"])
           for a, d in ((a, by_id[a]) for a in order)]
    check_overlaps(out)
    return out


def _ref_key(ref: SectionRef) -> tuple:
    if ref.section_id:
        return ("id", ref.section_id)
    if ref.lon is not None:
        return ("xy", round(ref.lon, 4), round(ref.lat, 4))
    return ("rp", ref.river, frozenset(ref.upstream), frozenset(ref.downstream))


def check_overlaps(agreements: list[Agreement]) -> None:
    """Refuse a section covered by two agreements whose validity periods overlap."""
    seen: dict[tuple, list[tuple[Agreement, SectionRef]]] = {}
    for a in agreements:
        for ref in a.sections:
            for b, other in seen.get(_ref_key(ref), []):
                if b.agreement_id != a.agreement_id and a.in_force(b.valid_from, b.valid_to):
                    raise BasinsInputError(
                        f"{ref.where}: the section is also covered by agreement "
                        f"{b.agreement_id!r} ({other.where}) and the validity periods overlap "
                        f"({a.valid_from}–{a.valid_to} and {b.valid_from}–{b.valid_to}); end one "
                        "before the other starts.")
            seen.setdefault(_ref_key(ref), []).append((a, ref))


def check_resolved_overlaps(agreements: list[Agreement], clauses: pd.DataFrame) -> None:
    """After resolution: refuse two agreements on one section with overlapping validity
    (references by coordinates or river and parties can land on the same section)."""
    by_id = {a.agreement_id: a for a in agreements}
    seen: dict[str, tuple[Agreement, str]] = {}
    for c in clauses[clauses.section_id != ""].itertuples():
        a = by_id[c.agreement_id]
        prev = seen.get(c.section_id)
        if prev is not None and prev[0].agreement_id != a.agreement_id \
                and a.in_force(prev[0].valid_from, prev[0].valid_to):
            b, where = prev
            raise BasinsInputError(
                f"{c.where}: resolves to section {c.section_id}, which agreement "
                f"{b.agreement_id!r} ({where}) also covers, and the validity periods overlap "
                f"({a.valid_from}–{a.valid_to} and {b.valid_from}–{b.valid_to}); end one "
                "before the other starts.")
        seen.setdefault(c.section_id, (a, c.where))


def _known_parties(counties: gpd.GeoDataFrame) -> set[str]:
    known = set(counties.county_id.astype(str))
    known |= {f"city:{c}" for c in counties.city.astype(str)}
    known |= {f"province:{p}" for p in counties.province.astype(str)}
    return known


# ---------------------------------------------------------------------------
# writing (round trip)
# ---------------------------------------------------------------------------
def agreements_frame(agreements: list[Agreement]) -> pd.DataFrame:
    """Flat table, one row per agreement × section (columns :data:`AGREEMENT_COLUMNS`)."""
    rows = []
    for a in agreements:
        for ref in a.sections:
            rows.append(dict(
                agreement_id=a.agreement_id, name=a.name, signed=a.signed.isoformat(),
                valid_from=a.valid_from.isoformat(), valid_to=a.valid_to.isoformat(),
                template=a.template,
                parameters=json.dumps(a.parameters, ensure_ascii=False, sort_keys=True)
                if a.parameters else "",
                annual_amount=str(a.annual_amount), section_id=ref.section_id,
                lon="" if ref.lon is None else repr(ref.lon),
                lat="" if ref.lat is None else repr(ref.lat), river=ref.river,
                upstream_ids=st.SEP.join(ref.upstream), downstream_ids=st.SEP.join(ref.downstream),
                target_class=ref.target_class,
                section_parameters=json.dumps(ref.parameters, ensure_ascii=False, sort_keys=True)
                if ref.parameters else "",
                note=a.note))
    return pd.DataFrame(rows, columns=AGREEMENT_COLUMNS)


def write_agreements(agreements: list[Agreement], path: str | os.PathLike,
                     header: str = "") -> Path:
    """Write a registry as CSV, Excel, YAML or GeoPackage (by suffix).

    ``header`` (e.g. an ILLUSTRATIVE notice) becomes ``#`` comment lines in CSV
    and YAML; the ``note`` column carries it in every format.
    """
    from .output import atomic_path, write_gpkg, write_xlsx

    path = Path(path)
    df = agreements_frame(agreements)
    suffix = path.suffix.lower()
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    if suffix == ".csv":
        with atomic_path(path, ".csv") as tmp:
            tmp.write_text(comment + df.to_csv(index=False, lineterminator="\n"),
                           encoding="utf-8")
    elif suffix in (".xlsx", ".xlsm"):
        write_xlsx({"agreements": df}, path)
    elif suffix in (".yaml", ".yml"):
        import yaml

        items = []
        for a in agreements:
            d: dict[str, Any] = dict(
                agreement_id=a.agreement_id, name=a.name, signed=a.signed.isoformat(),
                valid_from=a.valid_from.isoformat(), valid_to=a.valid_to.isoformat(),
                template=a.template, annual_amount=str(a.annual_amount))
            if a.parameters:
                d["parameters"] = a.parameters
            if a.note:
                d["note"] = a.note
            d["sections"] = []
            for ref in a.sections:
                s: dict[str, Any] = {}
                for k in ("section_id", "lon", "lat", "river"):
                    v = getattr(ref, k)
                    if v not in ("", None):
                        s[k] = v
                s["upstream_ids"] = st.SEP.join(ref.upstream)
                s["downstream_ids"] = st.SEP.join(ref.downstream)
                s["target_class"] = ref.target_class
                if ref.parameters:
                    s["parameters"] = ref.parameters
                d["sections"].append(s)
            items.append(d)
        text = yaml.safe_dump({"agreements": items}, allow_unicode=True, sort_keys=False)
        with atomic_path(path, suffix) as tmp:
            tmp.write_text(comment + text, encoding="utf-8")
    elif suffix == ".gpkg":
        write_gpkg({"agreements": df}, path)
    else:
        raise BasinsInputError(f"{path}: unknown agreement format {suffix!r}; use .csv, .xlsx, "
                               ".yaml or .gpkg.")
    return path


# ---------------------------------------------------------------------------
# resolution against discovered sections
# ---------------------------------------------------------------------------
CLAUSE_COLUMNS = ["agreement_id", "ref", "where", "how", "section_id", "match", "missing_parties",
                  "detail"]


def _side_tokens(ids: list[str], lookup: dict[str, tuple[str, str]]) -> set[str]:
    toks = set(ids)
    for i in ids:
        city, prov = lookup.get(i, ("", ""))
        toks |= {f"city:{city}", f"province:{prov}"}
    return toks


def _side_match(given: tuple[str, ...], side: list[str], lookup) -> tuple[str, set[str]]:
    """``full``, ``partial`` (missing bank parties) or ``no``."""
    if not set(given) <= _side_tokens(side, lookup):
        return "no", set()
    if any(g.startswith(AGGREGATE_PREFIXES) for g in given):
        return "full", set()  # a province or city signs for all its counties on that side
    missing = set(side) - set(given)
    return ("partial" if missing else "full"), missing


def match_parties(up: tuple[str, ...], down: tuple[str, ...], sec_up: list[str],
                  sec_down: list[str], lookup: dict[str, tuple[str, str]]) -> tuple[str, set[str]]:
    """Compare an agreement's parties with a section's.

    Returns
    -------
    (match, missing)
        ``match`` is ``ok``, ``incomplete`` (a bank county of a boundary-river side
        did not sign; ``missing`` names it), ``mis_oriented`` (the party named
        upstream is downstream by the flow graph) or ``party_mismatch``.
    """
    mu, miss_u = _side_match(up, sec_up, lookup)
    md, miss_d = _side_match(down, sec_down, lookup)
    if mu == "full" and md == "full":
        return "ok", set()
    if mu != "no" and md != "no":
        return "incomplete", miss_u | miss_d
    su, _ = _side_match(up, sec_down, lookup)
    sd, _ = _side_match(down, sec_up, lookup)
    if su != "no" and sd != "no":
        return "mis_oriented", set()
    return "party_mismatch", set()


def _river_match(a: str, b: str) -> bool:
    return bool(a) and bool(b) and (a in b or b in a)


def resolve_agreements(
    agreements: list[Agreement],
    sections: gpd.GeoDataFrame,
    counties: gpd.GeoDataFrame,
    settings: st.Settings = st.DEFAULT,
) -> pd.DataFrame:
    """Match every section reference to discovered sections and compare parties.

    Returns
    -------
    pandas.DataFrame
        One row per reference × matched section (columns :data:`CLAUSE_COLUMNS`);
        a reference that matches nothing has an empty ``section_id`` and
        ``match == "stale"`` with the reason in ``detail``.
    """
    lookup = {str(i): (str(c), str(p)) for i, c, p in
              zip(counties.county_id, counties.city, counties.province)}
    secs = sections.reset_index(drop=True)
    by_id = {sid: k for k, sid in enumerate(secs.section_id)}
    ups = [str(v).split(st.SEP) for v in secs.upstream_ids]
    downs = [str(v).split(st.SEP) for v in secs.downstream_ids]
    # coordinates: snap all at once
    xy = [(a, k, ref) for a in agreements for k, ref in enumerate(a.sections)
          if ref.how == "coordinates"]
    snapped: dict[tuple[str, int], tuple[str, str]] = {}
    if xy:
        from shapely import points

        from .sections import snap_points_to_sections

        pts = gpd.GeoDataFrame(
            {"name": [a.agreement_id for a, _, _ in xy], "river": [r.river for _, _, r in xy]},
            geometry=points([(r.lon, r.lat) for _, _, r in xy]), crs=st.OUTPUT_CRS)
        res = snap_points_to_sections(pts, secs, settings)
        for (a, k, _), sid, status in zip(xy, res.section_id, res.status):
            snapped[(a.agreement_id, k)] = (sid, status)
    rows = []
    for a in agreements:
        for k, ref in enumerate(a.sections):
            base = dict(agreement_id=a.agreement_id, ref=k, where=ref.where, how=ref.how)
            hits: list[int] = []
            detail = ""
            if ref.how == "section_id":
                if ref.section_id in by_id:
                    hits = [by_id[ref.section_id]]
                else:
                    detail = f"section {ref.section_id} is not in the discovered network"
            elif ref.how == "coordinates":
                sid, status = snapped[(a.agreement_id, k)]
                if sid:
                    hits = [by_id[sid]]
                else:
                    detail = f"monitoring point ({ref.lon:.4f}, {ref.lat:.4f}): {status}"
            else:
                for j in range(len(secs)):
                    if not _river_match(ref.river, str(secs.river.iat[j])):
                        continue
                    m, _ = match_parties(ref.upstream, ref.downstream, ups[j], downs[j], lookup)
                    if m != "party_mismatch":
                        hits.append(j)
                if not hits:
                    detail = (f"no section on river {ref.river!r} between "
                              f"{st.SEP.join(ref.upstream)} and {st.SEP.join(ref.downstream)}")
            if not hits:
                rows.append(dict(base, section_id="", match="stale", missing_parties="",
                                 detail=detail))
            for j in hits:
                m, missing = match_parties(ref.upstream, ref.downstream, ups[j], downs[j], lookup)
                rows.append(dict(base, section_id=secs.section_id.iat[j], match=m,
                                 missing_parties=st.SEP.join(sorted(missing)), detail=""))
    return pd.DataFrame(rows, columns=CLAUSE_COLUMNS)


__all__ = [
    "AGREEMENT_COLUMNS", "Agreement", "SectionRef", "agreements_frame", "agreements_from_rows",
    "match_parties", "parse_class", "parse_date", "read_agreements", "resolve_agreements",
    "write_agreements",
]
