"""A small, reproducible training loop for PyHealth models on CPU.

PyHealth's ``Trainer`` works too; this loop exists so that tests and notebooks
train a tiny model in seconds with a fixed seed and no logging or checkpoints.

Example:
    >>> from pyhealth.models import Transformer
    >>> from ehrexplain.data import make_cohort
    >>> ds = make_cohort(n_patients=40, seed=0).dataset
    >>> model = train_model(Transformer(dataset=ds, embedding_dim=16), ds, epochs=2, seed=0)
    >>> model.training       # trained, then handed back in eval mode
    False
"""

from __future__ import annotations

import torch
from torch import nn


def train_model(
    model: nn.Module,
    dataset,
    epochs: int = 5,
    lr: float = 1e-2,
    batch_size: int = 32,
    seed: int = 0,
) -> nn.Module:
    """Fit ``model`` on ``dataset`` with Adam and return it in eval mode.

    Deterministic for a seed: the shuffle order and dropout draw from ``seed``.
    """
    from pyhealth.datasets import get_dataloader

    torch.manual_seed(seed)
    loader = get_dataloader(dataset, batch_size=batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            optimizer.zero_grad()
            model(**batch)["loss"].backward()
            optimizer.step()
    return model.eval()
