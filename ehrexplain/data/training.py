"""A small, reproducible training loop for PyHealth models on CPU.

PyHealth's ``Trainer`` works too; this loop exists so that tests and notebooks
train a tiny model in seconds with a fixed seed and no logging or checkpoints.

Example:
    >>> # model = train_model(Transformer(dataset=ds, embedding_dim=32), ds, epochs=5, seed=0)
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
