"""Which method when: one row per registered method, its declared properties and its cost measured live.

Example:
    >>> from ehrexplain.methods import overview
    >>> table = overview(model, batch, integrated_gradients={"steps": 8})
    >>> table[["signed", "completeness", "needs"]].rename_axis(None)
                          signed    completeness                         needs
    rollout                False            none                attention maps
    chefer                 False            none  attention maps and gradients
    integrated_gradients    True  delta returned                     gradients
    deeplift                True  delta returned                     gradients
    occlusion               True            none           forward passes only
    >>> bool((table["ms_per_patient"] > 0).all())   # every method ran on this model, timed
    True
"""

from __future__ import annotations

import math
import time

from .registry import SPECS, make_interpreter


def overview(model, batch: dict, **method_options):
    """A ``pandas.DataFrame`` with one row per registered method (index: its name).

    Columns: ``label``; ``signed`` (scores carry a sign); ``class_specific``
    (depends on the class explained); ``completeness`` (``"delta returned"``
    when the method reports ``Σ scores - (f(x) - f(b))``, else ``"none"``);
    ``uses_baseline``; ``needs``; ``supported`` (``"yes"`` or why not);
    ``ms_per_patient``: one ``attribute`` call on ``batch`` at the method's
    defaults (or ``method_options[name]``), timed now on this model, divided
    by the batch size (NaN where unsupported); ``max_abs_delta``: the largest
    completeness error of that call (NaN without one).

    Example:
        >>> table = overview(model, cohort.batch(range(8)), integrated_gradients={"steps": 8})
        >>> list(table.columns)  # doctest: +NORMALIZE_WHITESPACE
        ['label', 'signed', 'class_specific', 'completeness', 'uses_baseline', 'needs', 'supported',
         'ms_per_patient', 'max_abs_delta']
        >>> table.loc[["integrated_gradients", "deeplift"], "max_abs_delta"].notna().tolist()   # the two with a delta
        [True, True]
    """
    import pandas as pd

    rows = {}
    for name, spec in SPECS.items():
        reason = spec.supports(model)
        row = {
            "label": spec.label, "signed": spec.signed, "class_specific": spec.class_specific,
            "completeness": "delta returned" if spec.has_delta else "none", "uses_baseline": spec.uses_baseline,
            "needs": spec.needs(), "supported": "yes" if reason is None else reason,
            "ms_per_patient": math.nan, "max_abs_delta": math.nan,
        }  # fmt: skip
        if reason is None:
            interpreter = make_interpreter(name, model, **method_options.get(name, {}))
            start = time.perf_counter()
            result = interpreter.attribute(**batch, **({"return_convergence_delta": True} if spec.has_delta else {}))
            seconds = time.perf_counter() - start
            row["ms_per_patient"] = 1000 * seconds / _batch_size(model, batch)
            if spec.has_delta:
                row["max_abs_delta"] = float(result[1].abs().max())
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")


def _batch_size(model, batch: dict) -> int:
    from ..core.batch import feature_value

    key = model.feature_keys[0]
    return int(feature_value(model, key, batch[key]).shape[0])
