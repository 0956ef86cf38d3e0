"""Settlement (`basins settle`): monthly accounting and yearly settlement into a ledger.

:func:`settle` runs each agreement's template formula (:mod:`basins.policies`)
year by year on the monitoring classes (:mod:`basins.quality`) and writes one
ledger row per transfer: period, stage (``monthly`` accounting or ``yearly``
settlement), agreement, section, payer, payee, amount, rule and reason.

Money is integer fen throughout. A side that is a boundary river (two bank
counties) is split by shares (equal unless the agreement's section parameters
``upstream_shares`` / ``downstream_shares`` say otherwise) with an exact
largest-remainder split, so every period conserves money: what is paid equals
what is received, to the fen. Reruns give byte-identical files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from datetime import date
from decimal import Decimal
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from . import settings as st
from .agreements import Agreement, SectionRef
from .money import fen_to_yuan, split_fen
from .policies import Flow, SectionYear, YearContext, load_templates, monthly_base, \
    shandong_exposure
from .quality import annual_means_by_year, classes_of_means, monthly_classes
from .read import BasinsInputError

LEDGER_COLUMNS = ["period", "stage", "agreement_id", "template", "section_id", "payer",
                  "payer_name", "payee", "payee_name", "amount_fen", "amount_yuan", "rule",
                  "reason"]
POSITION_COLUMNS = ["stage", "period", "level", "party", "name", "paid_fen", "received_fen",
                    "net_fen"]
FLAG_COLUMNS = ["period", "agreement_id", "section_id", "flag"]


@dataclass
class Settlement:
    """Result of :func:`settle`."""

    ledger: pd.DataFrame
    positions: pd.DataFrame
    flags: pd.DataFrame
    exposure: pd.DataFrame
    county_positions: gpd.GeoDataFrame

    def conserved(self) -> bool:
        """True when every period's payments equal its receipts (per level)."""
        if self.positions.empty:
            return True
        s = self.positions.groupby(["stage", "period", "level"]).net_fen.sum()
        return bool((s == 0).all())


def _shares(ref: SectionRef, side: str) -> list[Decimal]:
    parties = ref.upstream if side == "upstream" else ref.downstream
    given = ref.parameters.get(f"{side}_shares")
    if given is None:
        n = len(parties)
        return [Decimal(1) / n] * (n - 1) + [1 - Decimal(1) / n * (n - 1)]
    vals = given if isinstance(given, (list, tuple)) else str(given).split(st.SEP)
    shares = [Decimal(str(v)) for v in vals]
    if len(shares) != len(parties) or sum(shares) != 1 or any(x < 0 for x in shares):
        raise BasinsInputError(f"{ref.where}: {side}_shares {given!r} must give one share per "
                               f"{side} party ({len(parties)}) summing to 1.")
    return shares


def _months(year: int, a: Agreement) -> tuple[str, ...]:
    return _months_between(year, a.valid_from, a.valid_to)


@lru_cache(maxsize=4096)
def _months_between(year: int, valid_from: date, valid_to: date) -> tuple[str, ...]:
    """Months of ``year`` (``YYYY-MM``) that overlap the validity period."""
    out = []
    for m in range(1, 13):
        start = date(year, m, 1)
        end = date(year + (m == 12), m % 12 + 1, 1)
        if valid_from < end and valid_to >= start:
            out.append(f"{year:04d}-{m:02d}")
    return tuple(out)


