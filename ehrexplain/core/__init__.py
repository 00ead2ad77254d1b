"""The layer every other one stands on: the split interface, attention capture, batch reading,
input validation and restoring a model's state. Nothing here imports from above it.

Example:
    >>> from ehrexplain.core import AttentionInterpretable, GradientInterpretable
    >>> issubclass(GradientInterpretable, AttentionInterpretable)
    True
"""

from .capture import PyHealthAttentionAdapter, as_attention_interpretable, capturing_attention
from .interfaces import AttentionInterpretable, CheferInterpretable, GradientInterpretable

__all__ = [
    "AttentionInterpretable", "GradientInterpretable", "CheferInterpretable",
    "PyHealthAttentionAdapter", "as_attention_interpretable", "capturing_attention",
]
