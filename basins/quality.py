"""Water quality classes after GB 3838-2002, single-factor (the worst indicator decides).

Monitoring data arrive as a long table: ``section_id, date, indicator, value,
unit`` (CSV or Excel). :func:`read_monitoring` checks units (mg/L, µg/L),
rejects impossible values, duplicate months and unknown sections, with the
file and row in the message. :func:`monthly_classes` and :func:`annual_classes`
give the class per section and month or year; months without data are listed
by :func:`missing_months` and handled as the policy template says.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from .money import to_decimal
from .read import BasinsInputError

#: Classes from best to worst; 劣V is worse than V.
CLASSES = ("I", "II", "III", "IV", "V", "劣V")
RANK = {c: i + 1 for i, c in enumerate(CLASSES)}

#: Limits in mg/L for classes I..V. ``kind`` "min": value must be at least the
#: limit (DO); "max": at most. TP has separate river and lake limits; TN counts
#: for lakes and reservoirs only (as in GB 3838-2002 Table 1 note).
LIMITS: dict[str, dict] = {
    "DO": {"kind": "min", "river": ("7.5", "6", "5", "3", "2")},
    "CODMn": {"kind": "max", "river": ("2", "4", "6", "10", "15")},
    "COD": {"kind": "max", "river": ("15", "15", "20", "30", "40")},
    "BOD5": {"kind": "max", "river": ("3", "3", "4", "6", "10")},
    "NH3-N": {"kind": "max", "river": ("0.15", "0.5", "1.0", "1.5", "2.0")},
    "TP": {"kind": "max", "river": ("0.02", "0.1", "0.2", "0.3", "0.4"),
           "lake": ("0.01", "0.025", "0.05", "0.1", "0.2")},
    "TN": {"kind": "max", "lake": ("0.2", "0.5", "1.0", "1.5", "2.0")},
}
#: Values above these (mg/L) are physically implausible for surface water: rejected.
PLAUSIBLE_MAX = {"DO": 25, "CODMn": 500, "COD": 5000, "BOD5": 2000, "NH3-N": 500, "TP": 100,
                 "TN": 500}
ALIASES = {
    "DO": "DO", "溶解氧": "DO",
    "CODMN": "CODMn", "高锰酸盐指数": "CODMn", "PI": "CODMn",
    "COD": "COD", "CODCR": "COD", "化学需氧量": "COD",
    "BOD5": "BOD5", "BOD": "BOD5", "五日生化需氧量": "BOD5",
    "NH3-N": "NH3-N", "NH3N": "NH3-N", "NH4-N": "NH3-N", "氨氮": "NH3-N",
    "TP": "TP", "总磷": "TP",
    "TN": "TN", "总氮": "TN",
}
UNITS = {"mg/l": Decimal(1), "µg/l": Decimal("0.001"), "μg/l": Decimal("0.001"),
         "ug/l": Decimal("0.001")}
MONITORING_COLUMNS = ["section_id", "date", "indicator", "value", "unit"]


def indicator_name(name: str) -> str:
    """Canonical indicator name (``氨氮`` → ``NH3-N``); raises ``ValueError`` if unknown."""
    key = re.sub(r"\s+", "", str(name)).upper().replace("₃", "3").replace("₅", "5")
    key = ALIASES.get(key) or ALIASES.get(str(name).strip())
    if key is None:
        raise ValueError(f"unknown indicator {name!r}; known: {', '.join(LIMITS)}")
    return key


def class_of_value(indicator: str, value, water: str = "river") -> str | None:
    """Class of one indicator value (mg/L); None when the indicator does not apply."""
    spec = LIMITS[indicator_name(indicator)]
    limits = spec.get(water) or (spec.get("river") if water == "lake" else None)
    if limits is None:
        return None
    v = to_decimal(value)
    for cls, lim in zip(CLASSES, limits):
        if (v >= Decimal(lim)) if spec["kind"] == "min" else (v <= Decimal(lim)):
            return cls
    return "劣V"


def classify(values: dict[str, object], water: str = "river") -> tuple[str, str]:
    """Single-factor class of a set of indicator values and the indicator that decided it.

    Returns
    -------
    (class, worst_indicator)
        Ties are broken by the order of :data:`LIMITS` so the result is stable.
    """
    worst, which = None, ""
    for ind in LIMITS:
        if ind not in values or values[ind] is None:
            continue
        c = class_of_value(ind, values[ind], water)
        if c is not None and (worst is None or RANK[c] > RANK[worst]):
            worst, which = c, ind
    if worst is None:
        raise ValueError("no indicator that decides a class")
    return worst, which


def limit(indicator: str, cls: str, water: str = "river") -> Decimal:
    """The limit of class ``cls`` (I–V) for an indicator, mg/L."""
    spec = LIMITS[indicator_name(indicator)]
    limits = spec.get(water) or spec.get("river") or spec.get("lake")
    return Decimal(limits[RANK[cls] - 1])


def better(a: str, b: str) -> int:
    """Classes ``a`` better than ``b`` (positive), equal (0) or worse (negative)."""
    return RANK[b] - RANK[a]


# ---------------------------------------------------------------------------
# reading monitoring data
# ---------------------------------------------------------------------------
def read_monitoring(path: str | os.PathLike, sections: set[str] | None = None) -> pd.DataFrame:
    """Read and validate a long monitoring table (CSV or Excel).

    Parameters
    ----------
    path
        Columns ``section_id, date, indicator, value, unit`` (one sample per
        section, month and indicator). ``#`` lines at the top are comments.
    sections
        Known section ids; a row naming another section is an error.

    Returns
    -------
    pandas.DataFrame
        ``section_id, month`` (``YYYY-MM``), ``indicator`` (canonical),
        ``value_mg_l`` (Decimal, converted from µg/L where needed).
    """
    path = Path(path)
    if not path.exists():
        raise BasinsInputError(f"{path}: monitoring file not found.")
    if path.suffix.lower() in (".xlsx", ".xls", ".xlsm"):
        df = pd.read_excel(path, dtype=object)
        first = 2
    else:
        text = path.read_bytes().decode("utf-8-sig", errors="strict")
        lines = text.splitlines()
        skip = 0
        while skip < len(lines) and lines[skip].startswith("#"):
            skip += 1
        import io
        df = pd.read_csv(io.StringIO("\n".join(lines[skip:])), dtype=str, keep_default_na=False)
        first = 2 + skip
    return monitoring_from_frame(df, str(path), sections, first)


def monitoring_from_frame(df: pd.DataFrame, source: str = "<table>",
                          sections: set[str] | None = None, first_row: int = 2) -> pd.DataFrame:
    """Validate a monitoring table already in memory (see :func:`read_monitoring`)."""
    missing = [c for c in MONITORING_COLUMNS if c not in df.columns]
    if missing:
        raise BasinsInputError(f"{source}: missing column(s) {missing}; a monitoring table has "
                               f"{MONITORING_COLUMNS}.")
    from .agreements import parse_date

    out = []
    seen: dict[tuple, int] = {}
    for k, r in enumerate(df[MONITORING_COLUMNS].itertuples(index=False)):
        row = first_row + k
        where = f"{source}, row {row}"
        sid = str(r.section_id).strip()
        if not sid or sid == "nan":
            raise BasinsInputError(f"{where}, field 'section_id': empty.")
        if sections is not None and sid not in sections:
            raise BasinsInputError(f"{where}, field 'section_id': unknown section {sid!r}; use "
                                   "an id of the discovered sections (or snap the station first).")
        try:
            d = parse_date(r.date)
        except ValueError as exc:
            raise BasinsInputError(f"{where}, field 'date': {exc}.") from exc
        try:
            ind = indicator_name(r.indicator)
        except ValueError as exc:
            raise BasinsInputError(f"{where}, field 'indicator': {exc}.") from exc
        unit = str(r.unit).strip().lower().replace("mg/dm3", "mg/l")
        if unit not in UNITS:
            raise BasinsInputError(f"{where}, field 'unit': {r.unit!r} is not mg/L or µg/L.")
        try:
            v = to_decimal(r.value)
        except ValueError as exc:
            raise BasinsInputError(f"{where}, field 'value': {exc}.") from exc
        if not v.is_finite() or (isinstance(r.value, float) and math.isnan(r.value)):
            raise BasinsInputError(f"{where}, field 'value': not a number.")
        v = v * UNITS[unit]
        if v < 0:
            raise BasinsInputError(f"{where}, field 'value': negative concentration {r.value}.")
        if v > PLAUSIBLE_MAX[ind]:
            hint = " (is the unit µg/L?)" if unit == "mg/l" else ""
            raise BasinsInputError(f"{where}, field 'value': {r.value} {r.unit} of {ind} is "
                                   f"impossible for surface water (over {PLAUSIBLE_MAX[ind]} "
                                   f"mg/L){hint}.")
        month = f"{d.year:04d}-{d.month:02d}"
        key = (sid, month, ind)
        if key in seen:
            raise BasinsInputError(f"{where}: duplicate month: {ind} of section {sid} in {month} "
                                   f"is also on row {seen[key]}; keep one value per month.")
        seen[key] = row
        out.append(dict(section_id=sid, month=month, indicator=ind, value_mg_l=v))
    res = pd.DataFrame(out, columns=["section_id", "month", "indicator", "value_mg_l"])
    return res.sort_values(["section_id", "month", "indicator"]).reset_index(drop=True)


# ---------------------------------------------------------------------------
# classes per month and year
# ---------------------------------------------------------------------------
#: Values are summed exactly as integers of this many mg/L per unit (1e-9 mg/L).
NANO = 1_000_000_000


@dataclass
class MonitoringCodes:
    """A monitoring table factorised once into integer codes (see :func:`code_monitoring`).

    ``sections``/``months`` are sorted, so code order is text order; ``values``
    holds each distinct Decimal once. Classes per month and year are computed on
    the codes (numpy), never row by row.
    """

    sections: np.ndarray     # distinct section ids, sorted (object)
    months: np.ndarray       # distinct months ``YYYY-MM``, sorted (object)
    indicators: np.ndarray   # distinct indicators (object)
    s: np.ndarray            # section code per row
    m: np.ndarray            # month code per row
    i: np.ndarray            # indicator code per row
    values: list             # distinct values (Decimal mg/L)
    v: np.ndarray            # value code per row

    def __len__(self) -> int:
        return len(self.s)

    def month_years(self) -> np.ndarray:
        """Year of each distinct month."""
        return np.array([int(x[:4]) for x in self.months.tolist()], dtype=np.int64)

    def lake_rows(self, water: dict[str, str]) -> np.ndarray:
        lake = np.array([water.get(x, "river") == "lake" for x in self.sections.tolist()],
                        dtype=bool)
        return lake[self.s] if len(lake) else np.zeros(len(self.s), bool)

    def ranks(self, water: dict[str, str]) -> np.ndarray:
        """Class rank (1 = I … 6 = 劣V) of every row; 0 where the indicator does not apply.

        Vectorised with floats: values and limits are decimal numbers converted the
        same way, so a value equal to a limit compares equal, and distinct decimals of
        up to 15 significant digits keep their order.
        """
        v = np.array([float(x) for x in self.values], dtype=float)[self.v]
        return _rank_by_limits(v, self.i, self.indicators, self.lake_rows(water),
                               lambda lim: np.array([float(x) for x in lim]))

    def month_grid(self, water: dict[str, str]) -> "MonthGrid":
        """Worst class rank per section and month (the monthly single-factor class)."""
        grid = np.zeros(len(self.sections) * len(self.months), dtype=np.int8)
        r = self.ranks(water)
        cell = self.s * len(self.months) + self.m
        for k in range(1, len(CLASSES) + 1):  # worse ranks written last: the worst stays
            grid[cell[r == k]] = k
        return MonthGrid(self.sections, self.months,
                         grid.reshape(len(self.sections), len(self.months)))

    def nano(self) -> np.ndarray | None:
        """Row values as int64 units of 1e-9 mg/L, or None when a value has more
        decimals (or is too large to sum exactly in int64)."""
        scaled = [x * NANO for x in self.values]
        if not all(x == x.to_integral_value() and abs(x) < 10**15 for x in scaled):
            return None
        return np.array([int(x) for x in scaled], dtype=np.int64)[self.v]

    def year_grid(self, water: dict[str, str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Single-factor rank of the annual means per section and year, exactly.

        A mean ``total / count`` is within a limit when ``total <= limit × count``
        (``>=`` for DO), all in integers of 1e-9 mg/L, so no Decimal division is
        needed. Returns ``(years, int8[n_sections, n_years])`` (0 = no class), or
        None when :meth:`nano` cannot represent the values (use the Decimal means).
        """
        nano = self.nano()
        if nano is None:
            return None
        myear = self.month_years()
        years, ycode = np.unique(myear, return_inverse=True)
        n_s, n_y, n_i = len(self.sections), len(years), len(self.indicators)
        key = (self.s.astype(np.int64) * n_y + ycode.ravel()[self.m]) * n_i + self.i
        size = n_s * n_y * n_i
        total = np.zeros(size, dtype=np.int64)
        np.add.at(total, key, nano)
        count = np.bincount(key, minlength=size).astype(np.int64)
        have = np.flatnonzero(count)
        g_s, rest = np.divmod(have, n_y * n_i)
        g_y, g_i = np.divmod(rest, n_i)
        lake = np.array([water.get(x, "river") == "lake" for x in self.sections.tolist()],
                        dtype=bool)[g_s] if n_s else np.zeros(0, bool)
        tot, cnt = total[have], count[have]
        r = _rank_by_limits(None, g_i, self.indicators, lake,
                            lambda lim: np.array([int(Decimal(x) * NANO) for x in lim],
                                                 dtype=np.int64), exact=(tot, cnt))
        grid = np.zeros((n_s, n_y), dtype=np.int8)
        np.maximum.at(grid, (g_s, g_y), r)
        return years, grid


