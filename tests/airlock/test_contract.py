"""Input contracts (airlock/quality/contract.py): what a model may be fed, and the words for what breaks it."""

from __future__ import annotations

import numpy as np
import pytest

from airlock.quality.contract import ContractCheck, InputRule, check_signature

X = InputRule("x", dtype="float32", shape=("batch", 4), min=-1.0, max=1.0)
KIND = InputRule("kind", dtype="int64", shape=("batch",), values=(0, 1, 2))


def test_the_signature_check_names_what_the_model_contradicts() -> None:
    assert check_signature([X, KIND], {"x": ("float32", ("N", 4)), "kind": ("int64", (None,))}) == []
    problems = check_signature([X, KIND, InputRule("y")],
                               {"x": ("float16", ("N", 8)), "kind": ("int64", ("N", 2))})
    assert problems == [
        "input 'x': the contract says dtype float32, the model takes float16",
        "input 'x': dimension 1 is 4 in the contract, 8 in the model",
        "input 'kind': the contract says rank 1 [batch], the model takes rank 2 [N, 2]",
        "input 'y' is in the contract but the model does not take it (its inputs: 'kind', 'x')",
    ]


def test_a_named_dimension_is_the_same_size_wherever_it_recurs() -> None:
    check = ContractCheck([X, KIND])
    check.shapes({"x": (np.dtype("float32"), (32, 4)), "kind": (np.dtype("int64"), (16,))})
    assert [v.describe() for v in check.violations] == [
        "input 'kind': has batch = 16 (dimension 0) but input 'x' has batch = 32"]


def test_values_are_counted_across_batches_with_the_first_offender() -> None:
    check = ContractCheck([X, KIND])
    x = np.zeros((4, 4), np.float32)
    x[2, 3] = 9.5
    check.rows({"x": x, "kind": np.array([0, 1, 2, 7])}, start=0, source="eval_data.npz")
    x2 = np.full((4, 4), 2.0, np.float32)
    check.rows({"x": x2, "kind": np.zeros(4, np.int64)}, start=4, source="eval_data.npz")
    assert check.counts() == {"x": {"max": 17}, "kind": {"values": 1}}
    said = [v.describe() for v in check.violations]
    assert said[0] == ("input 'x': 17 value(s) > max 1 (first: eval_data.npz row 2, "
                       "x[2, 3] = 9.5)")
    assert said[1].startswith("input 'kind': 1 value(s) not one of {0, 1, 2} (first: "
                              "eval_data.npz row 3")


def test_nan_and_inf_are_refused_unless_allowed_and_never_count_as_out_of_range() -> None:
    a = np.array([[np.nan, np.inf, -np.inf, 0.5]], np.float32)
    strict = ContractCheck([X])
    strict.rows({"x": a})
    assert strict.counts() == {"x": {"nan": 1, "inf": 2}}
    lenient = ContractCheck([InputRule("x", min=-1.0, max=1.0, nan=True, inf=True)])
    lenient.rows({"x": a})
    assert lenient.violations == []


@pytest.mark.parametrize("text", ["{0}", "}{", "{"])
def test_braces_in_values_do_not_break_the_words(text: str) -> None:
    check = ContractCheck([InputRule("x", dtype="float32")])
    check.shapes({"x": (text, (1,))})
    assert text in check.violations[0].describe()


def test_a_rule_describes_itself_for_inspect_and_round_trips_its_json() -> None:
    rule = InputRule("x", dtype="float32", shape=("batch", 16), min=-8.0, max=8.0, nan=True,
                     values=tuple(range(10)))
    assert rule.describe() == ("float32 [batch, 16] in [-8, 8] one of {0, 1, 2, 3, 4, 5, 6, 7, …} "
                               "NaN allowed")
    assert rule.to_json() == {"dtype": "float32", "shape": ["batch", 16], "min": -8.0,
                              "max": 8.0, "nan": True, "values": list(range(10))}
    assert InputRule("free").describe() == "any" and InputRule("free").to_json() == {}


def test_missing_inputs_are_one_violation_each_feed() -> None:
    check = ContractCheck([X])
    check.shapes({})
    check.shapes({})
    assert check.counts() == {"x": {"missing": 2}}
