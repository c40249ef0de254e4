"""The generator stage's report: the run's training rate is its mean, not the last epoch's."""

import pytest

from cemg_ray.generate.stage import mean_examples_per_s


def test_a_short_last_epoch_does_not_set_the_runs_rate() -> None:
    history = [{"train_s": 10.0, "examples": 8000, "examples_per_s": 800.0},
               {"train_s": 10.0, "examples": 9000, "examples_per_s": 900.0},
               {"train_s": 0.5, "examples": 3000, "examples_per_s": 6000.0}]  # the budget ended it early
    assert mean_examples_per_s(history) == pytest.approx(20000 / 20.5, abs=0.1)


def test_epochs_recorded_without_examples_fall_back_to_their_own_rate() -> None:
    history = [{"train_s": 4.0, "examples_per_s": 500.0}, {"train_s": 6.0, "examples": 4200, "examples_per_s": 700.0}]
    assert mean_examples_per_s(history) == pytest.approx((2000 + 4200) / 10.0)
    assert mean_examples_per_s([]) is None
