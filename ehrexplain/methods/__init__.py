"""The four interpreters, one module each."""

from .attention_rollout import AttentionRollout
from .chefer import CheferRelevance

__all__ = ["AttentionRollout", "CheferRelevance"]
