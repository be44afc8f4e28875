"""Rules for library functions whose bodies cannot be inverted primitive by primitive.

``jnp.logaddexp`` (hence ``jax.nn.softplus`` and ``log_sigmoid``) is a
``custom_jvp`` function whose body uses its inputs several times (``max``,
``abs``, a NaN guard); as a whole it is a simple bijection in each argument.
Calls are recognised by the function's name and kept as one relation.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from . import DEFAULT_RULES
from ._base import BinaryRule, UnaryRule


def _logaddexp_solve(z, known):
    """z = log(e^a + e^b), b known: a = z + log(1 - e^(b - z)), defined for z > b."""
    ok = z > known
    d = jnp.where(ok, known - z, -1.0)
    log1m = jnp.log(-jnp.expm1(d))
    return z + log1m, -log1m, ok


LOGADDEXP_RULE = BinaryRule(
    solve_left=_logaddexp_solve,
    solve_right=_logaddexp_solve,
    same=UnaryRule(lambda z: z - math.log(2.0), lambda z, x: jnp.zeros_like(z)),
)
DEFAULT_RULES.register_function("logaddexp", LOGADDEXP_RULE)