def settle(
    agreements: list[Agreement],
    monitoring: pd.DataFrame,
    years: list[int] | range,
    sections: gpd.GeoDataFrame | None = None,
    counties: gpd.GeoDataFrame | None = None,
    templates: dict | None = None,
    incidents: list[dict] | None = None,
    settings: st.Settings = st.DEFAULT,
    batch: bool = True,
) -> Settlement:
    """Settle agreements for the given years.

    Parameters
    ----------
    agreements
        From :func:`basins.agreements.read_agreements`.
    monitoring
        From :func:`basins.quality.read_monitoring` (``section_id, month,
        indicator, value_mg_l``).
    years
        Years to settle, in order (state such as rewards paid carries over).
    sections, counties
        Discovered sections (for section levels and to resolve references by
        coordinates or river and parties) and counties (names, cities and
        provinces for net positions). Optional for agreements that reference
        sections by id with county-independent templates.
    templates
        Templates by id (default: built-ins and ``$BASINS_TEMPLATES``).
    incidents
        Pollution incidents: dicts with ``agreement_id``, ``date`` and ``level``
        (I–IV, I the gravest); levels I–III block the Jiangxi reward.
    batch
        Use a formula's columnar version when it has one (``formula.batch``, e.g.
        Shandong county-level): same ledger, flags and positions, much faster on
        thousands of sections. ``False`` runs every formula agreement by agreement.
    """
    templates = templates if templates is not None else load_templates()
    level_of: dict[str, str] = {}
    if sections is not None:
        level_of = dict(zip(sections.section_id, sections.level))
    names, city_of, prov_of = {}, {}, {}
    if counties is not None:
        ids = counties.county_id.astype(str)
        names = dict(zip(ids, counties.county.astype(str)))
        city_of = dict(zip(ids, counties.city.astype(str)))
        prov_of = dict(zip(ids, counties.province.astype(str)))
    # resolve references that are not by id
    resolved: dict[tuple[str, int], str] = {}
    flags: list[dict] = []
    need = [a for a in agreements if any(r.how != "section_id" for r in a.sections)]
    if need and sections is not None and counties is not None:
        from .agreements import resolve_agreements
        cl = resolve_agreements(need, sections, counties, settings)
        for c in cl.itertuples():
            if c.section_id and (c.agreement_id, c.ref) not in resolved:
                resolved[(c.agreement_id, c.ref)] = c.section_id
    for a in agreements:
        for k, r in enumerate(a.sections):
            if r.how == "section_id":
                resolved[(a.agreement_id, k)] = r.section_id
            elif (a.agreement_id, k) not in resolved:
                flags.append(dict(period="", agreement_id=a.agreement_id, section_id="",
                                  flag=f"{r.where}: section reference not resolved; not settled"))
    water = {resolved[(a.agreement_id, k)]: r.parameters.get("water", "river")
             for a in agreements for k, r in enumerate(a.sections) if (a.agreement_id, k) in resolved}
    monthly = monthly_classes(monitoring, water)
    mclass: dict = {}  # (section, month) -> class, built when a formula needs it
    years = sorted(int(y) for y in years)
    all_years = sorted(set(years) | {y - 1 for y in years})
    by_year = annual_means_by_year(monitoring)
    means = {y: by_year.get(y, {}) for y in all_years}
    aclass = {y: classes_of_means(means[y], water) for y in all_years}
    incidents = incidents or []
    state: dict[str, dict] = {}
    rows: list[tuple] = []
    side_cache: dict = {}
    batch_jobs: dict = {}
    for year in years:
        for a in sorted(agreements, key=lambda x: x.agreement_id):
            months = _months(year, a)
            if not months:
                continue
            tpl = templates.get(a.template)
            if tpl is None:
                raise BasinsInputError(f"agreement {a.agreement_id}: unknown template "
                                       f"{a.template!r}.")
            fn, params = tpl.function()
            params = {**params, **{k: v for k, v in a.parameters.items()
                                   if k != "rewards_paid_before"}}
            batch_fn = getattr(fn, "batch", None) if batch else None
            if batch_fn is not None:  # columnar path: collected now, computed below
                _collect_batch(batch_jobs.setdefault(batch_fn, _BatchJob()), a, year, months,
                               params, resolved, level_of, aclass[year])
                continue
            if not mclass and len(monthly):
                mclass = dict(zip(zip(monthly.section_id.tolist(), monthly.month.tolist()),
                                  monthly["class"].tolist()))
            refs: dict[str, SectionRef] = {}
            secs = []
            for k, r in enumerate(a.sections):
                sid = resolved.get((a.agreement_id, k))
                if not sid:
                    continue
                refs[sid] = r
                w = r.parameters.get("water", "river")
                secs.append(SectionYear(
                    section_id=sid, level=level_of.get(sid, ""), target=r.target_class, water=w,
                    parameters=r.parameters, months=months,
                    monthly={m: mclass.get((sid, m)) for m in months},
                    means=means[year].get(sid, {}), means_prev=means[year - 1].get(sid, {}),
                    annual_class=aclass[year].get(sid), annual_class_prev=aclass[year - 1].get(sid)))
            if not secs:
                continue
            first = a.sections[0]
            up_prov = next((prov_of.get(p, "") for p in first.upstream if p in prov_of),
                           next((p.split(":", 1)[1] for p in first.upstream
                                 if p.startswith("province:")), ""))
            inc = [i for i in incidents if str(i.get("agreement_id")) == a.agreement_id
                   and str(i.get("date", ""))[:4] == str(year)]
            ctx = YearContext(agreement=a, year=year, params=params, sections=secs,
                              upstream_province=up_prov, incidents=inc,
                              state=state.setdefault(a.agreement_id, {}))
            self_pay: dict[tuple[str, str], int] = {}
            for f in fn(ctx):
                rows += _ledger_rows(f, a, refs.get(f.section_id, first), names, self_pay,
                                     side_cache)
            for (sid, party), fen in sorted(self_pay.items()):
                ctx.flag(str(year), sid, _self_pay_flag(party, fen, names))
            flags += [dict(period=p, agreement_id=a.agreement_id, section_id=s, flag=t)
                      for p, s, t in ctx.flags]
    frames = [pd.DataFrame(rows, columns=LEDGER_COLUMNS)]
    for batch_fn, job in batch_jobs.items():
        led, fl = _run_batch(batch_fn, job, monthly, names)
        frames.append(led)
        flags += fl
    nonempty = [f for f in frames if len(f)]  # an empty frame would make columns object
    ledger = pd.concat(nonempty, ignore_index=True) if len(nonempty) > 1 else \
        (nonempty[0] if nonempty else frames[0])
    if len(ledger):
        ledger = _sort_ledger(ledger)
    # one order for flags whichever path made them: by year, agreement, section
    flags.sort(key=lambda f: (f["period"][:4], f["agreement_id"], f["section_id"]))
    positions = net_positions(ledger, city_of, prov_of, names)
    exposure = exposure_report(agreements, resolved, level_of, templates)
    cp = _county_positions(positions, counties)
    fl = pd.DataFrame(flags, columns=FLAG_COLUMNS)
    return Settlement(ledger=ledger, positions=positions, flags=fl, exposure=exposure,
                      county_positions=cp)


