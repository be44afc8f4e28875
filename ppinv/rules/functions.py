"""Rules for library functions whose bodies cannot be inverted primitive by primitive.

``jnp.logaddexp`` (hence ``jax.nn.softplus`` and ``log_sigmoid``) is a
``custom_jvp`` function whose body uses its inputs several times (``max``,
``abs``, a NaN guard); as a whole it is a simple bijection in each argument.
Calls are recognised by the function's name and kept as one relation.

``jnp.linalg.inv`` is an ``lu`` factorisation and a ``custom_linear_solve``
of the unknown matrix, which no rule solves one by one; as a whole, ``z = a⁻¹``
is its own inverse, ``a = z⁻¹``, with ``log|det ∂a/∂z| = −2n·log|det z|``
per ``n × n`` matrix (``d(z⁻¹) = −z⁻¹ dz z⁻¹``). A call named ``inv`` whose
body is not ``jnp.linalg.inv``'s is solved through its body instead.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._compat import CALL_PRIMITIVES
from .table import DEFAULT_RULES
from ._base import BinaryRule, FunctionSolver, Solution, UnaryRule, all_true


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


# -- jnp.linalg.inv --------------------------------------------------------------------------
_inv_bodies: dict = {}  # (shape, dtype) -> jnp.linalg.inv's call body, as text


def _is_linalg_inv(eqn):
    """The call is ``jnp.linalg.inv`` of a stack of square matrices (its body, not just its name)."""
    (a,) = eqn.ins if len(eqn.ins) == 1 else (None,)
    if a is None or len(a.shape) < 2 or a.shape[-1] != a.shape[-2] or not a.is_float:
        return False
    key = (a.shape, str(a.dtype))
    if key not in _inv_bodies:
        ref = jax.make_jaxpr(jnp.linalg.inv)(jax.ShapeDtypeStruct(a.shape, a.dtype)).jaxpr.eqns
        _inv_bodies[key] = str(ref[0].params[CALL_PRIMITIVES[ref[0].primitive]]) if len(ref) == 1 else None
    body = eqn.params.get(CALL_PRIMITIVES.get(eqn.prim, ""), None)
    return body is not None and str(body) == _inv_bodies[key]


def _solve_inverse(ins, outs, theta):
    z = outs[0]
    n = z.shape[-1]
    sign, log_abs = jnp.linalg.slogdet(z)
    ok = (sign != 0) & jnp.isfinite(log_abs)
    safe = jnp.where(ok[..., None, None], z, jnp.eye(n, dtype=z.dtype))  # no NaN from a singular z
    log_abs = jnp.where(ok, log_abs, 0.0)
    return Solution([jnp.linalg.inv(safe)], list(outs), -2.0 * n * jnp.sum(log_abs), all_true(ok))


def _matrix_inverse_rule(pat):
    from .control import call_body_rule

    if not _is_linalg_inv(pat.eqn):
        return call_body_rule(pat)
    if not pat.known_out[0] or pat.known_in[0]:
        return None
    return FunctionSolver(_solve_inverse, description="a = inv(z): the matrix inverse is its own inverse")


DEFAULT_RULES.register_function("inv", _matrix_inverse_rule)
