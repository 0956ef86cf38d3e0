"""Agreements registry, audit findings, coverage by county and claim checks.

Ground truth comes from SYNTHETIC basins (registries built from the true
sections, then damaged in known ways) and from the ILLUSTRATIVE sample registry
of the embedded Shandong data, which is arranged to show every finding.
"""

from __future__ import annotations

import functools
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings, strategies as hst

from basins import settings as st
from basins.agreements import (Agreement, SectionRef, agreements_frame, match_parties,
                               read_agreements, write_agreements)
from basins.audit import METRICS, audit, check_claim, parse_claim, write_audit
from basins.data import geodata_dir
from basins.read import BasinsInputError
from basins.synthetic import make_basin
from conftest import discover_synthetic


def registry_for(sections, start=2020, end=2030, amount=12_000_000) -> list[Agreement]:
    """One agreement per section with the section's own parties (all correct)."""
    out = []
    for k, s in enumerate(sections.itertuples()):
        out.append(Agreement(
            agreement_id=f"A{k:03d}", name=f"test {k}", signed=date(start - 1, 12, 1),
            valid_from=date(start, 1, 1), valid_to=date(end, 12, 31), template="shandong_county",
            annual_amount=Decimal(amount),
            sections=(SectionRef(where=f"test row {k}", row=k, section_id=s.section_id,
                                 river=s.river, upstream=tuple(s.upstream_ids.split(st.SEP)),
                                 downstream=tuple(s.downstream_ids.split(st.SEP))),)))
    return out


@functools.lru_cache(maxsize=None)
def synthetic(seed: int, n_boundary: int):
    basin = make_basin(seed=seed, rows=7, cols=7, n_boundary=n_boundary, n_meanders=0)
    return discover_synthetic(basin)


