"""The README's quickstart runs as written and says what it claims."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quickstart_runs_and_its_comments_hold():
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    namespace: dict = {}
    exec(compile(code, "README quickstart", "exec"), namespace)
    batch, scores, delta = namespace["batch"], namespace["scores"], namespace["delta"]
    assert all(torch.allclose(s.sum(-1), torch.ones(4), atol=1e-5) for s in namespace["rollout"].values())
    total = sum(s.sum(-1) for s in scores.values())
    assert delta.shape == (4,) and torch.isfinite(namespace["lift_delta"]).all()
    assert (delta.abs() <= 0.05 * (total - delta).abs() + 1e-3).all()  # 32 Gauss-Legendre nodes: near complete
    assert set(namespace["truth"]) == set(k for k in batch if k in scores)
    # binary model: one logit; y_prob is its sigmoid, and every target index explains that logit
    model, chefer = namespace["model"], namespace["CheferRelevance"](namespace["model"])
    with torch.no_grad():
        logit = model(**batch)["logit"]
    assert logit.shape == (4, 1) and torch.allclose(namespace["p_label_1"], torch.sigmoid(logit[:, 0]))
    for target in (0, None):
        other = chefer.attribute(target_class_idx=target, **batch)
        assert all(torch.allclose(other[k], namespace["relevance"][k]) for k in other)
