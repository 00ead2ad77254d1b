"""Recurrent layers as unrolled cell loops, so DeepLIFT's op rules see every gate.

``nn.RNN``/``nn.GRU``/``nn.LSTM`` run as one fused kernel that no torch function mode
can look inside. While :func:`unrolled_recurrences` is active they run instead as a
Python loop over time steps of their cell equations (``linear``, ``sigmoid``, ``tanh``,
products), with the same weights, layers, directions and packed-sequence lengths, so the
exact rules of ``_deeplift_rules`` apply to every gate. The results equal the fused
kernel's to float rounding. The modules are left as found, also on error.

Example:
    >>> gru = nn.GRU(3, 4, batch_first=True)
    >>> x = torch.randn(2, 5, 3)
    >>> with unrolled_recurrences(gru):
    ...     unrolled = gru(x)[0]
    >>> torch.allclose(unrolled, gru(x)[0], atol=1e-6)
    True
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def _cell(module: nn.RNNBase, x, state, weights):
    """One time step of ``module``'s cell: the new ``(h, c)`` (``c`` is ``None`` but for LSTM)."""
    w_ih, w_hh, b_ih, b_hh = weights
    h, c = state
    gates_x = torch.nn.functional.linear(x, w_ih, b_ih)
    gates_h = torch.nn.functional.linear(h, w_hh, b_hh)
    if isinstance(module, nn.GRU):
        r_x, z_x, n_x = gates_x.chunk(3, -1)
        r_h, z_h, n_h = gates_h.chunk(3, -1)
        r, z = torch.sigmoid(r_x + r_h), torch.sigmoid(z_x + z_h)
        n = torch.tanh(n_x + r * n_h)
        return n + z * (h - n), None  # (1 - z) n + z h
    if isinstance(module, nn.LSTM):
        i, f, g, o = (gates_x + gates_h).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    activation = torch.tanh if module.nonlinearity == "tanh" else torch.relu
    return activation(gates_x + gates_h), None


def _weights(module: nn.RNNBase, layer: int, reverse: bool):
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
    return tuple(getattr(module, name + suffix, None) for name in names)


def _run_direction(module, x, lengths, state, weights, reverse: bool):
    """Outputs ``[batch, time, hidden]`` and the final state of one layer in one direction.

    Padding steps (``t >= length``) keep the state unchanged, so the reverse direction
    starts at each sequence's own last step and the forward one ends there.
    """
    steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
    outputs = [None] * x.shape[1]
    for t in steps:
        real = (lengths > t)[:, None]
        new = _cell(module, x[:, t], state, weights)
        state = tuple(s if s is None else torch.where(real, n, s) for n, s in zip(new, state))
        outputs[t] = torch.where(real, state[0], torch.zeros_like(state[0]))
    return torch.stack(outputs, dim=1), state


def unrolled_forward(module: nn.RNNBase, input, hx=None):
    """``module(input, hx)`` computed step by step (same outputs and layout as the fused kernel)."""
    packed = isinstance(input, PackedSequence)
    if packed:
        x, lengths = pad_packed_sequence(input, batch_first=True)
    else:
        x = input if module.batch_first else input.transpose(0, 1)
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
    lengths = lengths.to(x.device)
    directions = 2 if module.bidirectional else 1
    lstm = isinstance(module, nn.LSTM)
    zeros = x.new_zeros(module.num_layers * directions, x.shape[0], module.hidden_size)
    h0, c0 = (hx if hx is not None else (zeros, zeros)) if lstm else (zeros if hx is None else hx, None)
    finals_h, finals_c = [], []
    for layer in range(module.num_layers):
        outputs = []
        for direction in range(directions):
            k = layer * directions + direction
            state = (h0[k], c0[k] if lstm else None)
            out, state = _run_direction(module, x, lengths, state, _weights(module, layer, direction == 1), direction == 1)
            outputs.append(out)
            finals_h.append(state[0])
            finals_c.append(state[1])
        x = torch.cat(outputs, dim=-1)  # inter-layer dropout is off in eval mode
    h_n = torch.stack(finals_h)
    hidden = (h_n, torch.stack(finals_c)) if lstm else h_n
    if packed:
        return pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False), hidden
    return (x if module.batch_first else x.transpose(0, 1)), hidden


def unrollable(module: nn.Module) -> bool:
    """Whether ``module`` is a recurrent layer this module can unroll (LSTM projections are not)."""
    return isinstance(module, (nn.RNN, nn.GRU, nn.LSTM)) and not getattr(module, "proj_size", 0)


@contextmanager
def unrolled_recurrences(model: nn.Module):
    """Every unrollable recurrent layer of ``model`` runs as its cell loop; always undone.

    Yields the list of unrolled modules.
    """
    swapped = [m for m in model.modules() if unrollable(m) and "forward" not in m.__dict__]
    try:
        for module in swapped:
            module.forward = unrolled_forward.__get__(module)
        yield swapped
    finally:
        for module in swapped:
            module.__dict__.pop("forward", None)
