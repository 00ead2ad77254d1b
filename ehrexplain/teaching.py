"""Helpers that keep a teaching notebook honest: prose computed from values, checks that speak.

A sentence that states a number or ranks methods is rendered from the values
beside it (:func:`say`), and a ranking is asserted as it is rendered
(``holds=``), so a re-run whose numbers change fails instead of leaving a stale
sentence. :func:`check` asserts a property and prints what it verified;
:func:`grade` tells a student whether an exercise answer is right, without
ever stopping the notebook.

Example:
    >>> say("IG recovers {auc:.2f} of the planted codes.", auc=0.771, display=False)
    'IG recovers 0.77 of the planted codes.'
    >>> check(0.77 > 0.51, "IG beats chance")
    ✓ IG beats chance
    >>> grade(0.5, 0.5, tolerance=1e-3)
    ✓ correct
    True
"""

from __future__ import annotations

import math

__all__ = ["say", "check", "grade"]


class ClaimError(AssertionError):
    """A sentence a notebook was about to state is false for the values it computed."""


def say(template: str, *, holds=None, display: bool = True, **values) -> str:
    """Render Markdown ``template`` with ``values``; refuse to state it when ``holds`` is false.

    Args:
        template: Markdown with ``str.format`` fields, e.g. ``"AUROC {auc:.2f}"``.
        holds: for a sentence that compares or ranks, the condition that makes it
            true. ``None`` means the sentence only reports values.
        display: show it as Markdown in the notebook (the rendered text is returned either way).

    Raises:
        ClaimError: ``holds`` is given and false; the message quotes the sentence.

    Example:
        >>> say("{a} beats {b}", holds=3 > 2, a="IG", b="rollout", display=False)
        'IG beats rollout'
    """
    text = template.format(**values)
    if holds is not None and not bool(holds):
        raise ClaimError(f"this notebook was about to state something false: {text!r}")
    if display:
        from IPython.display import Markdown, display as show

        show(Markdown(text))
    return text


def check(condition, what: str) -> None:
    """Assert a property and print ``✓ what`` when it holds.

    Raises:
        AssertionError: naming ``what`` when the condition is false.

    Example:
        >>> check(abs(sum([0.25, 0.75]) - 1) < 1e-9, "scores sum to 1")
        ✓ scores sum to 1
    """
    if not bool(condition):
        raise AssertionError(f"check failed: {what}")
    print(f"✓ {what}")


def grade(answer, expected, *, tolerance: float | None = None, hint: str = "") -> bool:
    """Say whether an exercise answer is right; never raises, so a notebook runs on unanswered.

    Args:
        answer: the student's value (``None`` or ``...`` means not answered yet).
        expected: the right value, computed by the notebook.
        tolerance: for numbers, the largest accepted absolute difference.
        hint: printed when the answer is wrong.

    Returns:
        ``True`` when correct.

    Example:
        >>> grade(None, 3)
        … not answered yet: replace the placeholder with your answer and run this cell again
        False
        >>> grade({"a", "b"}, {"b", "a"})
        ✓ correct
        True
    """
    if answer is None or answer is Ellipsis:
        print("… not answered yet: replace the placeholder with your answer and run this cell again")
        return False
    if tolerance is not None:
        try:
            correct = math.isclose(float(answer), float(expected), rel_tol=0.0, abs_tol=tolerance)
        except (TypeError, ValueError):
            correct = False
    else:
        correct = answer == expected
    if correct:
        print("✓ correct")
    else:
        print(f"✗ not yet: you answered {answer!r}" + (f". Hint: {hint}" if hint else ""))
    return correct
