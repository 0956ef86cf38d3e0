"""Run the hardening corpus (tests/corpus.py): each bad input gives its clear error,
each awkward one its QA outcome, and every input feature is accounted for."""

from __future__ import annotations

import re

import pytest

from basins.discover import discover
from basins.read import BasinsInputError, read_counties, read_layer, read_rivers
from corpus import CASES, basin


@pytest.fixture(scope="module")
def b():
    return basin()


def test_corpus_is_large_enough():
    assert len(CASES) >= 30
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case, b, tmp_path):
    rivers_path, counties_path = case.make(b, tmp_path)
    try:
        riv = read_rivers(rivers_path, case.river_name)
        cty = read_counties(counties_path, "county_id", "county", "city", "province")
        res = discover(riv, cty)
    except BasinsInputError as exc:
        if case.error is None:
            raise
        assert re.search(case.error, str(exc)), str(exc)
        return
    assert case.error is None, f"expected an error matching {case.error!r}"
    # every input feature is accounted for: one QA row per river line and per county
    n_rivers = len(read_layer(rivers_path))
    n_counties = len(read_layer(counties_path))
    qa = res.qa
    assert (qa.layer == "rivers").sum() == n_rivers
    assert (qa.layer == "counties").sum() == n_counties
    assert set(qa.status) <= {"used", "merged", "excluded", "flagged"}
    assert not qa.reason[qa.status != "used"].eq("").any()
    case.check(res, b)