# ---------------------------------------------------------------------------
# columnar (batch) path
# ---------------------------------------------------------------------------
@dataclass
class _BatchJob:
    """Section-years collected for one batch formula."""

    rows: list = None  # type: ignore[assignment]
    meta: list = None  # type: ignore[assignment]  # per key: (agreement, year, ref of each row)
    params: dict = None  # type: ignore[assignment]
    per_agreement: dict = None  # type: ignore[assignment]  # id -> (params id, refs, sections)

    def __post_init__(self) -> None:
        self.rows, self.meta, self.params, self.per_agreement = [], [], {}, {}


def _collect_batch(job: _BatchJob, a: Agreement, year: int, months: tuple[str, ...],
                   params: dict, resolved: dict, level_of: dict, aclass: dict) -> None:
    if a.agreement_id not in job.per_agreement:  # the same every year: work it out once
        pkey = repr(sorted(params.items(), key=lambda kv: kv[0]))
        pid = job.params.setdefault(pkey, (len(job.params), params))[0]
        refs: dict[str, SectionRef] = {}
        sids = []
        for k, r in enumerate(a.sections):
            sid = resolved.get((a.agreement_id, k))
            if sid:
                refs[sid] = r  # as the agreement-by-agreement path: the last ref of a section
                sids.append((sid, r, level_of.get(sid, "")))
        job.per_agreement[a.agreement_id] = (pid, refs, sids)
    pid, refs, sids = job.per_agreement[a.agreement_id]
    if not sids:
        return
    key = len(job.meta)
    job.meta.append((a, year, refs, a.sections[0]))
    n = len(sids)
    job.rows.extend((key, year, sid, lv, r.target_class, months, aclass.get(sid), pid,
                     a.annual_amount, n) for sid, r, lv in sids)