@dataclass
class MonthGrid:
    """Monthly class ranks as a dense grid: ``rank[section, month]`` (1 = I … 6 = 劣V,
    0 = no class that month). Rows and columns follow ``sections`` and ``months``."""

    sections: np.ndarray
    months: np.ndarray
    rank: np.ndarray

    @cached_property
    def section_index(self) -> dict[str, int]:
        return {x: k for k, x in enumerate(self.sections.tolist())}

    @cached_property
    def month_index(self) -> dict[str, int]:
        return {x: k for k, x in enumerate(self.months.tolist())}

    def classes(self) -> dict[tuple[str, str], str]:
        """``(section_id, month) -> class`` for every cell with a class."""
        s, m = np.nonzero(self.rank)
        cls = np.array(CLASSES, dtype=object)[self.rank[s, m] - 1]
        return dict(zip(zip(self.sections[s].tolist(), self.months[m].tolist()), cls.tolist()))


def _rank_by_limits(v: np.ndarray | None, icode: np.ndarray, indicators: np.ndarray,
                    lake: np.ndarray, conv,
                    exact: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Rank of each value against its indicator's limits (0: does not apply).

    ``icode`` indexes ``indicators``. ``v`` are values (compared by
    :func:`numpy.searchsorted`); with ``exact = (total, count)`` a value is the
    mean ``total / count`` and is compared as ``total`` against ``limit × count``
    in integers.
    """
    out = np.zeros(len(icode), dtype=np.int8)
    for code, name in enumerate(indicators.tolist()):
        spec = LIMITS.get(name)
        if spec is None:
            continue
        of_ind = icode == code
        for kind_water, mask_w in (("river", ~lake), ("lake", lake)):
            limits = spec.get(kind_water) or (spec.get("river") if kind_water == "lake" else None)
            if limits is None:
                continue
            m = np.flatnonzero(of_ind & mask_w)
            if not len(m):
                continue
            lim = conv(limits)
            if exact is None:
                if spec["kind"] == "min":
                    out[m] = np.searchsorted(-lim, -v[m], side="left") + 1
                else:
                    out[m] = np.searchsorted(lim, v[m], side="left") + 1
                continue
            tot, cnt = exact[0][m], exact[1][m]
            bound = lim[None, :] * cnt[:, None]  # limit × count, exact integers
            worse = (tot[:, None] < bound) if spec["kind"] == "min" else (tot[:, None] > bound)
            out[m] = worse.sum(axis=1) + 1
    return out


def _factorize_sorted(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``pd.factorize(a, sort=True)``, from run boundaries when ``a`` is already sorted
    (as :func:`read_monitoring` leaves the section ids)."""
    if len(a) > 1:
        new = np.empty(len(a), dtype=bool)
        new[0] = True
        new[1:] = a[1:] != a[:-1]
        u = a[new]
        if all(isinstance(x, str) for x in u.tolist()) and bool(np.all(u[1:] > u[:-1])):
            return np.cumsum(new) - 1, u
    return pd.factorize(a, sort=True)


def code_monitoring(monitoring: pd.DataFrame) -> MonitoringCodes:
    """Factorise a monitoring table (``section_id, month, indicator, value_mg_l``) once."""
    def col(name: str) -> np.ndarray:  # object arrays factorise faster than pandas strings
        return monitoring[name].to_numpy(dtype=object)

    sc, su = _factorize_sorted(col("section_id"))
    mc, mu = pd.factorize(col("month"), sort=True)
    ic, iu = pd.factorize(col("indicator"))
    values = col("value_mg_l")
    vu = pd.unique(values)  # Decimal hashing: unique + indexer beats factorize 2x
    vc = pd.Index(vu, dtype=object).get_indexer(values)
    return MonitoringCodes(
        sections=np.asarray(su, dtype=object), months=np.asarray(mu, dtype=object),
        indicators=np.asarray(iu, dtype=object), s=sc.astype(np.int64), m=mc.astype(np.int64),
        i=ic.astype(np.int64), values=list(vu), v=vc.astype(np.int64))


def monthly_classes(monitoring: pd.DataFrame, water: dict[str, str] | None = None,
                    codes: MonitoringCodes | None = None) -> pd.DataFrame:
    """Class per section and month: ``section_id, month, class, worst_indicator``.

    Single-factor: the worst indicator decides; ties go to the indicator listed
    first in :data:`LIMITS`, so the result is stable. ``codes``: the table already
    factorised by :func:`code_monitoring`.
    """
    cols = ["section_id", "month", "class", "worst_indicator"]
    if len(monitoring) == 0:
        return pd.DataFrame(columns=cols)
    c = codes if codes is not None else code_monitoring(monitoring)
    r = c.ranks(water or {})
    order = {k: i for i, k in enumerate(LIMITS)}
    sc, mc, ic, iu = c.s, c.m, c.i, c.indicators
    o = np.array([order.get(x, len(order)) for x in iu], dtype=np.int64)[ic]
    keep = np.flatnonzero(r > 0)
    idx = keep[np.lexsort((o[keep], -r[keep].astype(np.int64), mc[keep], sc[keep]))]
    first = np.r_[True, (sc[idx][1:] != sc[idx][:-1]) | (mc[idx][1:] != mc[idx][:-1])] \
        if len(idx) else np.zeros(0, bool)
    idx = idx[first]
    return pd.DataFrame({
        "section_id": c.sections[sc[idx]],
        "month": c.months[mc[idx]],
        "class": np.array(CLASSES, dtype=object)[r[idx] - 1],
        "worst_indicator": iu[ic[idx]],
    }, columns=cols)


def annual_means_by_year(monitoring: pd.DataFrame) -> dict[int, dict[str, dict[str, Decimal]]]:
    """:func:`annual_means` for every year in the table at once."""
    years = monitoring.month.str[:4].astype(int) if len(monitoring) else pd.Series([], dtype=int)
    return {int(y): _means(monitoring[years.to_numpy() == y]) for y in sorted(set(years))}


def annual_means(monitoring: pd.DataFrame, year: int) -> dict[str, dict[str, Decimal]]:
    """Annual mean concentration per section and indicator (Decimal mg/L, exact)."""
    return _means(monitoring[monitoring.month.str.startswith(f"{year:04d}-")])


def _int_array(values: list[int]) -> np.ndarray:
    """int64 when the values fit (fast sums), else Python ints (exact, slower)."""
    try:
        return np.array(values, dtype=np.int64)
    except OverflowError:
        return np.array(values, dtype=object)


def _means(sel: pd.DataFrame) -> dict[str, dict[str, Decimal]]:
    out: dict[str, dict[str, Decimal]] = {}
    if len(sel) == 0:
        return out
    # exact sums as integers of 1e-9 mg/L when every value allows it, else Decimal sums
    vcode, vuniq = pd.factorize(sel.value_mg_l, use_na_sentinel=False)
    scaled = [v * 1_000_000_000 for v in vuniq]  # each distinct value once
    if all(x == x.to_integral_value() for x in scaled):
        df = pd.DataFrame({"s": sel.section_id.to_numpy(), "i": sel.indicator.to_numpy(),
                           "n": _int_array([int(x) for x in scaled])[vcode]})
        g = df.groupby(["s", "i"], sort=True).n.agg(["sum", "count"])
        for (sid, ind), total, count in zip(g.index, g["sum"], g["count"]):
            out.setdefault(sid, {})[ind] = Decimal(int(total)) / 1_000_000_000 / int(count)
        return out
    for (sid, ind), grp in sel.groupby(["section_id", "indicator"], sort=True):
        vals = list(grp.value_mg_l)
        out.setdefault(sid, {})[ind] = sum(vals, Decimal(0)) / len(vals)
    return out


def annual_classes(monitoring: pd.DataFrame, year: int,
                   water: dict[str, str] | None = None) -> dict[str, str]:
    """Class of the annual means per section (single-factor)."""
    return classes_of_means(annual_means(monitoring, year), water)


def classes_of_means(means: dict[str, dict[str, Decimal]],
                     water: dict[str, str] | None = None) -> dict[str, str]:
    """Single-factor class of each section's annual means."""
    water = water or {}
    out = {}
    for sid, vals in means.items():
        c = _class_of_items(tuple(vals.items()), water.get(sid, "river"))
        if c is not None:
            out[sid] = c
    return out


@lru_cache(maxsize=65536)
def _class_of_items(items: tuple, water: str) -> str | None:
    """:func:`classify` of ``dict(items)``, memoised (annual means repeat across sections)."""
    try:
        return classify(dict(items), water)[0]
    except ValueError:
        return None


def missing_months(monitoring: pd.DataFrame, section_ids: list[str], months: list[str]
                   ) -> pd.DataFrame:
    """Section × month pairs with no sample at all: ``section_id, month``."""
    have = set(zip(monitoring.section_id, monitoring.month))
    rows = [dict(section_id=s, month=m) for s in section_ids for m in months if (s, m) not in have]
    return pd.DataFrame(rows, columns=["section_id", "month"])
