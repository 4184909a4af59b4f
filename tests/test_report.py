"""The report objects: margins, truthiness, text and JSON."""

from __future__ import annotations

import json
import math

import pytest

from gradcheck_kit import Comparison, ComparisonKind, Element, GradientMismatch, Report


def comparison(error, tolerance, passed, **kw):
    return Comparison(check="reverse mode vs finite differences", input="x", output="y",
                      error=error, tolerance=tolerance, tolerance_source="derived",
                      passed=passed, kind=ComparisonKind.FINITE_DIFFERENCES, **kw)


def report(*comparisons):
    return Report(comparisons=list(comparisons), framework="torch", dtype="float64",
                  device="cpu", mode="auto", promoted=False, seed=0)


def test_margin_rules():
    assert comparison(1.0, 4.0, True).margin == 0.25
    assert comparison(0.0, 0.0, True).margin == 0.0
    assert comparison(1.0, 0.0, False).margin == math.inf
    assert comparison(0.0, math.inf, False).margin == math.inf  # no estimate: inconclusive
    assert comparison(math.nan, 1.0, False).margin == math.inf


def test_report_is_truthy_only_when_every_comparison_passed():
    good, bad = comparison(1.0, 4.0, True), comparison(5.0, 4.0, False)
    assert report(good) and not report(good, bad)
    assert report(good, bad).failures == [bad]
    assert report(good, bad).worst_margin == 1.25
    assert report().worst_margin == 0.0


def test_text_names_the_failing_check_and_element():
    bad = comparison(5.0, 4.0, False, analytic=1.0, numeric=6.0,
                     worst=[Element((2,), None, 1.0, 6.0, 5.0, 4.0)])
    text = str(report(bad))
    assert "gradcheck FAILED" in text and "[FAIL] reverse mode vs finite differences: x -> y" in text
    assert "element input[2]" in text
    with pytest.raises(AssertionError, match="FAILED") as info:
        raise GradientMismatch(report(bad))
    assert info.value.report.failures == [bad]


def test_json_document_carries_the_kind_and_non_finite_numbers_as_text():
    d = report(comparison(math.inf, 1.0, False)).to_dict()
    json.dumps(d)
    [c] = d["comparisons"]
    assert c["kind"] == "finite_differences" and c["error"] == "inf" and c["margin"] == "inf"


def test_status_orders_failed_over_inconclusive_over_passed():
    from gradcheck_kit import InconclusiveCheck
    from gradcheck_kit._report import raise_for

    ok = comparison(0.1, 1.0, True)
    undecided = comparison(0.0, math.inf, False, inconclusive=True,
                           inconclusive_reason="finite differences did not resolve it")
    wrong = comparison(2.0, 1.0, False)
    assert report(ok).status == "passed"
    assert report(ok, undecided).status == "inconclusive"
    assert not report(ok, undecided)
    assert report(ok, undecided, wrong).status == "failed"
    text = str(report(ok, undecided))
    assert text.startswith("gradcheck INCONCLUSIVE") and "did not resolve it" in text
    assert report(ok, undecided).to_dict()["status"] == "inconclusive"
    with pytest.raises(InconclusiveCheck) as caught:
        raise_for(report(ok, undecided))
    assert not isinstance(caught.value, GradientMismatch)
    with pytest.raises(GradientMismatch):
        raise_for(report(undecided, wrong))
    raise_for(report(ok))  # a passing report raises nothing
