"""The notebook honesty helpers: false claims stop a run, checks speak, grading never stops it."""

import pytest

from ehrexplain.teaching import ClaimError, check, checked, grade, say


def test_say_renders_values_into_the_sentence():
    assert say("AUROC {auc:.2f} for {name}", auc=0.7712, name="IG", display=False) == "AUROC 0.77 for IG"


def test_say_refuses_a_false_ranking():
    with pytest.raises(ClaimError, match="IG beats Chefer"):
        say("{a} beats {b}", holds=0.6 > 0.7, a="IG", b="Chefer", display=False)


def test_say_states_a_true_ranking():
    assert say("{a} beats {b}", holds=0.7 > 0.6, a="IG", b="Chefer", display=False) == "IG beats Chefer"


def test_check_prints_what_it_verified_and_fails_loudly(capsys):
    check(True, "rows sum to 1")
    assert capsys.readouterr().out == "✓ rows sum to 1\n"
    with pytest.raises(AssertionError, match="rows sum to 1"):
        check(False, "rows sum to 1")


@pytest.mark.parametrize(
    "answer, expected, tolerance, verdict, text",
    [
        (None, 3, None, False, "not answered yet"),
        (..., 3, None, False, "not answered yet"),
        (3, 3, None, True, "correct"),
        (4, 3, None, False, "not yet: you answered 4"),
        (0.5004, 0.5, 1e-3, True, "correct"),
        (0.51, 0.5, 1e-3, False, "not yet"),
        ("abc", 0.5, 1e-3, False, "not yet"),
    ],
)
def test_grade_says_right_or_what_is_wrong_without_raising(capsys, answer, expected, tolerance, verdict, text):
    assert grade(answer, expected, tolerance=tolerance, hint="look at the plot") is verdict
    out = capsys.readouterr().out
    assert text in out
    assert ("Hint: look at the plot" in out) == (not verdict and answer not in (None, ...))


def test_a_checked_condition_is_shown_with_the_values_it_read():
    line = checked("rollout < low", {"rollout": 0.454, "low": 0.469, "name": "rollout"})
    assert line == "✓ checked: rollout < low (rollout = 0.454, low = 0.469)"


def test_a_false_condition_over_the_values_refuses_the_sentence():
    with pytest.raises(ClaimError, match=r"'rollout is within the random range'.*low <= rollout \(low = 0.469"):
        say("{m} is within the random range", holds="low <= rollout", m="rollout", rollout=0.454, low=0.469,
            display=False)


def test_say_shows_the_condition_under_the_sentence_when_it_holds(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    say("{a:.2f} rises to {b:.2f}", holds="b > a", a=0.39, b=0.45)
    assert shown[0].data == "0.39 rises to 0.45\n\n<small>✓ checked: b > a (b = 0.45, a = 0.39)</small>"
