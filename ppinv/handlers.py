"""Transitional alias of :mod:`ppinv.conditioning` (``condition`` and the model it returns)."""

from .conditioning import THETA_PREFIX, ConditionalDensity, ConditionedModel, Plan, condition

__all__ = ["condition", "ConditionedModel", "ConditionalDensity", "Plan", "THETA_PREFIX"]