# ---------------------------------------------------------------------------
# ground truth on synthetic basins
# ---------------------------------------------------------------------------
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=hst.sampled_from([1, 2, 3]), data=hst.data())
def test_removing_k_agreements_leaves_exactly_those_sections_missing(seed, data):
    res = synthetic(seed, 1)
    reg = registry_for(res.sections)
    k = data.draw(hst.integers(0, min(5, len(reg))))
    drop = set(data.draw(hst.permutations(range(len(reg))))[:k])
    kept = [a for i, a in enumerate(reg) if i not in drop]
    a = audit(res, kept, year=2025)
    missing = set(a.sections.section_id[a.sections.status == "missing"])
    expected = {reg[i].sections[0].section_id for i in drop}
    assert missing == expected
    assert set(a.findings.section_id[a.findings.finding == "missing_agreement"]) == expected
    assert a.metrics()["sections_covered"] == len(reg) - k


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_swapped_parties_are_mis_oriented(seed):
    res = synthetic(seed, 0)
    reg = registry_for(res.sections)
    victim = reg[len(reg) // 2]
    ref = victim.sections[0]
    swapped = replace(victim, sections=(replace(ref, upstream=ref.downstream,
                                                downstream=ref.upstream),))
    reg = [swapped if a is victim else a for a in reg]
    a = audit(res, reg, year=2025)
    mis = a.findings[a.findings.finding == "mis_oriented"]
    assert list(mis.agreement_id) == [victim.agreement_id]
    assert list(mis.section_id) == [ref.section_id]
    status = dict(zip(a.sections.section_id, a.sections.status))
    assert status[ref.section_id] == "mis_oriented"
    assert sum(v == "covered" for v in status.values()) == len(reg) - 1


def test_boundary_side_with_one_bank_missing_is_incomplete():
    res = synthetic(5, 2)
    sec = res.sections[res.sections.downstream_ids.str.contains(st.SEP, regex=False)].iloc[0]
    reg = registry_for(res.sections)
    k = list(res.sections.section_id).index(sec.section_id)
    ref = reg[k].sections[0]
    left, right = ref.downstream
    reg[k] = replace(reg[k], sections=(replace(ref, downstream=(left,)),))
    a = audit(res, reg, year=2025)
    inc = a.findings[a.findings.finding == "incomplete_bank_parties"]
    assert list(inc.section_id) == [sec.section_id]
    assert f"({right})" in inc.detail.iloc[0]
    assert dict(zip(a.sections.section_id, a.sections.status))[sec.section_id] == "incomplete"


def test_county_status_follows_its_sections():
    res = synthetic(2, 1)
    reg = registry_for(res.sections)[::2]  # every other section covered
    a = audit(res, reg, year=2025)
    covered = set(a.sections.section_id[a.sections.status == "covered"])
    for c in a.counties.itertuples():
        mine = [s.section_id for s in a.sections.itertuples()
                if c.county_id in s.upstream_ids.split(st.SEP) + s.downstream_ids.split(st.SEP)]
        n_cov = sum(s in covered for s in mine)
        want = ("no_cross_boundary_river" if not mine else "full" if n_cov == len(mine)
                else "partial" if n_cov else "none")
        assert (c.sections, c.covered, c.status) == (len(mine), n_cov, want), c.county


def test_validity_decides_in_force():
    res = synthetic(1, 0)
    reg = registry_for(res.sections, start=2021, end=2023)
    a = audit(res, reg, year=2025)
    assert set(a.findings.finding) == {"expired", "missing_agreement"}
    assert (a.sections.status == "missing").all()
    a = audit(res, reg, on=date(2022, 6, 30))
    assert (a.sections.status == "covered").all()
    a = audit(res, reg, year=2019)
    assert set(a.findings.finding) == {"not_yet_in_force", "missing_agreement"}


def test_below_floor_is_per_section_year():
    res = synthetic(1, 0)
    reg = registry_for(res.sections, amount=9_999_999)  # just under 1,000万 for one section
    a = audit(res, reg, year=2025)
    assert (a.findings.finding == "below_minimum").sum() == len(reg)
    ok = audit(res, registry_for(res.sections, amount=10_000_000), year=2025)
    assert "below_minimum" not in set(ok.findings.finding)


# ---------------------------------------------------------------------------
# party matching rules
# ---------------------------------------------------------------------------
LOOKUP = {"a": ("C1", "P1"), "b": ("C1", "P1"), "c": ("C2", "P2"), "d": ("C2", "P2")}


@pytest.mark.parametrize("up,down,sec_up,sec_down,want", [
    (("a",), ("c",), ["a"], ["c"], "ok"),
    (("c",), ("a",), ["a"], ["c"], "mis_oriented"),
    (("a",), ("c",), ["a"], ["c", "d"], "incomplete"),
    (("a", "b"), ("c", "d"), ["a", "b"], ["c", "d"], "ok"),
    (("d",), ("b",), ["a"], ["c"], "party_mismatch"),
    (("province:P1",), ("province:P2",), ["a"], ["c", "d"], "ok"),
    (("province:P2",), ("province:P1",), ["a"], ["c", "d"], "mis_oriented"),
    (("city:C1",), ("c",), ["a", "b"], ["c"], "ok"),
])
def test_match_parties(up, down, sec_up, sec_down, want):
    assert match_parties(up, down, sec_up, sec_down, LOOKUP)[0] == want


# ---------------------------------------------------------------------------
# the four registry formats and bad rows
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample_registry(shandong):
    _, res = shandong
    path = geodata_dir() / "shandong_agreements_ILLUSTRATIVE.csv"
    return res, read_agreements(path, res.counties)


@pytest.mark.parametrize("suffix", [".csv", ".xlsx", ".yaml", ".gpkg"])
def test_registry_round_trips_in_every_format(sample_registry, tmp_path, suffix):
    res, ags = sample_registry
    p = write_agreements(ags, tmp_path / f"reg{suffix}", header="ILLUSTRATIVE test copy")
    back = read_agreements(p, res.counties)
    pd.testing.assert_frame_equal(agreements_frame(back), agreements_frame(ags))
    assert any("黄河" in a.name for a in back)  # Chinese text survives


def test_coordinates_and_river_party_references_resolve(shandong, tmp_path):
    _, res = shandong
    s = res.sections[res.sections.river == "黄河"].iloc[0]
    rows = pd.DataFrame([
        dict(agreement_id="X1", signed="2024-01-01", valid_from="2024-01-01",
             valid_to="2026-12-31", template="shandong_county", annual_amount="1200万",
             lon=s.geometry.x + 0.01, lat=s.geometry.y, river="黄河",
             upstream_ids=s.upstream_ids, downstream_ids=s.downstream_ids, target_class="III"),
        dict(agreement_id="X2", signed="2024-01-01", valid_from="2024-01-01",
             valid_to="2026-12-31", template="shandong_county", annual_amount="1200万",
             river="黄河", upstream_ids=s.upstream_ids, downstream_ids=s.downstream_ids,
             target_class="III", lon=None, lat=None),
        dict(agreement_id="X3", signed="2024-01-01", valid_from="2024-01-01",
             valid_to="2026-12-31", template="shandong_county", annual_amount="1200万",
             lon=121.5, lat=37.5, river="黄河", upstream_ids=s.upstream_ids,
             downstream_ids=s.downstream_ids, target_class="III"),
    ])
    p = tmp_path / "refs.csv"
    rows.to_csv(p, index=False)
    # X1 (by coordinates) and X2 (by river and parties) land on the same section
    with pytest.raises(BasinsInputError, match=r"row 3: resolves to section .*'X1'.*overlap"):
        audit(res, read_agreements(p, res.counties), on=date(2025, 3, 1))
    rows.loc[1, ["valid_from", "valid_to", "signed"]] = ["2021-01-01", "2023-12-31", "2020-12-01"]
    rows.to_csv(p, index=False)
    ags = read_agreements(p, res.counties)
    a = audit(res, ags, on=date(2025, 3, 1))
    cl = a.clauses.set_index("agreement_id")
    assert cl.section_id["X1"] == s.section_id and cl.match["X1"] == "ok"
    assert cl.section_id["X2"] == s.section_id and cl.how["X2"] == "river_parties"
    assert cl.match["X3"] == "stale"  # a point in the Yellow Sea matches nothing
    assert dict(zip(a.sections.section_id, a.sections.status))[s.section_id] == "covered"


GOOD = dict(agreement_id="B1", name="测试", signed="2024-01-01", valid_from="2024-01-01",
            valid_to="2026-12-31", template="shandong_county", annual_amount="1200万",
            section_id="Sa480bd3570", upstream_ids="370832", downstream_ids="410927|370923",
            target_class="III")


@pytest.mark.parametrize("change,field,words", [
    (dict(upstream_ids="999999"), "upstream_ids", "unknown county id"),
    (dict(section_id="Sffffffffff"), "section_id", "unknown section"),
    (dict(section_id="bridge-7"), "section_id", "not a section id"),
    (dict(annual_amount="-5"), "annual_amount", "negative"),
    (dict(annual_amount="lots"), "annual_amount", "not an amount"),
    (dict(valid_from="2024-13-45"), "valid_from", "malformed date"),
    (dict(valid_to="2023-01-01"), "valid_to", "before valid_from"),
    (dict(target_class="VI"), "target_class", "not one of"),
    (dict(template="nowhere"), "template", "not a known template"),
    (dict(agreement_id=""), "agreement_id", "missing"),
    (dict(upstream_ids=""), "upstream_ids", "no party"),
])
def test_bad_row_names_file_row_and_field(shandong, tmp_path, change, field, words):
    _, res = shandong
    rows = [GOOD, dict(GOOD, agreement_id="B2", section_id="Sec87641494",
                       upstream_ids="370829|370811", downstream_ids="370829|370830")]
    rows[1] = dict(rows[1], **change)
    p = tmp_path / "bad.csv"
    pd.DataFrame(rows).to_csv(p, index=False)
    with pytest.raises(BasinsInputError) as exc:
        read_agreements(p, res.counties, sections=set(res.sections.section_id))
    msg = str(exc.value)
    assert "bad.csv" in msg and "row 3" in msg and repr(field) in msg and words in msg, msg


def test_overlapping_validity_names_both_rows(shandong, tmp_path):
    _, res = shandong
    p = tmp_path / "overlap.xlsx"
    pd.DataFrame([GOOD, dict(GOOD, agreement_id="B2", valid_from="2026-06-01",
                             valid_to="2028-12-31", signed="2026-05-01")]).to_excel(p, index=False)
    with pytest.raises(BasinsInputError, match=r"row 3.*'B1'.*row 2.*overlap"):
        read_agreements(p, res.counties)


def test_group_rows_must_agree_on_agreement_fields(shandong, tmp_path):
    _, res = shandong
    p = tmp_path / "group.yaml"
    p.write_text(
        "agreements:\n"
        "  - {agreement_id: G1, signed: 2024-01-01, valid_from: 2024-01-01, valid_to: 2026-12-31,"
        " template: shandong_county, annual_amount: 2040万, sections: ["
        "{section_id: S50a6b7f0ab, upstream_ids: '370105|370112', downstream_ids: '370115|370112',"
        " target_class: III}, {section_id: S6ce163087d, upstream_ids: '370115|370112',"
        " downstream_ids: '370115|370114', target_class: 4}]}\n", encoding="utf-8")
    (g,) = read_agreements(p, res.counties)
    assert len(g.sections) == 2 and g.sections[1].target_class == "IV"
    assert g.annual_amount == Decimal(20_400_000)
    bad = tmp_path / "group.csv"
    pd.DataFrame([GOOD, dict(GOOD, section_id="Sec87641494", annual_amount="1300万",
                             upstream_ids="370829|370811", downstream_ids="370829|370830")]
                 ).to_csv(bad, index=False)
    with pytest.raises(BasinsInputError, match=r"row 3, field 'annual_amount': differs"):
        read_agreements(bad, res.counties)


# ---------------------------------------------------------------------------
# the ILLUSTRATIVE Shandong registry shows every finding
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shandong_audit(sample_registry):
    res, ags = sample_registry
    return audit(res, ags, year=2025, province="山东省")


def test_sample_audit_shows_every_kind_of_finding(shandong_audit):
    f = shandong_audit.findings
    by = f.groupby("finding").agreement_id.apply(list).to_dict()
    assert by["stale"] == ["SD-ILL-S01"]
    assert by["mis_oriented"] == ["SD-ILL-M01"]
    assert by["incomplete_bank_parties"] == ["SD-ILL-I01"]
    assert "东营区" in f[f.finding == "incomplete_bank_parties"].detail.iloc[0]
    assert by["below_minimum"] == ["SD-ILL-F01"]
    assert by["expired"] == ["SD-ILL-E01"]
    assert by["not_yet_in_force"] == ["SD-ILL-N01"]
    missing = f[f.finding == "missing_agreement"]
    assert 1 <= len(missing) <= 5
    m = shandong_audit.metrics()
    assert m["sections_covered"] > m["sections"] / 2  # most sections covered


def test_sample_audit_scope_and_geography(shandong_audit):
    a = shandong_audit
    assert len(a.counties) == 136 and set(a.counties.province) == {"山东省"}
    # Shandong sections all have a Shandong party; out-of-scope ones (Henan–Hebei) do not
    prov = dict(zip(a.counties.county_id, a.counties.province))
    for s in a.sections.itertuples():
        ids = s.upstream_ids.split(st.SEP) + s.downstream_ids.split(st.SEP)
        assert s.in_scope == any(prov.get(i) == "山东省" for i in ids)
    # the Shandong–Henan provincial agreement (province parties) covers its section
    lz = a.clauses[a.clauses.agreement_id == "SD-HN-ILL-01"]
    assert list(lz.match) == ["ok"]
    c = a.counties.set_index("county")
    assert c.status["东营区"] == "partial"  # its Yellow River side misses its signature
    assert c.status["市南区"] == "no_cross_boundary_river"  # Qingdao: no 1:4M border river
    full = a.counties[a.counties.status == "full"]
    m = a.metrics()
    assert m["counties_full"] == len(full)
    assert 0 < m["area_share_full"] < 1


def test_claim_check(shandong_audit):
    m = shandong_audit.metrics()
    ok = check_claim(shandong_audit, {k: m[k] for k in ("cities", "counties", "sections")})
    assert ok.holds and ok.verdict == "holds"
    bad = check_claim(shandong_audit, parse_claim(["cities=16 counties=133", "sections=301"]),
                      target_share=0.6)
    assert not bad.holds
    t = bad.table.set_index("figure")
    assert not t.holds["sections"] and t.computed["sections"] == m["sections"]
    assert t.behind["sections"].count("S") >= m["sections"]  # lists the sections behind it
    short = shandong_audit.counties[(shandong_audit.counties.status != "full")
                                    & (shandong_audit.counties.status != "no_cross_boundary_river")]
    assert all(n in t.behind["share_counties_full >= target"] for n in short.county)
    with pytest.raises(BasinsInputError, match="unknown figure"):
        parse_claim(["rivers=3"])
    assert set(m) == set(METRICS)


def test_audit_outputs_are_byte_identical(shandong_audit, tmp_path):
    import time

    first = write_audit(shandong_audit, tmp_path / "a")
    time.sleep(1.1)  # a save-time stamp anywhere would now differ
    second = write_audit(shandong_audit, tmp_path / "b")
    for p, q in zip(first, second):
        assert p.read_bytes() == q.read_bytes(), p.name
    wb = pd.read_excel(tmp_path / "a" / "audit.xlsx", sheet_name=None)
    assert {"summary", "sections", "counties", "cities", "findings"} <= set(wb)
    assert "黄河" in set(wb["sections"].river)
    csv = (tmp_path / "a" / "audit_counties.csv").read_bytes()
    assert csv.startswith(b"\xef\xbb\xbf") and "济南市".encode() in csv


def test_cli_audit_claim_exit_code(shandong_audit, tmp_path):
    from typer.testing import CliRunner

    from basins.cli import app

    m = shandong_audit.metrics()
    runner = CliRunner()
    bad = runner.invoke(app, ["audit", "--claim", "cities=16 counties=133 sections=301",
                              "--exit-code", "--out-dir", str(tmp_path)])
    assert bad.exit_code == 1, bad.output
    assert "DOES NOT HOLD" in bad.output
    good = runner.invoke(app, ["audit", "--claim", f"sections={m['sections']}",
                               "--claim", f"counties={m['counties']}", "--exit-code",
                               "--out-dir", str(tmp_path)])
    assert good.exit_code == 0, good.output
    assert "HOLDS" in good.output
    assert (tmp_path / "shandong_audit_claim.csv").exists()
    assert (tmp_path / "shandong_audit.xlsx").exists()
