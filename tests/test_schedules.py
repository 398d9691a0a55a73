"""Progress-based schedules (:mod:`umadapt.schedules`): the papers' coefficient and learning-rate formulas, their
values at the ends, and unknown names that list the valid ones."""

from __future__ import annotations

import math

import pytest

from umadapt.schedules import COEFFICIENT_SCHEDULES, LR_SCHEDULES, get_coefficient_schedule, get_lr_schedule


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_schedules_match_the_paper_formulas(p):
    assert get_coefficient_schedule("dann")(p) == pytest.approx(2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0, abs=1e-12)
    assert get_coefficient_schedule("dann", {"gamma": 5})(p) == pytest.approx(2.0 / (1.0 + math.exp(-5 * p)) - 1.0)
    assert get_lr_schedule("dann")(p) == pytest.approx(1.0 / (1.0 + 10.0 * p) ** 0.75, abs=1e-12)
    assert get_coefficient_schedule("constant", {"value": 0.3})(p) == 0.3
    assert get_coefficient_schedule("linear_warmup", {"warmup": 0.5})(p) == min(p / 0.5, 1.0)


def test_schedule_values_at_the_ends():
    assert get_coefficient_schedule("dann")(0.0) == 0.0
    assert get_coefficient_schedule("dann")(1.0) == pytest.approx(0.99991, abs=1e-5)
    assert get_lr_schedule("dann")(1.0) == pytest.approx(11**-0.75)


@pytest.mark.parametrize(("p", "rate"), [(0.0, 1.0), (0.25, 1.0), (0.5, 1.0), (0.75, 0.5), (1.0, 0.0), (1.5, 0.0)])
def test_cyclegan_rate_is_constant_then_decays_linearly_to_zero_over_the_second_half(p, rate):
    assert get_lr_schedule("linear_decay_second_half")(p) == pytest.approx(rate, abs=1e-12)


def test_unknown_schedule_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Valid names") as info:
        get_coefficient_schedule("dan")
    assert all(name in str(info.value) for name in COEFFICIENT_SCHEDULES)
    with pytest.raises(ValueError, match="Valid names") as info:
        get_lr_schedule("anneal")
    assert all(name in str(info.value) for name in LR_SCHEDULES) and "'dann'" in str(info.value)
    with pytest.raises(ValueError, match="gama.*gamma"):
        get_coefficient_schedule("dann", {"gama": 10})