def _run_batch(batch_fn, job: _BatchJob, monthly: pd.DataFrame, names: dict
               ) -> tuple[pd.DataFrame, list[dict]]:
    """Run a batch formula and split its flows into ledger rows, as :func:`_ledger_rows`."""
    from .policies import BATCH_COLUMNS

    rows = pd.DataFrame(job.rows, columns=BATCH_COLUMNS)
    params = {pid: p for pid, p in job.params.values()}
    flows, fflags = batch_fn(rows, monthly, params)
    key = rows.key.to_numpy()
    sid_of_row = rows.section_id.to_numpy()
    flags = [dict(period=per, agreement_id=job.meta[key[i]][0].agreement_id,
                  section_id=sid_of_row[i], flag=text) for i, per, text in fflags]
    if len(flows) == 0:
        return pd.DataFrame(columns=LEDGER_COLUMNS), flags
    fr = flows.row.to_numpy().astype(np.int64)
    signed = flows.signed_fen.to_numpy(dtype=np.int64)
    if (signed == 0).any():
        raise BasinsInputError("a batch formula returned a zero amount.")
    # the ref each flow is split by (as the agreement-by-agreement path looks it up)
    ref_objs: list[SectionRef] = []
    ref_id: dict[int, int] = {}
    row_ref = np.empty(len(rows), dtype=np.int64)
    for i, (k, sid) in enumerate(zip(key.tolist(), sid_of_row.tolist())):
        a, year, refs, first = job.meta[k]
        ref = refs.get(sid, first)
        if id(ref) not in ref_id:
            ref_id[id(ref)] = len(ref_objs)
            ref_objs.append(ref)
        row_ref[i] = ref_id[id(ref)]
    flow_ref = row_ref[fr]
    # split each distinct (ref, direction, amount) once
    combo = np.column_stack([flow_ref, np.sign(signed), np.abs(signed)])
    uniq, inv = np.unique(combo, axis=0, return_inverse=True)
    inv = inv.ravel()
    cache: dict = {}
    pieces: list[list[tuple]] = []
    selfs: list[list[tuple]] = []
    for rf, sg, fen in uniq.tolist():
        own_share: list[tuple] = []
        pieces.append(_split_flow("downstream" if sg > 0 else "upstream",
                                  "upstream" if sg > 0 else "downstream", int(fen),
                                  ref_objs[rf], names, cache,
                                  lambda party, amt: own_share.append((party, amt))))
        selfs.append(own_share)
    cnt = np.array([len(p) for p in pieces], dtype=np.int64)
    off = np.concatenate([[0], np.cumsum(cnt)[:-1]])
    flat = [t for p in pieces for t in p]
    per_flow = cnt[inv]
    rep = np.repeat(np.arange(len(fr)), per_flow)
    pidx = np.repeat(off[inv], per_flow) + (np.arange(per_flow.sum()) -
                                            np.repeat(np.cumsum(per_flow) - per_flow, per_flow))
    cols = list(zip(*flat)) if flat else [(), (), (), (), ()]
    payer, payer_name, payee, payee_name, amt = (np.array(c, dtype=object) for c in cols)
    amount = amt[pidx].astype(np.int64) if len(pidx) else np.zeros(0, dtype=np.int64)
    acode, auniq = pd.factorize(amount)
    yuan = np.array([_yuan_text(int(x)) for x in auniq], dtype=object)[acode]
    meta_a = np.array([m[0].agreement_id for m in job.meta], dtype=object)
    meta_t = np.array([m[0].template for m in job.meta], dtype=object)
    fk = key[fr][rep]
    led = pd.DataFrame({
        "period": flows.period.to_numpy()[rep], "stage": flows.stage.to_numpy()[rep],
        "agreement_id": meta_a[fk], "template": meta_t[fk],
        "section_id": sid_of_row[fr][rep], "payer": payer[pidx], "payer_name": payer_name[pidx],
        "payee": payee[pidx], "payee_name": payee_name[pidx], "amount_fen": amount,
        "amount_yuan": yuan, "rule": flows.rule.to_numpy()[rep],
        "reason": flows.reason.to_numpy()[rep]}, columns=LEDGER_COLUMNS)
    # a county on both sides of a section: its own share nets to zero, flagged per year
    own: dict[tuple, int] = {}
    for i in np.flatnonzero(np.array([len(x) > 0 for x in selfs])[inv]).tolist():
        k = int(key[fr[i]])
        for party, a_ in selfs[inv[i]]:
            kk = (k, sid_of_row[fr[i]], party)
            own[kk] = own.get(kk, 0) + int(a_)
    for (k, sid, party), fen in sorted(own.items()):
        a, year, _, _ = job.meta[k]
        flags.append(dict(period=str(year), agreement_id=a.agreement_id, section_id=sid,
                          flag=_self_pay_flag(party, fen, names)))
    return led, flags


