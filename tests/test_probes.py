"""Probes: directions, cotangents, the input's scale and the outputs' flat layout."""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck_kit._probes import (
    draw_directions,
    input_scale,
    on_output,
    output_layout,
    output_scales,
    signed,
)


def test_signed_entries_are_away_from_zero():
    s = signed(np.random.default_rng(0), (1000,))
    assert np.all((np.abs(s) >= 1.0) & (np.abs(s) <= 2.0))
    assert 400 < np.sum(s > 0) < 600


@pytest.mark.parametrize("magnitude", [1e-320, 1e-170, 1e-3, 1.0, 1e5, 1e200, 1e307])
def test_input_scale_is_the_rms_at_any_magnitude(magnitude):
    x = np.array([3.0, -4.0, 0.0, 12.0]) * magnitude
    expected = np.sqrt((9 + 16 + 144) / 4) * magnitude
    assert input_scale(x) == pytest.approx(expected, rel=1e-12 if magnitude > 1e-300 else 1e-2)


def test_input_scale_ignores_infinite_elements_and_defaults_to_one():
    assert input_scale(np.array([np.inf, -2.0])) == 2.0
    assert input_scale(np.zeros(3)) == 1.0 and input_scale(np.zeros(0)) == 1.0


def test_directions_are_zero_at_frozen_elements_and_scaled_to_the_input():
    x = np.array([1e10, -np.inf, 2e10])
    [v] = draw_directions(np.random.default_rng(0), [x], [np.isinf(x)])
    assert v[1] == 0.0 and np.all(np.abs(v[[0, 2]]) >= input_scale(x))


def test_layout_and_cotangent_sets():
    y0 = [np.zeros((2, 3)), np.zeros(4), np.zeros(())]
    flat0, parts = output_layout(y0)
    assert flat0.shape == (11,) and parts == ((0, 6), (6, 10), (10, 11))
    u = np.ones(4)
    assert on_output(1, u, 3)[0] is None and on_output(1, u, 3)[1] is u
    # |u| (|f| + bend): no absolute term, so the scale follows the outputs' units.
    assert output_scales([np.full(2, 2.0)], [np.array([1.0, -3.0])]) == [2 * 1 + 2 * 3]
    assert output_scales(
        [np.full(2, 2.0), np.ones(1)], [np.array([1.0, -3.0]), np.array([0.0])],
        np.array([0.5, 1.0, 4.0]),
    ) == [2 * 1.5 + 2 * 4, 4.0]
