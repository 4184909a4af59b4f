"""`run_case`: a case's verdict depends on the case alone, never on what ran before it."""

from __future__ import annotations


import gradcheck_kit
import reference_models
from gradcheck_kit import _verify


def _crosscheck_cases(seed: int):
    return [
        c
        for c in _verify.plan(models=["hand_sigmoid"], seed=seed, profile="quick")
        if c.check == _verify.CROSSCHECK
    ]


def test_a_case_of_another_seed_is_not_answered_from_an_earlier_run():
    first = _crosscheck_cases(seed=0)[0]
    other = _crosscheck_cases(seed=1)[0]
    # Same group and peers, different example: only the seed tells them apart.
    assert (first.group, first.peers) == (other.group, other.peers)
    assert first.example != other.example
    _verify.run_case(first)
    after = _verify.run_case(other)
    # What the case must say: the cross-check of its own example.
    own = gradcheck_kit.crosscheck(
        other.model,
        implementations=list(other.peers),
        example=other.example.build(),
        dtype=other.dtype,
        device=other.device,
        seed=other.example.seed,
    )
    expected = own.rows_of(other.implementation)
    assert [(r["check"], r["actual"], r["expected"]) for r in after.details["rows"]] == [
        (r.check, r.actual, r.expected) for r in expected
    ]
    assert after.margin == max(r.margin for r in expected)
    assert after.example["seed"] == 1


def test_replacing_an_implementation_changes_the_next_verdict():
    case = _crosscheck_cases(seed=0)[0]
    impl = case.implementation
    assert _verify.run_case(case).passed
    model = reference_models.get(case.model)
    original = model.implementations[impl]

    def doubled(params, data, *, dtype="float64", device="cpu"):
        loss, grads = original(params, data, dtype=dtype, device=device)
        return loss, {k: 2 * g for k, g in grads.items()}

    reference_models.register_implementation(case.model, impl, doubled, replace=True)
    try:
        broken = _verify.run_case(case)
    finally:
        reference_models.register_implementation(case.model, impl, original, replace=True)
    assert not broken.passed, "a doubled gradient passed: the verdict came from an earlier run"
    assert "consensus" in broken.message
    assert _verify.run_case(case).passed


def test_a_claims_non_finite_figures_are_written_as_json_strings():
    import json

    result = reference_models.FidelityResult(
        model="m", check="loss_falls", implementation="i", dtype="float64", passed=False,
        claim="c", observed="diverged", figures={"final_loss": float("nan"), "ratio": float("inf")},
    )
    details = _verify._json_figures(result.to_dict())
    document = json.loads(json.dumps(details, allow_nan=False))
    assert document["figures"] == {"final_loss": "nan", "ratio": "inf"}
    assert document["observed"] == "diverged"
