"""The alias decision: it moves unless the current version scores better, or when forced."""

from __future__ import annotations

from penguins.training.promotion import decide


def test_first_version_takes_the_alias():
    assert decide("champion", None, None, 0.9, force=False) == (True, "no champion yet")


def test_a_better_current_version_keeps_the_alias():
    moved, reason = decide("champion", "3", 0.99, 0.5, force=False)
    assert not moved
    assert "current champion v3 scores better" in reason
    assert "(0.9900 > 0.5000)" in reason
    assert "use --force" in reason


def test_force_moves_the_alias_from_a_better_version():
    moved, reason = decide("champion", "3", 0.99, 0.5, force=True)
    assert moved
    assert reason == "--force (current champion v3: 0.9900)"


def test_an_equal_score_moves_the_alias_to_the_newer_version():
    moved, reason = decide("champion", "1", 1.0, 1.0, force=False)
    assert moved
    assert reason == "scores 1.0000 >= current champion v1 (1.0000)"


def test_a_better_new_version_takes_the_alias_of_any_name():
    moved, reason = decide("staging", "2", 0.9, 0.95, force=False)
    assert moved
    assert "current staging v2" in reason
