"""The notebook honesty helpers: false claims stop a run, checks speak, grading never stops it."""

import pytest

from ehrexplain.teaching import ClaimError, check, grade, say


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
