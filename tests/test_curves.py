"""course_lib.curves: the training-speed measures of the BN paper (steps_to_target, fewer_steps_ratio)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

from course_lib import curves

STEPS = [0, 10, 20, 30, 40]
ACC = [0.5, 0.6, 0.7, 0.8, 0.75]


@pytest.mark.parametrize("target, expected", [
    (0.4, 0), (0.5, 0),          # reached at the first point
    (0.65, 20), (0.7, 20),       # >= target, not > target
    (0.76, 30), (0.8, 30),
    (0.81, None), (1.0, None),   # never reached
])
def test_steps_to_target_first_step_at_or_above(target, expected):
    assert curves.steps_to_target(STEPS, ACC, target) == expected


@pytest.mark.parametrize("convert", [list, np.array, torch.tensor, pd.Series,
                                     lambda v: torch.tensor(v, dtype=torch.float64)],
                         ids=["list", "array", "tensor", "series", "tensor64"])
def test_steps_to_target_takes_lists_arrays_tensors_and_returns_a_python_int(convert):
    got = curves.steps_to_target(convert(STEPS), convert([0.25, 0.5, 0.625, 0.75, 0.875]), 0.625)
    assert got == 20 and type(got) is int
    assert curves.steps_to_target(convert(STEPS), convert([0.25] * 5), 0.5) is None


def test_steps_to_target_mixed_inputs_irregular_steps_and_a_tensor_target():
    steps = np.array([5, 17, 100, 250])
    acc = torch.tensor([0.1, 0.3, 0.2, 0.9], dtype=torch.float64)
    assert curves.steps_to_target(steps, acc, 0.25) == 17
    assert curves.steps_to_target(steps.tolist(), acc, torch.tensor(0.9)) == 250
    assert curves.steps_to_target(steps, acc.numpy(), np.float64(0.95)) is None


def test_steps_to_target_single_point_and_nan():
    assert curves.steps_to_target([7], [0.3], 0.3) == 7
    assert curves.steps_to_target([7], [0.3], 0.31) is None
    assert curves.steps_to_target([0, 1, 2], [0.1, math.nan, math.nan], 0.5) is None   # a diverged run
    assert curves.steps_to_target([0, 1, 2], [math.nan, 0.2, 0.6], 0.5) == 2


@pytest.mark.parametrize("steps, acc", [
    ([0, 10, 20], [0.5, 0.6]), ([0, 10], [0.5, 0.6, 0.7]),
    (np.arange(3), np.zeros(4)), (torch.arange(5), torch.zeros(2)),
    ([], []), (np.array([]), np.array([])), (torch.tensor([]), torch.tensor([])),
])
def test_steps_to_target_rejects_unequal_or_empty(steps, acc):
    with pytest.raises(ValueError):
        curves.steps_to_target(steps, acc, 0.5)


def test_steps_to_target_matches_a_plain_loop_on_random_curves():
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        n = int(torch.randint(1, 30, (1,), generator=g))
        steps = torch.cumsum(torch.randint(1, 20, (n,), generator=g), 0) - 1
        acc = torch.rand(n, generator=g, dtype=torch.float64)
        target = float(torch.rand(1, generator=g, dtype=torch.float64))
        expected = next((int(s) for s, a in zip(steps.tolist(), acc.tolist()) if a >= target), None)
        assert curves.steps_to_target(steps, acc, target) == expected
        assert curves.steps_to_target(steps.numpy(), acc.tolist(), target) == expected


def test_fewer_steps_ratio():
    steps = [0, 10, 20, 30, 40, 50]
    plain = [0.3, 0.5, 0.6, 0.7, 0.72, 0.71]      # target 0.71, first reached at step 40
    bn = [0.5, 0.7, 0.74, 0.75, 0.76, 0.76]        # reached at step 20
    assert curves.fewer_steps_ratio(steps, plain, bn) == pytest.approx(2.0)
    assert type(curves.fewer_steps_ratio(steps, plain, bn)) is float
    # BN at or above the target from the first point: its step count is clipped to 1
    assert curves.fewer_steps_ratio(steps, plain, [0.8] * 6) == pytest.approx(40.0)
    # the plain network at its final accuracy from the start: 0 steps, a ratio of 0
    assert curves.fewer_steps_ratio(steps, [0.71] * 6, bn) == 0.0
    # BN never reaches the target
    assert curves.fewer_steps_ratio(steps, plain, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) is None
    # arrays and tensors
    assert curves.fewer_steps_ratio(np.array(steps), torch.tensor(plain, dtype=torch.float64),
                                    np.array(bn)) == pytest.approx(2.0)
    # a NaN final accuracy is a target no curve reaches
    assert curves.fewer_steps_ratio([0, 1], [0.5, math.nan], [0.9, 0.9]) is None


@pytest.mark.parametrize("steps, plain, bn", [
    ([0, 10], [0.5, 0.6], [0.5]), ([0, 10], [0.5], [0.5, 0.6]), ([0], [0.5, 0.6], [0.5, 0.6]),
    ([], [], []),
])
def test_fewer_steps_ratio_rejects_unequal_or_empty(steps, plain, bn):
    with pytest.raises(ValueError):
        curves.fewer_steps_ratio(steps, plain, bn)
