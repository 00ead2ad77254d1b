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
import re

__all__ = ["say", "checked", "check", "grade"]


class ClaimError(AssertionError):
    """A sentence a notebook was about to state is false for the values it computed."""


def say(template: str, *, holds=None, display: bool = True, **values) -> str:
    """Render Markdown ``template`` with ``values``; refuse to state it when ``holds`` is false.

    Args:
        template: Markdown with ``str.format`` fields, e.g. ``"AUROC {auc:.2f}"``.
        holds: for a sentence that compares, ranks or describes a trend, the condition that
            makes it true: best a Python expression over the named ``values`` (a string), which
            is shown under the sentence with the numbers it used, so the reader sees what was
            checked; a plain bool is accepted too. ``None`` means the sentence only reports values.
        display: show it (and the checked condition) as Markdown in the notebook; the rendered
            sentence is returned either way.

    Raises:
        ClaimError: ``holds`` is false; the message quotes the sentence and the condition.

    Example:
        >>> say("{a} beats {b}", holds="x > y", a="IG", b="rollout", x=0.7, y=0.6, display=False)
        'IG beats rollout'
    """
    text = template.format(**values)
    try:
        verdict = checked(holds, values)
    except ClaimError as error:
        raise ClaimError(f"this notebook was about to state something false: {text!r}; {error}") from None
    if display:
        from IPython.display import Markdown, display as show

        show(Markdown(text if verdict is None else f"{text}\n\n<small>{verdict}</small>"))
    return text


#: What a ``holds`` expression may call besides the named values.
_CONDITION_BUILTINS = {"abs": abs, "all": all, "any": any, "len": len, "max": max, "min": min, "round": round}


def checked(holds, values: dict) -> str | None:
    """The line that shows a claim's condition held, with the values it read; ``None`` without a condition.

    Raises:
        ClaimError: the condition is false.

    Example:
        >>> checked("low <= x", {"x": 0.454, "low": 0.469, "name": "rollout"})
        Traceback (most recent call last):
        ...
        ehrexplain.teaching.ClaimError: false: low <= x (low = 0.469, x = 0.454)
        >>> checked("x < low", {"x": 0.454, "low": 0.469})
        '✓ checked: x < low (x = 0.454, low = 0.469)'
    """
    if holds is None:
        return None
    if isinstance(holds, str):
        used = [name for name in dict.fromkeys(re.findall(r"[A-Za-z_]\w*", holds)) if name in values]
        shown = f"{holds} ({', '.join(f'{name} = {_short(values[name])}' for name in used)})" if used else holds
        holds = eval(holds, {"__builtins__": _CONDITION_BUILTINS}, dict(values))  # noqa: S307 (the notebook's own text)
    else:
        shown = "the stated condition"
    if not bool(holds):
        raise ClaimError(f"false: {shown}")
    return f"✓ checked: {shown}"


def _short(value) -> str:
    """A value as the checked line shows it: numbers to four significant digits."""
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return repr(value) if isinstance(value, str) else str(value)


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
