"""The notebooks' property checks can fail: a wrong implementation turns them red.

Each test breaks one method the way a plausible bug would, runs the notebook's
code cells in order (in this process, so the break is visible to them), and
expects a notebook ``assert`` to stop it. nbval runs the same cells in CI, so a
red cell here is a red CI there.
"""

import torch
from conftest import run_until

import ehrexplain.methods.attention_rollout as rollout_module
import ehrexplain.methods._deeplift_rules as deeplift_rules
import ehrexplain.methods.integrated_gradients as ig_module
from ehrexplain.data.demo import demo
from ehrexplain.data.planted_rule import PlantedRule
from ehrexplain.teaching import ClaimError


def run_until_a_check_fails(name: str) -> tuple[int, AssertionError]:
    """Execute the notebook's code cells in order; return the index of the cell whose assert failed, and the error."""
    index, _, error = run_until(name, AssertionError, "its method was broken")
    return index, error


def rollout_without_residual(attentions, head_fusion="mean", discard_ratio=0.0):
    """Bug: forgets the 0.5 of ``0.5 (A + I)``, so rows sum to 2 per layer."""
    rollout = None
    for attn in attentions:
        step = rollout_module.fuse_heads(attn, head_fusion) + torch.eye(attn.shape[-1])
        rollout = step if rollout is None else step @ rollout
    return rollout


def test_rollout_notebook_catches_a_missing_residual_half(monkeypatch):
    monkeypatch.setattr(rollout_module, "rollout_matrix", rollout_without_residual)
    run_until_a_check_fails("02_attention_rollout.ipynb")


def test_integrated_gradients_notebook_catches_gradient_times_input(monkeypatch):
    """Bug: every path point evaluated at alpha = 1, i.e. gradient x (input - baseline)."""
    path_gradients = ig_module._path_gradients

    def at_the_input_only(space, alphas, weights, targets, chunk_rows):
        return path_gradients(space, torch.ones_like(alphas), weights, targets, chunk_rows)

    monkeypatch.setattr(ig_module, "_path_gradients", at_the_input_only)
    run_until_a_check_fails("04_integrated_gradients.ipynb")


def test_deeplift_notebook_catches_a_missing_rescale_rule(monkeypatch):
    """Bug: no activation is swapped, so DeepLift degrades to gradient x (input - baseline)."""
    monkeypatch.setattr(deeplift_rules, "RESCALE_ACTIVATIONS", ())
    run_until_a_check_fails("05_deeplift.ipynb")


def test_deeplift_notebook_catches_a_wrong_product_rule(monkeypatch):
    """Bug: the product rule credits b with a instead of (a + a0) / 2, i.e. the gradient at x."""
    def input_rows_twice(t, dim):  # [a_x; a_x] where the Shapley split needs [(a_x + a_b)/2; same]
        x, _ = t.detach().chunk(2, dim)
        return torch.cat([x, x], dim)

    monkeypatch.setattr(deeplift_rules, "_midpoints", input_rows_twice)
    run_until_a_check_fails("05_deeplift.ipynb")


def test_a_false_sentence_stops_the_notebook(monkeypatch):
    """Prose is computed: when the numbers make a sentence false, the run stops there (no stale sentence).

    Notebook 04 states that the planted rule never reads the code IG blames for a
    no-driver patient. A rule that reads every code makes that sentence false.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # build the demo as the notebook does (its labels come from the true rule)
    try:
        demo()
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(PlantedRule, "score", lambda self, codes: float(len(set(codes))))
    index, error = run_until_a_check_fails("04_integrated_gradients.ipynb")
    assert isinstance(error, ClaimError), f"cell {index} stopped with {error!r}, not with a refused sentence"
    assert "the rule never reads it" in str(error)
