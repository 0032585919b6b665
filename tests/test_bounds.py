"""The one range checker: what each Range admits, and how it says what it wants."""

import pytest

from mlknobs.bounds import Range


@pytest.mark.parametrize(("allowed", "inside", "outside"), [
    (Range(1, 10, integer=True), [1, 5, 10], [0, 11, 2.0, True, "3", None, 10 ** 400]),
    (Range(0, 600, low_open=True), [1e-9, 0.5, 600, 3], [0, -1, 600.1, float("nan"), float("inf"), "1"]),
    (Range(0, 1, high_open=True), [0, 0.999], [1, 1.0, -0.0001]),
    (Range(0, low_open=True), [1e-300, 10 ** 400], [0, -1, float("inf")]),
    (Range(0, integer=True), [0, 2 ** 80], [-1, 0.5]),
    (Range(high=5, high_open=True), [-1e300, 4.99], [5, float("-inf")]),
    (Range(), [0, -3.5, 1e308], [float("nan"), float("-inf"), False, [1]]),
])
def test_a_range_admits_numbers_of_its_kind_within_its_ends_and_nothing_else(allowed, inside, outside):
    assert all(allowed.admits(value) for value in inside)
    assert not any(allowed.admits(value) for value in outside)


@pytest.mark.parametrize(("allowed", "words"), [
    (Range(1, 65_536, integer=True), "a whole number from 1 to 65,536"),
    (Range(0, 2 ** 63 - 1, integer=True), "a whole number from 0 to 9,223,372,036,854,775,807"),
    (Range(0, 600, low_open=True), "a number > 0 and at most 600"),
    (Range(0, 0.9), "a number from 0 to 0.9"),
    (Range(0, 1, high_open=True), "a number from 0 to below 1"),
    (Range(0, 1, low_open=True, high_open=True), "a number > 0 and below 1"),
    (Range(0, integer=True), "a whole number >= 0"),
    (Range(0, low_open=True), "a positive number"),
    (Range(0.5, 20.0), "a number from 0.5 to 20"),
    (Range(1e-6, 1e6), "a number from 1e-06 to 1,000,000"),
    (Range(high=1.5), "a number <= 1.5"),
    (Range(), "a number"),
])
def test_a_range_describes_itself_in_words(allowed, words):
    assert allowed.describe() == words


def test_the_problem_names_the_value_and_the_range_but_never_shows_the_value():
    assert Range(0, 20, integer=True).problem(5000, "retries") == "retries must be a whole number from 0 to 20"
    assert Range(0, 20, integer=True).problem(20, "retries") is None
    assert Range(1e-6, 1e6).problem(float("nan"), "input std") == "input std must be a number from 1e-06 to 1,000,000"