LEDGER_ORDER = ["period", "stage", "agreement_id", "section_id", "rule", "payer", "payee"]


def _sort_ledger(ledger: pd.DataFrame) -> pd.DataFrame:
    """Ledger rows in a fixed order (sorted on integer codes: fast on large ledgers)."""
    codes = [pd.factorize(ledger[c], sort=True)[0] for c in LEDGER_ORDER]
    order = np.lexsort(codes[::-1])
    return ledger.iloc[order].reset_index(drop=True)


def _party_name(p: str, names: dict[str, str]) -> str:
    if p.startswith(("province:", "city:")):
        return p.split(":", 1)[1]
    return names.get(p, p)


def _ledger_rows(f: Flow, a: Agreement, ref: SectionRef, names: dict,
                 self_pay: dict[tuple[str, str], int], cache: dict) -> list[tuple]:
    """Turn a formula's flow into ledger rows (tuples in :data:`LEDGER_COLUMNS` order)."""
    if f.fen <= 0:
        raise BasinsInputError(f"formula of {a.template} returned a non-positive amount {f.fen}.")
    return [(f.period, f.stage, a.agreement_id, a.template, f.section_id, payer, payer_name,
             payee, payee_name, amt, _yuan_text(amt), f.rule, f.reason)
            for payer, payer_name, payee, payee_name, amt in
            _split_flow(f.payer, f.payee, f.fen, ref, names, cache,
                        lambda party, amt: _add_self_pay(self_pay, f.section_id, party, amt))]


def _add_self_pay(self_pay: dict, section_id: str, party: str, amt: int) -> None:
    key = (section_id, party)
    self_pay[key] = self_pay.get(key, 0) + amt


def _split_flow(payer_side: str, payee_side: str, fen: int, ref: SectionRef, names: dict,
                cache: dict, on_self) -> list[tuple[str, str, str, str, int]]:
    """Split an amount between the parties of its two sides by shares, exactly.

    Returns ``(payer, payer_name, payee, payee_name, fen)`` pieces without zero
    amounts; a piece a party would pay itself (a county on both sides of a
    border_change section) goes to ``on_self(party, fen)`` instead. ``cache`` (one
    per :func:`settle` call) keeps each reference's parsed shares: (id of the ref,
    side) -> (parties, shares, the ref, held so its id stays its own).
    """
    def side(x: str) -> tuple[tuple[str, ...], list[Decimal]]:
        key = (id(ref), x)
        if key not in cache:  # shares are parsed once per reference and side
            if x == "upstream":
                cache[key] = (ref.upstream, _shares(ref, "upstream"), ref)
            elif x == "downstream":
                cache[key] = (ref.downstream, _shares(ref, "downstream"), ref)
            else:
                cache[key] = ((x,), [Decimal(1)], ref)
        return cache[key][:2]

    payers, ps = side(payer_side)
    payees, qs = side(payee_side)
    out = []
    for payer, part in zip(payers, split_fen(fen, ps)):
        for payee, amt in zip(payees, split_fen(part, qs)):
            if amt == 0:
                continue
            if payer == payee:
                on_self(payer, int(amt))
                continue
            out.append((payer, _party_name(payer, names), payee, _party_name(payee, names),
                        int(amt)))
    return out


