"""How a PyHealth ``MambaBlock`` mixes positions, read as attention maps ("hidden attention").

Paper:
    Ameen Ali, Itamar Zimerman and Lior Wolf. "The Hidden Attention of Mamba
    Models." ACL 2025. https://arxiv.org/abs/2403.01590

PyHealth's block (``pyhealth.models.ehrmamba``) mixes positions twice: a causal
``conv1d`` (``K`` taps, every channel to every channel) and a linear
time-invariant SSM, per channel ``d`` the causal convolution
``y[t, d] = Σ_{s≤t} α_d[t, s] u[s, d]`` with ``α_d[t, s] = k_d[t − s]`` (plus
``D_d`` on the diagonal). Everything else in the block acts per position.

Choices (channels as heads, as in the paper):

- conv taps: channel ``d`` at ``s'`` reads lag ``j`` with weight
  ``Σ_i |W[d, i, K − 1 − j]|``, normalised over the lags that reach position 0
  or later, a row-stochastic map ``Ĉ_d``.
- rollout map: ``mean_d rownorm(|α_d|) @ Ĉ_d``, row-stochastic.
- Chefer map: ``mean_d max(α_d ⊙ ∂f/∂α_d, 0) @ Ĉ_d`` with
  ``∂f/∂α_d[t, s] = g[t, d] u[s, d]`` (``g``: gradient at the SSM's output).

Example:
    >>> from pyhealth.models.ehrmamba import MambaBlock
    >>> _ = torch.manual_seed(0); block = MambaBlock(d_model=4)
    >>> u = torch.randn(1, 5, 8)
    >>> bool(torch.allclose(torch.einsum("dts,bsd->btd", hidden_attention(block, 5), u), block._ssm_step(u), atol=1e-6))
    True
    >>> bool(torch.allclose(rollout_map(block, 5).sum(-1), torch.ones(5)))
    True
"""

from __future__ import annotations

import torch
from torch import nn

#: Values of the per-channel ``[batch, channels, L, L]`` Chefer maps held at once (64 MiB in float32).
CHANNEL_MAP_VALUES = 2**24


def ssm_kernel(block: nn.Module, length: int) -> torch.Tensor:
    """``[channels, length]``: ``k_d[l] = Σ_n C[d, n] Ā[d, n]^l B̄[d, n]``, as ``MambaBlock._ssm_step`` builds it.

    Example:
        >>> from pyhealth.models.ehrmamba import MambaBlock
        >>> ssm_kernel(MambaBlock(d_model=4), 3).shape
        torch.Size([8, 3])
    """
    A = -torch.exp(block.A_log.float())
    dt = torch.sigmoid(block.dt).unsqueeze(-1)
    A_bar = torch.exp(dt * A)
    B_bar = (torch.exp(dt * A) - 1) / (A + 1e-8) * block.B_param
    powers = A_bar.unsqueeze(-1).pow(torch.arange(length, device=A.device, dtype=A.dtype).view(1, 1, -1))
    return (block.C_param.unsqueeze(-1) * B_bar.unsqueeze(-1) * powers).sum(1)


def hidden_attention(block: nn.Module, length: int) -> torch.Tensor:
    """``[channels, length, length]``: the SSM's mixing ``α_d[t, s]``, lower-triangular.

    Example:
        >>> from pyhealth.models.ehrmamba import MambaBlock
        >>> alpha = hidden_attention(MambaBlock(d_model=4), 3)
        >>> bool((alpha.triu(1) == 0).all())   # causal
        True
    """
    lag = torch.arange(length)[:, None] - torch.arange(length)[None, :]
    kernel = ssm_kernel(block, length)
    alpha = kernel[:, lag.clamp(min=0)] * (lag >= 0).to(kernel)
    return alpha + torch.diag_embed(block.D.expand(length, -1).T)


def conv_taps(conv: nn.Conv1d, length: int) -> torch.Tensor:
    """``[channels, length, taps]``: the weight position ``s'`` of channel ``d`` gives to lag ``j``; rows sum to 1.

    Example:
        >>> taps = conv_taps(torch.nn.Conv1d(2, 2, 4, padding=3), 3)
        >>> taps[:, 0].tolist()[0][1:], bool(torch.allclose(taps.sum(-1), torch.ones(2, 3)))   # position 0: lag 0 only
        ([0.0, 0.0, 0.0], True)
    """
    per_lag = conv.weight.detach().abs().sum(1).flip(-1)  # [channels, taps], lag j = K - 1 - tap
    reaches = torch.arange(length)[:, None] >= torch.arange(per_lag.shape[-1])[None, :]
    taps = per_lag[:, None, :] * reaches.to(per_lag)
    return taps / taps.sum(-1, keepdim=True).clamp_min(torch.finfo(taps.dtype).tiny)


def through_conv(mixing: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """``mean_d mixing_d @ Ĉ_d``: per channel ``[..., channels, t, s']`` maps composed with the conv taps.

    Example:
        >>> through_conv(torch.eye(3).expand(2, 3, 3), conv_taps(torch.nn.Conv1d(2, 2, 1), 3)).equal(torch.eye(3))
        True
    """
    channels, length = mixing.shape[-3], mixing.shape[-1]
    out = mixing.new_zeros(mixing.shape[:-3] + (mixing.shape[-2], length))
    for lag in range(min(taps.shape[-1], length)):
        out[..., : length - lag] += torch.einsum("...dts,ds->...ts", mixing[..., lag:], taps[:, lag:, lag])
    return out / channels


def rollout_map(block: nn.Module, length: int) -> torch.Tensor:
    """``[length, length]`` row-stochastic map of the block: ``mean_d rownorm(|α_d|) @ Ĉ_d``.

    Example:
        >>> from pyhealth.models.ehrmamba import MambaBlock
        >>> rollout_map(MambaBlock(d_model=4), 3)[0].tolist()   # position 0 reads only itself
        [1.0, 0.0, 0.0]
    """
    alpha = hidden_attention(block, length).detach().abs()
    alpha = alpha / alpha.sum(-1, keepdim=True).clamp_min(torch.finfo(alpha.dtype).tiny)
    return through_conv(alpha, conv_taps(block.conv1d, length))


def gradient_weighted_map(block: nn.Module, u: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``[batch, length, length]``: ``mean_d max(α_d ⊙ g uᵀ, 0) @ Ĉ_d`` for SSM input ``u`` and output gradient ``g``.

    Example:
        >>> from pyhealth.models.ehrmamba import MambaBlock
        >>> u = torch.randn(2, 3, 8)
        >>> bool((gradient_weighted_map(MambaBlock(d_model=4), u, -u) >= 0).all())
        True
    """
    batch, length, channels = u.shape
    alpha = hidden_attention(block, length).detach().to(u)
    taps = conv_taps(block.conv1d, length).to(u)
    g, u = g.transpose(1, 2), u.transpose(1, 2)
    step = max(1, CHANNEL_MAP_VALUES // max(1, batch * length * length))  # channels per chunk: memory O(batch·L²)
    total = u.new_zeros(batch, length, length)
    for start in range(0, channels, step):
        part = slice(start, start + step)
        weighted = (alpha[part] * g[:, part, :, None] * u[:, part, None, :]).clamp(min=0)
        total += through_conv(weighted, taps[part]) * weighted.shape[-3]
    return total / channels
