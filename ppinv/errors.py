"""Errors ppinv raises. Each says what was wrong, where, and how to fix it."""

from __future__ import annotations

__all__ = [
    "PPInvError",
    "InversionError",
    "NoRuleError",
    "OverdeterminedError",
    "UnderdeterminedError",
    "InputError",
    "ConditionError",
]


class PPInvError(Exception):
    """Base class of every error raised by ppinv."""


class InputError(PPInvError, ValueError):
    """A value passed to ppinv has the wrong structure, shape or dtype."""


class InversionError(PPInvError):
    """The program cannot be inverted as written."""


class NoRuleError(InversionError):
    """A primitive (or a pattern of known/unknown operands) has no inverse rule."""


class OverdeterminedError(InversionError):
    """A relation would be used twice: the observations over-determine a variable."""


class UnderdeterminedError(InversionError):
    """The schedule needs more freedom than ``dim X - dim Y`` provides."""


class ConditionError(PPInvError, ValueError):
    """A NumPyro model cannot be conditioned as asked."""
