"""ppinv: probabilistic programs run backwards.

Build the parametric inverse of a JAX program with :func:`inverse`, condition a
NumPyro model exactly on deterministic observations with :func:`condition`,
and sample it with the kernels in :mod:`ppinv.infer`.
"""

from . import errors, rules, theta
from .errors import (
    ConditionError,
    DomainError,
    InputError,
    InversionError,
    NoRuleError,
    OverdeterminedError,
    PPInvError,
    UnderdeterminedError,
)
from .inverse import Inverse, inverse
from .conditioning import ConditionedModel, condition
from .custom import custom_inverse
from . import diagnostics, infer, testing
from .rules import overlay, register_function_rule, register_rule, unregister_rule
from .cache import enable_compilation_cache  # noqa: F401

__version__ = "0.1.0"


def _hide_ppinv_frames():
    """Source locations in messages should point at user code, not at ppinv."""
    import os

    try:
        from jax._src import traceback_util

        traceback_util.register_exclusion(os.path.dirname(__file__))
    except Exception:  # pragma: no cover - JAX internals
        pass


_hide_ppinv_frames()

__all__ = [
    "inverse",
    "Inverse",
    "condition",
    "custom_inverse",
    "ConditionedModel",
    "infer",
    "testing",
    "diagnostics",
    "overlay",
    "register_rule",
    "register_function_rule",
    "unregister_rule",
    "rules",
    "theta",
    "errors",
    "PPInvError",
    "InputError",
    "InversionError",
    "NoRuleError",
    "OverdeterminedError",
    "UnderdeterminedError",
    "ConditionError",
    "DomainError",
]
