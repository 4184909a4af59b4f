"""The kernel benchmark's `gradcheck` checker: the fields it records and their summary."""

from __future__ import annotations

import json

import pytest

from benchmarks import kernels


@pytest.mark.parametrize("bug", ["correct", "sign"])
def test_gradcheck_rule_records_status_power_and_demotion(bug: str) -> None:
    fn, _, args = kernels.make_case("rope", bug, "float32", 0)
    row = kernels.gradcheck_rule(fn, args)
    # A formula bug never passes, a correct kernel never fails (issue 11's targets).
    assert row["gradcheck"] == ("failed" if bug == "sign" else "inconclusive")
    assert row["gradcheck_power"] > 0
    # RoPE computes in float32 whatever its inputs: promotion to float64 is undone, and said.
    assert row["gradcheck_promoted"] is False and row["gradcheck_promoted_objects"] == []
    assert "lower precision inside" in row["gradcheck_demoted"]
    assert bool(row["gradcheck_failures"]) == (bug == "sign")
    assert all(f.startswith("reverse mode vs finite differences") for f in row["gradcheck_failures"])


def test_gradcheck_rule_records_a_check_that_cannot_run() -> None:
    def broken(x):
        raise ValueError("no kernel here")

    _, _, args = kernels.make_case("rope", "correct", "float32", 0)
    row = kernels.gradcheck_rule(broken, args)
    assert row["gradcheck"] == "error" and "no kernel here" in row["gradcheck_error"]


def test_selected_kernels_run_and_are_summarised_per_class(tmp_path) -> None:
    out = tmp_path / "kernels.json"
    kernels.main(["--out", str(out), "--seeds", "1", "--bug-seeds", "1", "--anchor-seeds", "0",
                  "--gradcheck-seeds", "1", "--kernels", "rope", "--dtypes", "float32"])
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["kernel"], r["dtype"]) for r in rows} == {("rope", "float32")}
    assert sorted(r["bug"] for r in rows) == ["correct", "early_cast", "missing_term", "sign"]
    summary = result["summary"]["gradcheck"]
    assert summary["formula"]["of"] == 2 and summary["formula"]["passed"] == 0
    assert summary["correct"]["of"] == 1 and summary["correct"]["failed"] == 0
    for counts in summary.values():
        assert sum(counts[s] for s in kernels.GRADCHECK_STATUSES) == counts["of"]
    assert result["settings"]["gradcheck_seeds"] == 1


def test_gradcheck_seeds_limit_the_rows_it_runs_on() -> None:
    rows = kernels.run(2, 1, 0, gradcheck_seeds=1, kernels=["rope"], dtypes=["float32"])["rows"]
    assert [r["seed"] for r in rows if r["bug"] == "correct"] == [0, 1]
    assert ["gradcheck" in r for r in rows if r["bug"] == "correct"] == [True, False]


def test_unknown_kernel_names_are_refused() -> None:
    with pytest.raises(SystemExit):
        kernels.main(["--kernels", "rmsnorm,not_a_kernel"])
