"""Learning-rate schedules: shapes, peaks, and the registry against the config's names."""

import pytest

from mlknobs.nn.schedules import SCHEDULES, learning_rate_at


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_start_near_and_never_exceed_the_peak(schedule):
    rates = [learning_rate_at(schedule, 0.5, s, 1000) for s in range(1000)]
    assert max(rates) <= 0.5 + 1e-12 and min(rates) > 0
    if schedule != "one-cycle":
        assert rates[0] == pytest.approx(0.5)


def test_shapes_of_the_schedules():
    assert learning_rate_at("step", 1.0, 499, 1000) == 1.0
    assert learning_rate_at("step", 1.0, 500, 1000) == pytest.approx(0.1)
    assert learning_rate_at("step", 1.0, 750, 1000) == pytest.approx(0.01)
    assert learning_rate_at("cosine", 1.0, 500, 1000) == pytest.approx(0.5)
    assert learning_rate_at("one-cycle", 1.0, 0, 1000) == pytest.approx(1 / 25)
    assert learning_rate_at("one-cycle", 1.0, 300, 1000) == pytest.approx(1.0)
    assert learning_rate_at("one-cycle", 1.0, 1000, 1000) == pytest.approx(1 / 25e4)


def test_the_registries_hold_exactly_the_configs_names():
    from mlknobs.config import LOSS_NAMES, SCHEDULE_NAMES
    from mlknobs.nn.losses import LOSSES

    assert tuple(SCHEDULES) == SCHEDULE_NAMES and tuple(LOSSES) == LOSS_NAMES