def _self_pay_flag(party: str, fen: int, names: dict) -> str:
    return (f"{_party_name(party, names)} is on both sides of the section: its own share "
            f"({fen_to_yuan(fen)} yuan over the year's monthly and yearly rows) nets to zero "
            "and is not in the ledger")


@lru_cache(maxsize=65536)
def _yuan_text(fen: int) -> str:
    return str(fen_to_yuan(fen))


def net_positions(ledger: pd.DataFrame, city_of: dict[str, str], prov_of: dict[str, str],
                  names: dict[str, str] | None = None) -> pd.DataFrame:
    """Paid, received and net (received − paid) fen per party at county, city and
    province level, per period and stage. Each (stage, period, level) sums to zero;
    a transfer within one city or province shows as paid and received by it.

    A ``province:`` party stays itself at every level, a ``city:`` party at county
    and city level, so each level balances.
    """
    names = names or {}
    if ledger.empty:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    prov_of_city = {}
    for k, c in city_of.items():
        prov_of_city.setdefault(c, prov_of.get(k, c))
    parties = pd.unique(pd.concat([ledger.payer, ledger.payee]))
    res = {}
    for p in parties:
        if p.startswith("province:"):
            me = (p, p.split(":", 1)[1])
            res[p] = (me, me, me)
        elif p.startswith("city:"):
            c = p.split(":", 1)[1]
            prov = prov_of_city.get(c, c)
            res[p] = ((p, c), (p, c), (f"province:{prov}", prov))
        else:
            me = (p, names.get(p, p))
            city, prov = city_of.get(p), prov_of.get(p)
            res[p] = (me, (f"city:{city}", city) if city else me,
                      (f"province:{prov}", prov) if prov else me)
    # everything on integer codes: the ledger's text columns are factorised once and
    # each distinct party is looked up once (a groupby on five text keys of six
    # copies of the ledger cost seconds)
    amt = ledger.amount_fen.to_numpy(dtype="int64")
    sc, su = pd.factorize(ledger.stage, sort=True)
    pc, pu = pd.factorize(ledger.period, sort=True)
    levels = ("county", "city", "province")
    level_rank = {lv: i for i, lv in enumerate(sorted(levels))}  # sorted like the text
    pool = sorted({res[p][k] for p in parties for k in range(3)})  # (party, name)
    code_of = {t: i for i, t in enumerate(pool)}
    n_t = len(pool)
    key_parts, paid_parts, recv_parts = [], [], []
    for col, paid in (("payer", True), ("payee", False)):
        cc, cu = pd.factorize(ledger[col])
        for k, lv in enumerate(levels):
            party_code = np.array([code_of[res[p][k]] for p in cu], dtype=np.int64)[cc]
            key_parts.append(((sc.astype(np.int64) * len(pu) + pc) * 3 + level_rank[lv])
                             * n_t + party_code)
            paid_parts.append(amt if paid else np.zeros_like(amt))
            recv_parts.append(np.zeros_like(amt) if paid else amt)
    combined = np.concatenate(key_parts)
    gk, inv = np.unique(combined, return_inverse=True)
    inv = inv.ravel()
    t_code = gk % n_t
    rest = gk // n_t
    lv_code = rest % 3
    rest //= 3
    by_rank = sorted(levels)
    pos = pd.DataFrame({
        "stage": np.asarray(su, dtype=object)[rest // len(pu)],
        "period": np.asarray(pu, dtype=object)[rest % len(pu)],
        "level": np.array(by_rank, dtype=object)[lv_code],
        "party": np.array([t[0] for t in pool], dtype=object)[t_code],
        "name": np.array([t[1] for t in pool], dtype=object)[t_code]})
    for col, parts in (("paid_fen", paid_parts), ("received_fen", recv_parts)):
        sums = np.zeros(len(gk), dtype=np.int64)
        np.add.at(sums, inv, np.concatenate(parts))
        pos[col] = sums
    pos["net_fen"] = pos.received_fen - pos.paid_fen
    return pos[POSITION_COLUMNS].astype({"paid_fen": "int64", "received_fen": "int64",
                                         "net_fen": "int64"})


def exposure_report(agreements: list[Agreement], resolved: dict, level_of: dict,
                    templates: dict) -> pd.DataFrame:
    """Full-scope exposure of Shandong county-level sections: 12 × base × (1 + float_max)."""
    rows = []
    for a in agreements:
        tpl = templates.get(a.template)
        if tpl is None or tpl.formula != "shandong_county":
            continue
        _, params = tpl.function()
        params = {**params, **a.parameters}
        n = len(a.sections)
        for k, _r in enumerate(a.sections):
            sid = resolved.get((a.agreement_id, k), "")
            lv = level_of.get(sid, "")
            base = monthly_base(lv, a.annual_amount, n, params)
            rows.append(dict(agreement_id=a.agreement_id, section_id=sid, level=lv,
                             base_month_fen=base,
                             max_year_fen=shandong_exposure(lv, a.annual_amount, n, params)))
    return pd.DataFrame(rows, columns=["agreement_id", "section_id", "level", "base_month_fen",
                                       "max_year_fen"])


def _county_positions(positions: pd.DataFrame, counties) -> gpd.GeoDataFrame:
    """Yearly net position per county (long form, one row per county and year) for maps."""
    cols = ["county_id", "county", "city", "province", "year", "net_fen", "net_wan", "geometry"]
    if counties is None:
        return gpd.GeoDataFrame(columns=cols, geometry="geometry", crs=st.OUTPUT_CRS)
    y = positions[(positions.stage == "yearly") & (positions.level == "county")]
    years = sorted(y.period.unique())
    net = {(p, per): n for p, per, n in zip(y.party, y.period, y.net_fen)}
    base = counties[["county_id", "county", "city", "province", "geometry"]].to_crs(st.OUTPUT_CRS)
    parts = []
    for yr in years:
        g = base.copy()
        g["year"] = yr
        g["net_fen"] = [int(net.get((i, yr), 0)) for i in g.county_id]
        g["net_wan"] = [f"{Decimal(n) / 1_000_000:.2f}" for n in g.net_fen]
        parts.append(g)
    if not parts:
        return gpd.GeoDataFrame(columns=cols, geometry="geometry", crs=st.OUTPUT_CRS)
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True)[cols], geometry="geometry",
                            crs=st.OUTPUT_CRS)


def write_settlement(result: Settlement, out_dir: str | os.PathLike,
                     prefix: str = "settlement") -> list[Path]:
    """Ledger, positions, flags and exposure as CSV and one Excel workbook, and a
    GeoPackage with ``county_positions`` (yearly net per county) and the ledger."""
    from .output import write_csv, write_gpkg, write_xlsx

    out_dir = Path(out_dir)
    tables = {"ledger": result.ledger, "positions": result.positions, "flags": result.flags,
              "exposure": result.exposure}
    paths = [write_csv(df, out_dir / f"{prefix}_{name}.csv") for name, df in tables.items()]
    paths.append(write_xlsx(tables, out_dir / f"{prefix}.xlsx"))
    paths.append(write_gpkg({"county_positions": result.county_positions,
                             "ledger": result.ledger}, out_dir / f"{prefix}.gpkg"))
    return paths
