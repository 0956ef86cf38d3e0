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
from dataclasses import dataclass, field
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
from .quality import CLASSES, MonitoringCodes, annual_means_by_year, classes_of_means, \
    code_monitoring
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
        return list(_equal_shares(len(parties)))
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
    coded = code_monitoring(monitoring)
    grid = coded.month_grid(water)
    mclass: dict = {}  # (section, month) -> class, built when a formula needs it
    years = sorted(int(y) for y in years)
    all_years = sorted(set(years) | {y - 1 for y in years})
    means_cache: dict[int, dict] = {}

    def means(y: int) -> dict[str, dict[str, Decimal]]:  # Decimal means: only when asked
        if not means_cache:
            means_cache.update(annual_means_by_year(monitoring))
        return means_cache.get(y, {})

    aclass = _annual_classes(coded, water, all_years, means)
    incidents = incidents or []
    state: dict[str, dict] = {}
    rows: list[tuple] = []
    side_cache: dict = {}
    batch_jobs: dict = {}
    run: dict[str, tuple] = {}  # agreement -> (formula, parameters, batch formula)
    in_order = sorted(agreements, key=lambda x: x.agreement_id)
    for a in in_order:
        tpl = templates.get(a.template)
        if tpl is None:
            raise BasinsInputError(f"agreement {a.agreement_id}: unknown template "
                                   f"{a.template!r}.")
        fn, params = tpl.function()
        params = {**params, **{k: v for k, v in a.parameters.items()
                               if k != "rewards_paid_before"}}
        run[a.agreement_id] = (fn, params, getattr(fn, "batch", None) if batch else None)
    for a in in_order:  # columnar path: collected now, computed below
        fn, params, batch_fn = run[a.agreement_id]
        if batch_fn is not None:
            if batch_fn not in batch_jobs:
                batch_jobs[batch_fn] = _BatchJob()
            _collect_batch(batch_jobs[batch_fn], a, params, resolved, level_of)
    for year in years:
        for a in in_order:
            fn, params, batch_fn = run[a.agreement_id]
            if batch_fn is not None:
                continue
            months = _months(year, a)
            if not months:
                continue
            if not mclass and len(coded):
                mclass = grid.classes()
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
                    means=means(year).get(sid, {}), means_prev=means(year - 1).get(sid, {}),
                    annual_class=aclass[year].get(sid), annual_class_prev=aclass[year - 1].get(sid)))
            if not secs:
                continue
            first = a.sections[0]
            up_prov = next((prov_of.get(p, "") for p in first.upstream if p in prov_of),
                           next((p.split(":", 1)[1] for p in first.upstream
                                 if p.startswith("province:")), ""))
            inc = [i for i in incidents if str(i.get("agreement_id")) == a.agreement_id
                   and str(i.get("date", ""))[:4] == str(year)]
            ctx = YearContext(agreement=a, year=year, params=dict(params), sections=secs,
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
    codes: list[dict] = [{}]
    for batch_fn, job in batch_jobs.items():
        led, fl, cd = _run_batch(batch_fn, job, years, aclass, grid, names)
        frames.append(led)
        codes.append(cd)
        flags += fl
    nonempty = [k for k, f in enumerate(frames) if len(f)]  # an empty frame would make
    if len(nonempty) == 1 and codes[nonempty[0]]:  # columns object; one batch: sorted already
        ledger, lcodes = frames[nonempty[0]], codes[nonempty[0]]
    elif nonempty:
        ledger, lcodes = _sort_ledger(pd.concat([frames[k] for k in nonempty],
                                                ignore_index=True))
    else:
        ledger, lcodes = frames[0], None
    # one order for flags whichever path made them: by year, agreement, section
    flags.sort(key=lambda f: (f["period"][:4], f["agreement_id"], f["section_id"]))
    positions = net_positions(ledger, city_of, prov_of, names, codes=lcodes)
    exposure = exposure_report(agreements, resolved, level_of, templates)
    cp = _county_positions(positions, counties)
    fl = pd.DataFrame(flags, columns=FLAG_COLUMNS)
    return Settlement(ledger=ledger, positions=positions, flags=fl, exposure=exposure,
                      county_positions=cp)


def _annual_classes(coded: MonitoringCodes, water: dict[str, str], years: list[int],
                    means) -> dict[int, dict[str, str]]:
    """Class of the annual means per year and section: exact integer comparisons on
    the coded table, or (values finer than 1e-9 mg/L) the Decimal means."""
    got = coded.year_grid(water)
    if got is None:
        return {y: classes_of_means(means(y), water) for y in years}
    yrs, g = got
    col = {int(y): k for k, y in enumerate(yrs.tolist())}
    names = np.array(CLASSES, dtype=object)
    out: dict[int, dict[str, str]] = {}
    for y in years:
        if y not in col:
            out[y] = {}
            continue
        r = g[:, col[y]]
        hit = np.flatnonzero(r)
        out[y] = dict(zip(coded.sections[hit].tolist(), names[r[hit] - 1].tolist()))
    return out


# ---------------------------------------------------------------------------
# columnar (batch) path
# ---------------------------------------------------------------------------
@dataclass
class _BatchJob:
    """Agreements (and their sections) collected for one batch formula."""

    entries: list = field(default_factory=list)  # (agreement, params id)
    sections: list = field(default_factory=list)  # (entry, section id, level, target, ref)
    params: dict = field(default_factory=dict)  # repr -> (params id, parameters)


def _collect_batch(job: _BatchJob, a: Agreement, params: dict, resolved: dict,
                   level_of: dict) -> None:
    """Add an agreement and its resolved sections to a batch job."""
    pkey = repr(sorted(params.items(), key=lambda kv: kv[0]))
    pid = job.params.setdefault(pkey, (len(job.params), params))[0]
    refs: dict[str, SectionRef] = {}
    sids = []
    for k, r in enumerate(a.sections):
        sid = resolved.get((a.agreement_id, k))
        if sid:
            refs[sid] = r  # as the agreement-by-agreement path: the last ref of a section
            sids.append((sid, r.target_class))  # splits by, but each ref its own target
    if sids:
        e = len(job.entries)
        job.entries.append((a, pid))
        job.sections += [(e, sid, level_of.get(sid, ""), t, refs[sid]) for sid, t in sids]


def _batch_rows(job: _BatchJob, years: list[int], aclass: dict[int, dict]
                ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """The section-year table (:data:`BATCH_COLUMNS`) of a batch job, built column-wise.

    Returns the table, and per agreement-year ``key`` its entry and year, and per
    row the index into ``job.sections``.
    """
    from .policies import BATCH_COLUMNS

    p_entry, p_year, p_months = [], [], []
    spans: dict[tuple, tuple] = {}  # validity period -> (years, months of each) in force
    for e, (a, _) in enumerate(job.entries):
        span = (a.valid_from, a.valid_to)
        if span not in spans:
            got = [(y, _months(y, a)) for y in years]
            spans[span] = tuple(zip(*[(y, m) for y, m in got if m])) or ((), ())
        ys, ms = spans[span]
        p_entry += [e] * len(ys)
        p_year += ys
        p_months += ms
    p_entry_a = np.array(p_entry, dtype=np.int64)
    sec_entry = np.array([x[0] for x in job.sections], dtype=np.int64)
    n_sec = np.bincount(sec_entry, minlength=len(job.entries))
    s_off = np.concatenate([[0], np.cumsum(n_sec)[:-1]]).astype(np.int64)
    per = n_sec[p_entry_a] if len(p_entry_a) else np.zeros(0, np.int64)
    key = np.repeat(np.arange(len(p_entry_a)), per)
    sec = s_off[p_entry_a][key] + (np.arange(len(key)) - np.repeat(np.cumsum(per) - per, per))
    year = np.array(p_year, dtype=np.int64)[key]
    sid = np.array([x[1] for x in job.sections], dtype=object)[sec]
    entry = p_entry_a[key]
    months = np.empty(len(p_months), dtype=object)
    months[:] = p_months
    rows = pd.DataFrame({
        "key": key, "year": year, "section_id": sid,
        "level": np.array([x[2] for x in job.sections], dtype=object)[sec],
        "target": np.array([x[3] for x in job.sections], dtype=object)[sec],
        "months": months[key],
        "annual_class": np.array([aclass[y].get(s) for y, s in zip(year.tolist(), sid.tolist())],
                                 dtype=object),
        "params_id": np.array([pid for _, pid in job.entries], dtype=np.int64)[entry],
        "annual_amount": np.array([a.annual_amount for a, _ in job.entries], dtype=object)[entry],
        "n_sections": n_sec[entry]}, columns=BATCH_COLUMNS)
    return rows, p_entry_a, np.array(p_year, dtype=np.int64), sec


def _run_batch(batch_fn, job: _BatchJob, years: list[int], aclass: dict[int, dict], grid,
               names: dict) -> tuple[pd.DataFrame, list[dict], dict]:
    """Run a batch formula and split its flows into ledger rows, as :func:`_ledger_rows`.

    Returns the ledger already in :data:`LEDGER_ORDER`, the flags, and the sort
    codes of the ledger's key columns (see :func:`_ledger_codes`), worked out on
    the small tables of distinct values instead of half a million text cells.
    """
    rows, k_entry, k_year, row_sec = _batch_rows(job, years, aclass)
    params = {pid: p for pid, p in job.params.values()}
    flows, fflags = batch_fn(rows, grid, params)
    key = rows.key.to_numpy()
    sid_of_row = rows.section_id.to_numpy(dtype=object)
    agreement_ids = np.array([a.agreement_id for a, _ in job.entries], dtype=object)
    flags = [dict(period=per, agreement_id=agreement_ids[k_entry[key[i]]],
                  section_id=sid_of_row[i], flag=text) for i, per, text in fflags]
    if len(flows) == 0:
        return pd.DataFrame(columns=LEDGER_COLUMNS), flags, {}
    fr = flows.row.to_numpy().astype(np.int64)
    signed = flows.signed_fen.to_numpy(dtype=np.int64)
    if (signed == 0).any():
        raise BasinsInputError("a batch formula returned a zero amount.")
    # the ref each row is split by (as the agreement-by-agreement path looks it up)
    ref_objs: list[SectionRef] = []
    ref_id: dict[int, int] = {}
    sec_ref = np.empty(len(job.sections), dtype=np.int64)
    for i, x in enumerate(job.sections):
        sec_ref[i] = ref_id.setdefault(id(x[4]), len(ref_id))
        if len(ref_objs) < len(ref_id):
            ref_objs.append(x[4])
    row_ref = sec_ref[row_sec]
    # each (ref, direction) as a list of (payer, payee) pieces, each share pattern once
    parties: dict[str, int] = {}
    sig_id: dict[tuple, int] = {}
    k_pay: list[list[int]] = []
    k_rec: list[list[int]] = []
    k_sig: list[int] = []
    cache: dict = {}
    for ref in ref_objs:
        sides = []
        for name in ("upstream", "downstream"):
            pp, ps = _side(ref, name, cache)
            sides.append(([parties.setdefault(x, len(parties)) for x in pp], tuple(ps)))
        (uc, us), (dc, ds) = sides
        for (pc, ps), (qc, qs) in (((uc, us), (dc, ds)), ((dc, ds), (uc, us))):
            k_pay.append([x for x in pc for _ in qc])  # payer-major, as _split_flow
            k_rec.append(qc * len(pc))
            k_sig.append(sig_id.setdefault((ps, qs), len(sig_id)))
    sigs = list(sig_id)
    k_sig = np.array(k_sig, dtype=np.int64)
    k_flow = row_ref[fr] * 2 + (signed > 0)
    fen = np.abs(signed)
    s_flow = k_sig[k_flow]
    if int(fen.max()) < 2**62 // max(len(sigs), 1):
        ucode, ukey = pd.factorize(fen * len(sigs) + s_flow)
        u_sig, u_fen = ukey % len(sigs), ukey // len(sigs)
    else:
        ucode, ukey = pd.factorize(pd.MultiIndex.from_arrays([s_flow, fen]))
        u_sig = np.array([t[0] for t in ukey], dtype=np.int64)
        u_fen = np.array([t[1] for t in ukey], dtype=object)
    # split each distinct (share pattern, amount) once, exactly
    u_amt = [np.array([x for part in split_fen(int(f), list(sigs[g][0]))
                       for x in split_fen(part, list(sigs[g][1]))], dtype=np.int64)
             for g, f in zip(u_sig.tolist(), list(u_fen))]
    u_off = np.concatenate([[0], np.cumsum([len(x) for x in u_amt])[:-1]]).astype(np.int64)
    k_off = np.concatenate([[0], np.cumsum([len(x) for x in k_pay])[:-1]]).astype(np.int64)
    amt_flat = np.concatenate(u_amt)
    pay_flat, rec_flat = (np.array([x for k in v for x in k], dtype=np.int64)
                          for v in (k_pay, k_rec))
    n_piece = np.array([len(x) for x in u_amt], dtype=np.int64)[ucode]
    rep = np.repeat(np.arange(len(fr)), n_piece)
    j = np.arange(len(rep)) - np.repeat(np.cumsum(n_piece) - n_piece, n_piece)
    amount = amt_flat[u_off[ucode][rep] + j]
    payer = pay_flat[k_off[k_flow][rep] + j]
    payee = rec_flat[k_off[k_flow][rep] + j]
    nonzero = amount != 0
    own_rows = np.flatnonzero(nonzero & (payer == payee))
    keep = np.flatnonzero(nonzero & (payer != payee))
    party_list = list(parties)
    # a county on both sides of a section: its own share nets to zero, flagged per year
    own: dict[tuple, int] = {}
    for i in own_rows.tolist():
        f = rep[i]
        kk = (int(key[fr[f]]), sid_of_row[fr[f]], party_list[payer[i]])
        own[kk] = own.get(kk, 0) + int(amount[i])
    for (k, sid, party), fen_ in sorted(own.items()):
        flags.append(dict(period=str(k_year[k]), agreement_id=agreement_ids[k_entry[k]],
                          section_id=sid, flag=_self_pay_flag(party, fen_, names)))
    rep, amount, payer, payee = rep[keep], amount[keep], payer[keep], payee[keep]
    # sort codes of the key columns from their small tables of distinct values
    agr_code, agr_u = pd.factorize(agreement_ids[k_entry])
    sec_code, sec_u = pd.factorize(sid_of_row)
    f_row = fr[rep]
    raw = {"period": _codes_of(flows.period), "stage": _codes_of(flows.stage),
           "rule": _codes_of(flows.rule)}
    codes = {c: (raw[c][0][rep], raw[c][1]) for c in raw}
    codes["agreement_id"] = (agr_code[key[f_row]], agr_u)
    codes["section_id"] = (sec_code[f_row], sec_u)
    party_u = np.array(party_list, dtype=object)
    codes["payer"], codes["payee"] = (payer, party_u), (payee, party_u)
    codes = {c: _ranked(*v) for c, v in codes.items()}
    order = _lex_order([codes[c] for c in LEDGER_ORDER])
    codes = {c: (k[order], u) for c, (k, u) in codes.items()}
    rep, amount, payer, payee, f_row = (x[order] for x in (rep, amount, payer, payee, f_row))
    acode, auniq = pd.factorize(amount)
    pname = np.array([_party_name(p, names) for p in party_list], dtype=object)
    meta_t = np.array([a.template for a, _ in job.entries], dtype=object)[k_entry]
    fk = key[f_row]
    t_code, t_u = pd.factorize(meta_t)
    r_code, r_u = _codes_of(flows.reason)
    led = pd.DataFrame({
        "period": _text(codes["period"][1], codes["period"][0]),
        "stage": _text(codes["stage"][1], codes["stage"][0]),
        "agreement_id": _text(codes["agreement_id"][1], codes["agreement_id"][0]),
        "template": _text(t_u, t_code[fk]),
        "section_id": _text(codes["section_id"][1], codes["section_id"][0]),
        "payer": _text(party_u, payer), "payer_name": _text(pname, payer),
        "payee": _text(party_u, payee), "payee_name": _text(pname, payee), "amount_fen": amount,
        "amount_yuan": _text(np.array([_yuan_text(int(x)) for x in auniq], dtype=object), acode),
        "rule": _text(codes["rule"][1], codes["rule"][0]),
        "reason": _text(r_u, r_code[rep])}, columns=LEDGER_COLUMNS)
    return led, flags, codes


#: the dtype pandas gives a column of text (``str`` in pandas 3, ``object`` before)
_TEXT_DTYPE = pd.Series(["x"]).dtype


def _text(uniques: np.ndarray, codes: np.ndarray):
    """``uniques[codes]`` as the text column pandas would make of it, converting only
    the distinct values (converting half a million cells one by one is slow)."""
    u = np.asarray(uniques, dtype=object)
    if _TEXT_DTYPE == object or not all(isinstance(x, str) for x in u.tolist()):
        return u[codes]
    return pd.array(u, dtype=_TEXT_DTYPE).take(codes)


def _side(ref: SectionRef, side: str, cache: dict) -> tuple[tuple[str, ...], list[Decimal]]:
    """Parties and shares of one side of a reference, parsed once per reference."""
    key = (id(ref), side)
    if key not in cache:
        if side in ("upstream", "downstream"):
            parties = ref.upstream if side == "upstream" else ref.downstream
            cache[key] = (parties, list(_equal_shares(len(parties))) if
                          ref.parameters.get(f"{side}_shares") is None else
                          _shares(ref, side), ref)
        else:
            cache[key] = ((side,), [Decimal(1)], ref)
    return cache[key][:2]


@lru_cache(maxsize=64)
def _equal_shares(n: int) -> tuple[Decimal, ...]:
    """``n`` equal shares summing to exactly 1 (the last takes the rounding)."""
    return (Decimal(1) / n,) * (n - 1) + (1 - Decimal(1) / n * (n - 1),)


def _codes_of(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and distinct values of a column (categorical or not)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        return (col.cat.codes.to_numpy().astype(np.int64),
                np.asarray(col.cat.categories, dtype=object))
    c, u = pd.factorize(col)
    return c.astype(np.int64), np.asarray(u, dtype=object)


def _ranked(codes: np.ndarray, uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-code so that code order is text order, as ``pd.factorize(sort=True)``."""
    order = np.argsort(np.asarray(uniques, dtype=object), kind="stable")
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[codes], np.asarray(uniques, dtype=object)[order]


def _lex_order(cols: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Stable order by several code columns, first column first (one int64 key when
    the code ranges allow it, else :func:`numpy.lexsort`)."""
    sizes = [max(len(u), 1) for _, u in cols]
    if float(np.prod([float(x) for x in sizes])) < 2.0**62:
        k = np.zeros(len(cols[0][0]), dtype=np.int64)
        for (c, _), n in zip(cols, sizes):
            k = k * n + c
        return np.argsort(k, kind="stable")
    return np.lexsort([c for c, _ in cols][::-1])


LEDGER_ORDER = ["period", "stage", "agreement_id", "section_id", "rule", "payer", "payee"]


def _ledger_codes(ledger: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sort codes (``pd.factorize(sort=True)``) of the ledger's key columns."""
    return {c: tuple(np.asarray(x) if k else x.astype(np.int64) for k, x in
                     enumerate(pd.factorize(ledger[c], sort=True))) for c in LEDGER_ORDER}


def _sort_ledger(ledger: pd.DataFrame, codes: dict | None = None
                 ) -> tuple[pd.DataFrame, dict]:
    """Ledger rows in a fixed order (on integer codes), and the codes in that order."""
    codes = codes or _ledger_codes(ledger)
    order = _lex_order([codes[c] for c in LEDGER_ORDER])
    return (ledger.iloc[order].reset_index(drop=True),
            {c: (k[order], u) for c, (k, u) in codes.items()})


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
    payers, ps = _side(ref, payer_side, cache)
    payees, qs = _side(ref, payee_side, cache)
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
                  names: dict[str, str] | None = None, codes: dict | None = None
                  ) -> pd.DataFrame:
    """Paid, received and net (received − paid) fen per party at county, city and
    province level, per period and stage. Each (stage, period, level) sums to zero;
    a transfer within one city or province shows as paid and received by it.

    A ``province:`` party stays itself at every level, a ``city:`` party at county
    and city level, so each level balances. ``codes``: the ledger's key columns
    already factorised (as :func:`settle` has them), to save doing it again.
    """
    names = names or {}
    if ledger.empty:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    codes = codes or {c: pd.factorize(ledger[c], sort=True)
                      for c in ("stage", "period", "payer", "payee")}
    prov_of_city = {}
    for k, c in city_of.items():
        prov_of_city.setdefault(c, prov_of.get(k, c))
    parties = sorted(set(codes["payer"][1].tolist()) | set(codes["payee"][1].tolist()))
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
    # everything on integer codes; each distinct party is looked up once (a groupby on
    # five text keys of six copies of the ledger cost seconds)
    amt = ledger.amount_fen.to_numpy(dtype="int64")
    sc, su = codes["stage"]
    pc, pu = codes["period"]
    levels = ("county", "city", "province")
    level_rank = {lv: i for i, lv in enumerate(sorted(levels))}  # sorted like the text
    pool = sorted({res[p][k] for p in parties for k in range(3)})  # (party, name)
    code_of = {t: i for i, t in enumerate(pool)}
    n_t = len(pool)
    sp = np.asarray(sc, dtype=np.int64) * len(pu) + np.asarray(pc, dtype=np.int64)
    keys: list[tuple[np.ndarray, bool]] = []  # (group key, paid or not) per column and level
    for col in ("payer", "payee"):
        cc, cu = codes[col]
        for k, lv in enumerate(levels):
            party_code = np.array([code_of[res[p][k]] for p in cu.tolist()], dtype=np.int64)
            keys.append(((sp * 3 + level_rank[lv]) * n_t + party_code[cc], col == "payer"))
    size = len(su) * len(pu) * 3 * n_t
    exact_float = len(amt) == 0 or int(np.abs(amt).max()) * len(amt) < 2**53
    if size <= 1 << 22 and exact_float:
        # dense sums per group, one bincount per column and level (levels never share a
        # group, and float sums of integers below 2**53 are exact)
        sums = {True: np.zeros(size), False: np.zeros(size)}
        seen = np.zeros(size, dtype=bool)
        for key, is_paid in keys:
            sums[is_paid] += np.bincount(key, weights=amt, minlength=size)
            seen[key] = True
        gk = np.flatnonzero(seen)
        paid, recv = (np.rint(sums[x][gk]).astype(np.int64) for x in (True, False))
    else:
        gk, inv = np.unique(np.concatenate([k for k, _ in keys]), return_inverse=True)
        inv = inv.ravel()
        zero = np.zeros_like(amt)
        paid = _sum_by(inv, np.concatenate([amt if x else zero for _, x in keys]), len(gk))
        recv = _sum_by(inv, np.concatenate([zero if x else amt for _, x in keys]), len(gk))
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
        "name": np.array([t[1] for t in pool], dtype=object)[t_code],
        "paid_fen": paid, "received_fen": recv})
    pos["net_fen"] = pos.received_fen - pos.paid_fen
    return pos[POSITION_COLUMNS].astype({"paid_fen": "int64", "received_fen": "int64",
                                         "net_fen": "int64"})


def _sum_by(group: np.ndarray, fen: np.ndarray, n: int) -> np.ndarray:
    """Exact integer sums of ``fen`` per group. Float bincount when every partial sum is
    an integer below 2**53 (then exact, and fast), else integer ``np.add.at``."""
    if len(fen) == 0 or int(np.abs(fen).max()) * len(fen) < 2**53:
        return np.rint(np.bincount(group, weights=fen, minlength=n)).astype(np.int64)
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, group, fen)
    return out


def exposure_report(agreements: list[Agreement], resolved: dict, level_of: dict,
                    templates: dict) -> pd.DataFrame:
    """Full-scope exposure of Shandong county-level sections: 12 × base × (1 + float_max)."""
    rows = []
    defaults: dict[str, dict] = {}  # template -> its parameters, worked out once
    worked: dict[tuple, tuple[int, int]] = {}  # same parameters, level, amount: same figures
    for a in agreements:
        tpl = templates.get(a.template)
        if tpl is None or tpl.formula != "shandong_county":
            continue
        if a.template not in defaults:
            defaults[a.template] = tpl.function()[1]
        params = {**defaults[a.template], **a.parameters}
        pkey = (a.template, repr(sorted(a.parameters.items(), key=lambda kv: kv[0])))
        n = len(a.sections)
        for k, _r in enumerate(a.sections):
            sid = resolved.get((a.agreement_id, k), "")
            lv = level_of.get(sid, "")
            wk = (pkey, lv, a.annual_amount, n)
            if wk not in worked:
                worked[wk] = (monthly_base(lv, a.annual_amount, n, params),
                              shandong_exposure(lv, a.annual_amount, n, params))
            base, top = worked[wk]
            rows.append((a.agreement_id, sid, lv, base, top))
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
