"""The methods' warnings are public in one module and still import from their old homes."""

import warnings

import ehrexplain
from ehrexplain.core import exceptions


def test_warnings_public_in_one_module_and_old_locations_work():
    from ehrexplain.methods._deeplift_rules import InexactDeepLiftWarning as old_deeplift
    from ehrexplain.methods.integrated_gradients import ConvergenceWarning as old_ig

    assert ehrexplain.ConvergenceWarning is exceptions.ConvergenceWarning is old_ig
    assert ehrexplain.InexactDeepLiftWarning is exceptions.InexactDeepLiftWarning is old_deeplift
    assert {"ConvergenceWarning", "InexactDeepLiftWarning"} <= set(ehrexplain.__all__)
    with warnings.catch_warnings():  # each can be made an error alone
        warnings.simplefilter("error", exceptions.ConvergenceWarning)
        warnings.warn("not this one", exceptions.InexactDeepLiftWarning)
