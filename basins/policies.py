"""Policy templates: parameters in data files (validated on load), formulas in code.

A template is a YAML file (built-ins in ``basins/templates/``)::

    id: shandong_county
    name: 山东省县际流域横向生态补偿
    formula: shandong_county        # a registered formula, or "package.module:function"
    floor: {amount: 1000万, per: section_year}   # or per: agreement_year
    parameters: {...}               # checked against the formula's defaults

A user adds a template without editing the engine: write a YAML file with new
parameters for an existing formula, or point ``formula`` at a function of their
own (``mypkg.rules:my_formula``), and load it with :func:`load_template` or put it
in a folder listed in ``$BASINS_TEMPLATES`` (``os.pathsep``-separated).
The built-in formulas are at the end of this module; :mod:`basins.settlement` runs them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import lru_cache
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .money import parse_yuan
from .read import BasinsInputError

BUILTIN_DIR = Path(__file__).with_name("templates")
FLOOR_UNITS = ("section_year", "agreement_year")

#: formula name -> (function, default parameters); filled by :func:`register_formula`.
FORMULAS: dict[str, tuple[Callable, dict[str, Any]]] = {}


def register_formula(name: str, defaults: dict[str, Any]) -> Callable[[Callable], Callable]:
    """Register a settlement formula with its default parameters (decorator).

    The function is called as ``f(ctx)`` with a :class:`YearContext`
    and returns transfers; see :mod:`basins.settlement`.
    """
    def deco(fn: Callable) -> Callable:
        FORMULAS[name] = (fn, dict(defaults))
        return fn
    return deco


@dataclass(frozen=True)
class Template:
    """A policy template: which formula, its parameters and the floor amount."""

    id: str
    name: str
    formula: str
    floor_yuan: Decimal
    floor_per: str
    parameters: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def floor_for(self, n_sections: int) -> Decimal:
        """Minimum annual amount of an agreement with ``n_sections`` sections."""
        return self.floor_yuan * (n_sections if self.floor_per == "section_year" else 1)

    def function(self) -> tuple[Callable, dict[str, Any]]:
        """The formula and its parameters (defaults overlaid with this template's)."""
        fn, defaults = resolve_formula(self.formula, self.source)
        params = dict(defaults)
        params.update(self.parameters)
        return fn, params


def resolve_formula(name: str, source: str = "") -> tuple[Callable, dict[str, Any]]:
    """Look up a registered formula or import ``module:function``."""
    if name in FORMULAS:
        return FORMULAS[name]
    if ":" in name:
        mod, _, fn_name = name.partition(":")
        try:
            fn = getattr(importlib.import_module(mod), fn_name)
        except (ImportError, AttributeError) as exc:
            raise BasinsInputError(f"{source}: formula {name!r} cannot be imported ({exc}).") from exc
        return fn, dict(getattr(fn, "defaults", {}))
    raise BasinsInputError(f"{source}: unknown formula {name!r}; known: {', '.join(sorted(FORMULAS))}"
                           " (or give 'package.module:function').")


def template_from_dict(d: dict, source: str = "<dict>") -> Template:
    """Validate a template mapping; errors name the source and the field."""
    if not isinstance(d, dict):
        raise BasinsInputError(f"{source}: a template must be a mapping, got {type(d).__name__}.")
    for key in ("id", "formula"):
        if not d.get(key) or not isinstance(d[key], str):
            raise BasinsInputError(f"{source}: field {key!r} is missing or not text.")
    floor = d.get("floor") or {"amount": 0, "per": "agreement_year"}
    if not isinstance(floor, dict):
        raise BasinsInputError(f"{source}: field 'floor' must be {{amount: ..., per: ...}}.")
    try:
        amount = parse_yuan(floor.get("amount", 0))
    except ValueError as exc:
        raise BasinsInputError(f"{source}: field 'floor.amount': {exc}.") from exc
    if amount < 0:
        raise BasinsInputError(f"{source}: field 'floor.amount' is negative.")
    per = floor.get("per", "agreement_year")
    if per not in FLOOR_UNITS:
        raise BasinsInputError(f"{source}: field 'floor.per' is {per!r}; use one of {FLOOR_UNITS}.")
    params = d.get("parameters") or {}
    if not isinstance(params, dict):
        raise BasinsInputError(f"{source}: field 'parameters' must be a mapping.")
    t = Template(id=d["id"], name=str(d.get("name") or d["id"]), formula=d["formula"],
                 floor_yuan=amount, floor_per=per, parameters=params, source=source)
    _, defaults = resolve_formula(t.formula, source)
    unknown = sorted(set(params) - set(defaults)) if defaults else []
    if unknown:
        raise BasinsInputError(f"{source}: unknown parameter(s) {unknown} for formula "
                               f"{t.formula!r}; known: {sorted(defaults)}.")
    return t


def load_template(path: str | os.PathLike) -> Template:
    """Read and validate one template YAML file."""
    path = Path(path)
    try:
        st_ = path.stat()
    except FileNotFoundError as exc:
        raise BasinsInputError(f"{path}: template file not found.") from exc
    return _load_template(str(path), st_.st_mtime_ns, st_.st_size)


@lru_cache(maxsize=256)
def _load_template(path: str, mtime_ns: int, size: int) -> Template:
    """:func:`load_template`, parsed once per file version (YAML parsing is slow)."""
    import yaml

    try:
        d = yaml.load(Path(path).read_text(encoding="utf-8"),
                      Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError as exc:
        raise BasinsInputError(f"{path}: template file not found.") from exc
    except yaml.YAMLError as exc:
        raise BasinsInputError(f"{path}: not valid YAML ({exc}).") from exc
    return template_from_dict(d, path)


def load_templates(*dirs: str | os.PathLike) -> dict[str, Template]:
    """Built-in templates, then those in ``$BASINS_TEMPLATES`` and ``dirs`` (later wins)."""
    folders = [BUILTIN_DIR]
    env = os.environ.get("BASINS_TEMPLATES", "")
    folders += [Path(p) for p in env.split(os.pathsep) if p]
    folders += [Path(d) for d in dirs]
    out: dict[str, Template] = {}
    for f in folders:
        for p in sorted(Path(f).glob("*.yaml")):
            t = load_template(p)
            out[t.id] = t
    return out


# ---------------------------------------------------------------------------
# what a formula receives and returns
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class SectionYear:
    """One section of an agreement in one year, as a formula sees it."""

    section_id: str
    level: str                          # province | city | county (from discovery)
    target: str                         # target class I..V
    water: str                          # river | lake
    parameters: dict[str, Any]
    months: tuple[str, ...]             # months (YYYY-MM) the agreement is in force
    monthly: dict[str, str | None]      # month -> class, None when no data
    means: dict[str, Decimal]           # annual mean mg/L per indicator
    means_prev: dict[str, Decimal]      # previous year's
    annual_class: str | None
    annual_class_prev: str | None


@dataclass
class YearContext:
    """Everything a formula needs for one agreement-year."""

    agreement: Any                      # basins.agreements.Agreement
    year: int
    params: dict[str, Any]
    sections: list[SectionYear]
    upstream_province: str = ""
    incidents: list[dict] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=dict)   # carried to the next year
    flags: list[tuple[str, str, str]] = field(default_factory=list)  # (period, section, text)

    def flag(self, period: str, section_id: str, text: str) -> None:
        self.flags.append((period, section_id, text))


@dataclass(frozen=True)
class Flow:
    """A transfer a formula decides. ``payer``/``payee`` are ``upstream``,
    ``downstream`` (the section's or agreement's side, split by shares) or a
    party token such as ``province:江西省``."""

    period: str
    stage: str          # monthly | yearly
    section_id: str     # "" for agreement-level flows
    payer: str
    payee: str
    fen: int
    rule: str
    reason: str


def _fen(yuan: Decimal) -> int:
    from .money import to_fen
    return to_fen(yuan)


def _round_fen(fen: Decimal) -> int:
    """A Decimal number of fen rounded half to even."""
    from decimal import ROUND_HALF_EVEN
    return int(Decimal(fen).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _signed_flow(period, stage, sid, signed_fen: int, rule, reason) -> list[Flow]:
    """Positive: downstream pays upstream; negative: upstream pays downstream."""
    if signed_fen == 0:
        return []
    if signed_fen > 0:
        return [Flow(period, stage, sid, "downstream", "upstream", signed_fen, rule, reason)]
    return [Flow(period, stage, sid, "upstream", "downstream", -signed_fen, rule, reason)]


# ---------------------------------------------------------------------------
# 1. Shandong county-level
# ---------------------------------------------------------------------------
@register_formula("shandong_county", dict(
    base_month_city="100万", base_month_county="85万",
    float_table={"2": 0.2, "1": 0.1, "0": 0.0, "-1": -0.1, "-2": -0.2}, float_max=0.2,
    missing_month="skip"))
def shandong_county(ctx: YearContext) -> list[Flow]:
    """Monthly: better than target → downstream pays upstream the base; worse →
    upstream pays downstream; equal → nothing. Yearly: the months are netted per
    section and the net floats by the annual class (``float_table``, capped at
    ``float_max``). Base: 100万/month cross-city, 85万 within-city; a
    cross-province section takes agreement amount / 12 / number of sections."""
    from .quality import better

    p = ctx.params
    a = ctx.agreement
    if p["missing_month"] not in ("skip", "worse"):
        raise BasinsInputError(f"template {a.template}: missing_month must be skip or worse.")
    flows: list[Flow] = []
    for s in ctx.sections:
        base = monthly_base(s.level, a.annual_amount, len(ctx.sections), p)
        net = 0
        n_better = n_worse = 0
        for m in s.months:
            cls = s.monthly.get(m)
            if cls is None:
                ctx.flag(m, s.section_id, "no monitoring data this month"
                         + ("; counted as worse than target" if p["missing_month"] == "worse"
                            else "; no transfer"))
                if p["missing_month"] == "skip":
                    continue
                d = -1
            else:
                d = better(cls, s.target)
            if d == 0:
                continue
            sign = 1 if d > 0 else -1
            n_better += d > 0
            n_worse += d < 0
            net += sign * base
            flows += _signed_flow(m, "monthly", s.section_id, sign * base, "monthly class",
                                  f"class {cls or 'missing'} vs target {s.target}")
        if net == 0:
            continue
        frac = Decimal(0)
        if s.annual_class is not None:
            d = max(-2, min(2, better(s.annual_class, s.target)))
            frac = Decimal(str(p["float_table"][str(d)]))
            cap = Decimal(str(p["float_max"]))
            frac = max(-cap, min(cap, frac))
        else:
            ctx.flag(str(ctx.year), s.section_id, "no annual class; no float applied")
        sign = 1 if net > 0 else -1
        total = _round_fen(Decimal(abs(net)) * (1 + frac * sign))
        flows += _signed_flow(str(ctx.year), "yearly", s.section_id, sign * total,
                              "yearly settlement",
                              f"{n_better} months better, {n_worse} worse; annual class "
                              f"{s.annual_class or 'n/a'} vs {s.target}: float {frac:+.0%}")
    return flows


#: columns of the section-year table a batch formula receives
BATCH_COLUMNS = ["key", "year", "section_id", "level", "target", "months", "annual_class",
                 "params_id", "annual_amount", "n_sections"]


def shandong_county_batch(rows: pd.DataFrame, grid, params: dict[int, dict]
                          ) -> tuple[pd.DataFrame, list[tuple]]:
    """:func:`shandong_county` for many section-years at once (columnar, same results).

    Parameters
    ----------
    rows
        One row per section-year (:data:`BATCH_COLUMNS`): ``key`` identifies the
        agreement-year, ``months`` is the tuple of months in force, ``params_id``
        indexes ``params``, ``n_sections`` counts the agreement's settled sections.
    grid : basins.quality.MonthGrid
        Monthly class ranks per section and month.
    params
        Effective parameters by ``params_id``.

    Returns
    -------
    flows : pandas.DataFrame
        ``row`` (index into ``rows``), ``period``, ``stage``, ``signed_fen``
        (positive: downstream pays upstream), ``rule``, ``reason`` (text columns
        may be categorical).
    flags : list of (row, period, text)
    """
    from .quality import CLASSES, RANK

    for p in params.values():
        if p["missing_month"] not in ("skip", "worse"):
            raise BasinsInputError("template shandong_county: missing_month must be skip or "
                                   "worse.")
    n = len(rows)
    # months: each distinct tuple of months once, as codes into the grid
    tcode, tuniq = pd.factorize(rows.months.to_numpy()) if n else (np.zeros(0, np.int64), [])
    lens = np.array([len(t) for t in tuniq], dtype=np.int64)
    width = int(lens.max()) if len(lens) else 0
    mtext = sorted({m for t in tuniq for m in t})  # every month in force, text order
    mpos = {m: k for k, m in enumerate(mtext)}
    tmat = np.zeros((len(tuniq), width), dtype=np.int64)
    for k, t in enumerate(tuniq):
        tmat[k, :len(t)] = [mpos[m] for m in t]
    gcol = np.array([grid.month_index.get(m, -1) for m in mtext], dtype=np.int64)
    nm = lens[tcode] if n else np.zeros(0, np.int64)
    r = np.repeat(np.arange(n), nm)
    j = np.arange(len(r)) - np.repeat(np.cumsum(nm) - nm, nm)
    month = tmat[tcode[r], j]                      # code into mtext
    srow = _mapped(rows.section_id, lambda x: grid.section_index.get(x, -1))
    gs, gm = srow[r], gcol[month]
    ok = (gs >= 0) & (gm >= 0)
    cr = np.zeros(len(r), dtype=np.int64)
    cr[ok] = grid.rank[gs[ok], gm[ok]]
    have = cr > 0
    tgt_row = _mapped(rows.target, RANK.__getitem__)
    tr = tgt_row[r]
    d = np.where(have, tr - cr, 0)
    worse_row = _mapped(rows.params_id, lambda i: params[i]["missing_month"] == "worse", False)
    worse_if_missing = worse_row[r]
    d = np.where(~have & worse_if_missing, -1, d)
    flags: list[tuple] = [
        (int(r[i]), mtext[month[i]], "no monitoring data this month"
         + ("; counted as worse than target" if worse_if_missing[i] else "; no transfer"))
        for i in np.flatnonzero(~have).tolist()]
    sign = np.sign(d)
    # the monthly base per distinct (level, amount, number of sections, parameters)
    parts = [pd.factorize(rows[c].to_numpy(dtype=object))
             for c in ("level", "annual_amount", "n_sections", "params_id")]
    combo = np.zeros(n, dtype=np.int64)
    for c, u in parts:
        combo = combo * max(len(u), 1) + c
    bc, bu = pd.factorize(combo)
    base_row = np.zeros(len(bu), dtype=np.int64)
    for k, x in enumerate(bu.tolist()):
        idx = []
        for c, u in reversed(parts):
            x, rem = divmod(x, max(len(u), 1))
            idx.append(u[rem])
        lv, amt, n_s, p_id = idx[::-1]
        base_row[k] = monthly_base(lv, amt, int(n_s), params[int(p_id)])
    base_row = base_row[bc]
    mov = np.flatnonzero(sign != 0)
    amount = sign[mov] * base_row[r[mov]]
    # reason "class C vs target T" per (class or missing, target): a code into a small table
    labels = ("missing",) + CLASSES
    reason_code = cr[mov] * 7 + tr[mov]
    rc, ru = pd.factorize(reason_code, sort=True)
    reasons = [f"class {labels[x // 7]} vs target {CLASSES[x % 7 - 1]}" for x in ru.tolist()]
    k_m = len(mov)
    # yearly settlement per section-year: the net floats by the annual class
    net = np.zeros(n, dtype=np.int64)
    np.add.at(net, r[mov], amount)
    n_better = np.bincount(r[sign > 0], minlength=n)
    n_worse = np.bincount(r[sign < 0], minlength=n)
    years = rows.year.to_numpy()
    pid = rows.params_id.to_numpy()
    moved = np.flatnonzero(net != 0)
    ac_rank = _mapped(rows.annual_class, lambda c: RANK.get(c, 0) if isinstance(c, str) else 0,
                      na=0)[moved]
    for i in moved[ac_rank == 0].tolist():
        flags.append((i, str(years[i]), "no annual class; no float applied"))
    dd = np.clip(tgt_row[moved] - ac_rank, -2, 2)
    sg = np.where(net[moved] > 0, 1, -1)
    # the float per (params, class difference, direction) as an exact ratio num / den
    # of (1 + float × direction); key -1: no annual class, no float
    frac_key = np.where(ac_rank == 0, -1, (pid[moved] * 5 + (dd + 2)) * 2 + (sg > 0))
    fk, fu = pd.factorize(frac_key, sort=True)
    fracs, ratios = [], []
    for x in fu.tolist():
        f, q = Decimal(0), Decimal(1)
        if x >= 0:
            p = params[x // 10]
            cap = Decimal(str(p["float_max"]))
            f = max(-cap, min(cap, Decimal(str(p["float_table"][str((x // 2) % 5 - 2)]))))
            q = 1 + f * (1 if x % 2 else -1)
        fracs.append(f)
        ratios.append(q.as_integer_ratio())
    absnet = np.abs(net[moved])
    num = np.array([nu for nu, _ in ratios], dtype=object)[fk]
    den = np.array([de for _, de in ratios], dtype=object)[fk]
    if len(moved) and max(max(t) for t in ratios) < 2**20 and int(absnet.max()) < 2**40:
        total = _round_half_even(absnet * num.astype(np.int64), den.astype(np.int64))
    else:  # exact Python integers when int64 could overflow
        total = np.array([_round_fen(Decimal(int(a_)) * Decimal(nu) / Decimal(de))
                          for a_, nu, de in zip(absnet.tolist(), num, den)], dtype=np.int64)
    keep = np.flatnonzero(total != 0)
    # one table of period, stage, rule and reason texts for monthly and yearly flows
    mk = moved[keep]
    y_u, y_code = np.unique(years[mk], return_inverse=True)
    periods = mtext + [str(y) for y in y_u.tolist()]
    # the yearly reason per distinct (months better, worse, annual class, target, float)
    reason_code_y = {x: k for k, x in enumerate(reasons)}
    tk = (((n_better[mk] * 13 + n_worse[mk]) * 7 + ac_rank[keep]) * 7 + tgt_row[mk]) \
        * max(len(fu), 1) + fk[keep]
    tc, tu = pd.factorize(tk)
    tcode = np.zeros(len(tu), dtype=np.int64)
    for k, x in enumerate(tu.tolist()):
        x, f_i = divmod(x, max(len(fu), 1))
        x, t_r = divmod(x, 7)
        x, a_r = divmod(x, 7)
        nb, nw = divmod(x, 13)
        t = (f"{nb} months better, {nw} worse; annual class "
             f"{CLASSES[a_r - 1] if a_r else 'n/a'} vs {CLASSES[t_r - 1]}: float "
             f"{fracs[f_i]:+.0%}")
        tcode[k] = reason_code_y.setdefault(t, len(reason_code_y))
    rcode_y = tcode[tc]
    n_y = len(keep)
    flows = pd.DataFrame({
        "row": np.concatenate([r[mov], moved[keep]]),
        "period": pd.Categorical.from_codes(
            np.concatenate([month[mov], len(mtext) + y_code.ravel()]).astype(np.int64),
            periods),
        "stage": pd.Categorical.from_codes(np.repeat([0, 1], [k_m, n_y]),
                                           ["monthly", "yearly"]),
        "signed_fen": np.concatenate([amount, (sg[keep] * total[keep])]).astype(np.int64),
        "rule": pd.Categorical.from_codes(np.repeat([0, 1], [k_m, n_y]),
                                          ["monthly class", "yearly settlement"]),
        "reason": pd.Categorical.from_codes(np.concatenate([rc, rcode_y]).astype(np.int64),
                                            list(reason_code_y))})
    return flows, flags


def _mapped(col: pd.Series, fn, na=-1) -> np.ndarray:
    """``fn`` of every value of a column, called once per distinct value."""
    c, u = pd.factorize(col.to_numpy(dtype=object))
    out = np.array([fn(x) for x in u] + [na])
    return out[c]  # code -1 (missing) takes ``na``


def _round_half_even(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` rounded half to even, in integers (``den > 0``, ``num >= 0``)."""
    q, rem = np.divmod(num, den)
    twice = 2 * rem
    up = (twice > den) | ((twice == den) & (q % 2 == 1))
    return q + up


shandong_county.batch = shandong_county_batch  # type: ignore[attr-defined]


def monthly_base(level: str, annual_amount: Decimal, n_sections: int, p: dict) -> int:
    """Monthly base amount in fen for a Shandong county-level section."""
    from .money import parse_yuan, to_fen

    if level == "city":
        return to_fen(parse_yuan(p["base_month_city"]))
    if level == "county":
        return to_fen(parse_yuan(p["base_month_county"]))
    return to_fen(Decimal(annual_amount) / 12 / max(n_sections, 1))


def shandong_exposure(level: str, annual_amount: Decimal, n_sections: int, p: dict) -> int:
    """Full-scope exposure of one section-year at its maximum: 12 × base × (1 + float_max)."""
    return _round_fen(Decimal(12 * monthly_base(level, annual_amount, n_sections, p))
                      * (1 + Decimal(str(p["float_max"]))))


# ---------------------------------------------------------------------------
# 2. Shandong–Henan provincial (刘庄)
# ---------------------------------------------------------------------------
@register_formula("shandong_henan", dict(
    reference_class="III", class_step_amount="6000万", index_point_amount="100万",
    index_indicators=["COD", "NH3-N", "TP"], index_rounding="truncate"))
def shandong_henan(ctx: YearContext) -> list[Flow]:
    """Basic term: per class the annual mean is better than III, downstream pays
    upstream ``class_step_amount``; per class worse, upstream pays downstream.
    Change term: annual index I = mean over ``index_indicators`` of (annual mean /
    class III limit); points = (I_prev − I) / I_prev × 100, rounded by
    ``index_rounding``; per point down (improvement) downstream pays upstream
    ``index_point_amount``, per point up upstream pays downstream."""
    from decimal import ROUND_DOWN, ROUND_HALF_EVEN

    from .money import parse_yuan
    from .quality import better

    p = ctx.params
    ref = p["reference_class"]
    step = parse_yuan(p["class_step_amount"])
    point = parse_yuan(p["index_point_amount"])
    rounding = {"truncate": ROUND_DOWN, "half_even": ROUND_HALF_EVEN}.get(p["index_rounding"])
    if rounding is None:
        raise BasinsInputError("template shandong_henan: index_rounding must be truncate or "
                               "half_even.")
    year = str(ctx.year)
    flows: list[Flow] = []
    for s in ctx.sections:
        if s.annual_class is None:
            ctx.flag(year, s.section_id, "no annual mean: basic term not settled")
        else:
            d = better(s.annual_class, ref)
            flows += _signed_flow(year, "yearly", s.section_id, _fen(step * d), "basic term",
                                  f"annual class {s.annual_class} vs {ref}: {d:+d} class(es)")
        idx = index_of(s.means, p["index_indicators"], ref, s.water)
        prev = index_of(s.means_prev, p["index_indicators"], ref, s.water)
        if idx is None or prev is None or prev == 0:
            ctx.flag(year, s.section_id, "index of this or the previous year missing: change "
                     "term not settled")
            continue
        pts = ((prev - idx) / prev * 100).quantize(Decimal(1), rounding=rounding)
        flows += _signed_flow(year, "yearly", s.section_id, _fen(point * pts), "change term",
                              f"index {prev:.4f} → {idx:.4f}: {-pts:+} points")
    return flows


def index_of(means: dict[str, Decimal], indicators: list[str], ref: str,
             water: str = "river") -> Decimal | None:
    """Mean of annual mean / reference-class limit over the indicators (None if any missing)."""
    from .quality import limit

    if not all(i in means for i in indicators):
        return None
    return sum((means[i] / limit(i, ref, water) for i in indicators), Decimal(0)) / len(indicators)


# ---------------------------------------------------------------------------
# 3. Jiangxi
# ---------------------------------------------------------------------------
@register_formula("jiangxi", dict(
    weight_class=0.4, weight_concentration=0.3, weight_compliance=0.3,
    concentration_indicators=["COD", "NH3-N", "TP"],
    target_weight={"I": 1.4, "II": 1.2, "III": 1.0, "IV": 0.8, "V": 0.6},
    reward_by_signed_year={"2018": "600万", "2020": "500万", "9999": "400万"},
    reward_payer="province", clawback_after_years_below_target=2))
def jiangxi(ctx: YearContext) -> list[Flow]:
    """Yearly compensation from monthly assessment.

    Per section, performance p in [−1, 1] = weight_class × class score (annual
    class vs target, ±1 per class, clamped) + weight_concentration × mean over
    indicators of clamp((limit − mean) / limit) + weight_compliance × (2 × share of
    assessed months meeting the target − 1). Sections are weighted by ``flow``
    (section parameter: multi-year mean water resources of the nearest station,
    default 1) × ``target_weight``. P = weighted mean; the agreement amount × |P|
    moves downstream → upstream when P > 0, upstream → downstream when P < 0.

    Reward: the province pays the upstream party the amount for the year the
    agreement was signed (first key ≥ that year), unless a section's annual class
    dropped from the previous year or an incident of level I–III happened.
    After ``clawback_after_years_below_target`` consecutive years with a section
    below its target, rewards already paid are clawed back (upstream pays the
    province) and the count restarts.
    """
    from .money import parse_yuan
    from .quality import RANK, better, limit

    p = ctx.params
    a = ctx.agreement
    year = str(ctx.year)
    clamp = lambda x: max(Decimal(-1), min(Decimal(1), x))  # noqa: E731
    wc, wk, wm = (Decimal(str(p[k])) for k in ("weight_class", "weight_concentration",
                                               "weight_compliance"))
    perfs: list[tuple[SectionYear, Decimal, Decimal]] = []
    below = False
    dropped = False
    for s in ctx.sections:
        assessed = [m for m in s.months if s.monthly.get(m) is not None]
        for m in s.months:
            if s.monthly.get(m) is None:
                ctx.flag(m, s.section_id, "no monitoring data this month; not assessed")
        if not assessed or s.annual_class is None:
            ctx.flag(year, s.section_id, "no data this year; section left out of the weighting")
            continue
        met = sum(1 for m in assessed if better(s.monthly[m], s.target) >= 0)
        rate = Decimal(met) / len(assessed)
        cls_score = clamp(Decimal(better(s.annual_class, s.target)))
        inds = [i for i in p["concentration_indicators"] if i in s.means]
        conc = (sum((clamp((limit(i, s.target, s.water) - s.means[i]) / limit(i, s.target, s.water))
                     for i in inds), Decimal(0)) / len(inds)) if inds else Decimal(0)
        perf = wc * cls_score + wk * conc + wm * (2 * rate - 1)
        flow = Decimal(str(s.parameters.get("flow", 1)))
        if flow <= 0:
            raise BasinsInputError(f"agreement {a.agreement_id}, section {s.section_id}: "
                                   "parameter flow must be positive.")
        w = flow * Decimal(str(p["target_weight"][s.target]))
        perfs.append((s, w, perf))
        below |= better(s.annual_class, s.target) < 0
        if s.annual_class_prev is not None and RANK[s.annual_class] > RANK[s.annual_class_prev]:
            dropped = True
    flows: list[Flow] = []
    den = sum((w for _, w, _ in perfs), Decimal(0))
    for s, w, perf in perfs:
        amount = _fen(a.annual_amount * w / den * abs(perf))
        flows += _signed_flow(year, "yearly", s.section_id, amount if perf > 0 else -amount,
                              "compensation", f"performance {perf:+.4f}, weight {w / den:.4f} "
                              f"(flow × target {s.target})")
    # reward and claw-back
    paid = int(ctx.state.get("rewards_paid_fen", _fen(parse_yuan(a.parameters.get(
        "rewards_paid_before", 0)))))
    streak = ctx.state.get("years_below", 0) + 1 if below else 0
    if p["reward_payer"] == "province":
        if not ctx.upstream_province:
            raise BasinsInputError(f"agreement {a.agreement_id}: the province paying the reward "
                                   "is unknown; pass the counties to settle() or set the "
                                   "parameter reward_payer (e.g. province:江西省).")
        payer = f"province:{ctx.upstream_province}"
    else:
        payer = str(p["reward_payer"])
    incident = [i for i in ctx.incidents if str(i.get("level", "")).upper() in ("I", "II", "III")]
    if streak >= int(p["clawback_after_years_below_target"]):
        if paid:
            flows.append(Flow(year, "yearly", "", "upstream", payer, paid, "claw-back",
                              f"{streak} consecutive years below target: rewards paid are "
                              "returned"))
        paid = 0
        streak = 0
    elif dropped:
        ctx.flag(year, "", "no reward: a section's annual class dropped from last year")
    elif incident:
        ctx.flag(year, "", f"no reward: pollution incident level {incident[0].get('level')}")
    else:
        amount = None
        for key in sorted(p["reward_by_signed_year"], key=int):
            if a.signed.year <= int(key):
                amount = parse_yuan(p["reward_by_signed_year"][key])
                break
        if amount:
            flows.append(Flow(year, "yearly", "", payer, "upstream", _fen(amount),
                              "provincial reward", f"agreement signed {a.signed.year}"))
            paid += _fen(amount)
    ctx.state["rewards_paid_fen"] = paid
    ctx.state["years_below"] = streak
    return flows


# ---------------------------------------------------------------------------
# 4. Xin'an River
# ---------------------------------------------------------------------------
@register_formula("xinan", dict(K0=0.85, indicators={"CODMn": 0.25, "NH3-N": 0.25, "TP": 0.25,
                                                     "TN": 0.25}))
def xinan(ctx: YearContext) -> list[Flow]:
    """P = K0 × Σ k_i · C_i / C_i0 over the indicators, C_i the annual mean and
    C_i0 the baseline (section parameter ``baseline``: {indicator: mg/L}).
    P ≤ 1 → downstream pays upstream the agreed amount (split equally over the
    sections); P > 1 → upstream pays downstream."""
    from .money import split_fen

    p = ctx.params
    a = ctx.agreement
    year = str(ctx.year)
    k0 = Decimal(str(p["K0"]))
    weights = {i: Decimal(str(w)) for i, w in p["indicators"].items()}
    n = len(ctx.sections)
    parts = split_fen(_fen(a.annual_amount), [Decimal(1) / n] * (n - 1)
                      + [1 - Decimal(1) / n * (n - 1)]) if n else []
    flows: list[Flow] = []
    for s, amount in zip(ctx.sections, parts):
        base = s.parameters.get("baseline") or {}
        missing = [i for i in weights if i not in base]
        if missing:
            raise BasinsInputError(f"agreement {a.agreement_id}, section {s.section_id}: "
                                   f"section parameter baseline lacks {missing} (mg/L).")
        if not all(i in s.means for i in weights):
            ctx.flag(year, s.section_id, "annual mean of an indicator missing: not settled")
            continue
        P = k0 * sum((w * s.means[i] / Decimal(str(base[i])) for i, w in weights.items()),
                     Decimal(0))
        sign = 1 if P <= 1 else -1
        flows += _signed_flow(year, "yearly", s.section_id, sign * amount, "P index",
                              f"P = {P:.4f} ({'≤' if P <= 1 else '>'} 1)")
    return flows
