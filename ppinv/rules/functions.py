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

``jnp.hypot(x, k)`` guards ``√(x² + k²)`` against overflow with ``abs``, ``max``, ``min``
and a division, which no rule solves one by one; as a whole, with ``k`` known,
``x = ±√(z² − k²)`` (``z > |k|``), the sign a θ as for ``x²`` unless ``x``'s support
fixes it.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._compat import CALL_PRIMITIVES
from .table import DEFAULT_RULES
from ._base import BinaryRule, FunctionSolver, Solution, Solver, UnaryRule, _elementwise_theta, all_true, safe_where
from .elementwise import SIGN, _sign_of, _signed, sign_from_support


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


# -- library calls recognised by their body ----------------------------------------------------
_library_bodies: dict = {}  # (function, input shapes and dtypes) -> the library function's call body, as text


def is_library_call(eqn, fn) -> bool:
    """The kept call is the library function ``fn`` itself (its body, not just its name: a user's
    function may share the name) at these input shapes and dtypes."""
    body = eqn.params.get(CALL_PRIMITIVES.get(eqn.prim, ""), None)
    if body is None or not all(v.is_float for v in eqn.ins):
        return False
    # the body's own input types, weak types included: a Python-float operand changes the body
    avals = [v.aval for v in getattr(body, "jaxpr", body).invars]
    key = (fn, tuple((a.shape, str(a.dtype), getattr(a, "weak_type", False)) for a in avals))
    if key not in _library_bodies:
        args = [jax.ShapeDtypeStruct(a.shape, a.dtype, weak_type=getattr(a, "weak_type", False)) for a in avals]
        try:
            ref = jax.make_jaxpr(fn)(*args).jaxpr.eqns
        except (TypeError, ValueError):  # the library function does not take these inputs at all
            ref = []
        call = CALL_PRIMITIVES.get(ref[0].primitive) if len(ref) == 1 else None
        _library_bodies[key] = str(ref[0].params[call]) if call else None
    return str(body) == _library_bodies[key]


# -- jnp.linalg.inv --------------------------------------------------------------------------
def _is_linalg_inv(eqn):
    """The call is ``jnp.linalg.inv`` of a stack of square matrices."""
    (a,) = eqn.ins if len(eqn.ins) == 1 else (None,)
    if a is None or len(a.shape) < 2 or a.shape[-1] != a.shape[-2]:
        return False
    return is_library_call(eqn, jnp.linalg.inv)


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


# -- jnp.hypot ---------------------------------------------------------------------------------
class _HypotSolver(Solver):
    """``z = hypot(x, k)`` (either operand) for ``x`` with ``k`` known: ``x = s·√(z² − k²)``.

    ``log|dx/dz| = log z − ½·log(z² − k²)``; the domain ``z > |k|`` leaves out ``x = 0``,
    where ``dx/dz`` is infinite. ``s`` is the sign θ, or fixed when ``x``'s support has one sign.
    """

    def __init__(self, pat, unknown, sign):
        self.unknown, self.sign = unknown, sign
        x = pat.eqn.ins[unknown]
        self.theta = () if sign is not None else _elementwise_theta((SIGN,), x.shape, pat.eqn.describe())
        self.theta_hints = ("hypot_sign",) if self.theta else ()
        self.description = f"solve hypot for its {'left' if unknown == 0 else 'right'} operand"

    def _signs(self, theta):
        return self.sign if self.sign is not None else _signed(theta[0])

    def solve(self, ins, outs, theta):
        z = outs[0]
        k = jnp.abs(jnp.broadcast_to(ins[1 - self.unknown], jnp.shape(z)))
        ok = z > k
        gap = safe_where(ok, (z - k) * (z + k), 1.0)  # z² − k² without cancelling z² against k²
        x = self._signs(theta) * jnp.sqrt(gap)
        log_det = jnp.log(safe_where(ok, z, 1.0)) - 0.5 * jnp.log(gap)
        new_ins = list(ins)
        new_ins[self.unknown] = x
        return Solution(new_ins, list(outs), jnp.sum(log_det), all_true(ok))

    def pgf(self, ins, outs):
        return () if self.sign is not None else (_sign_of(ins[self.unknown]),)


class _HypotSameSolver(_HypotSolver):
    """``z = hypot(x, x) = √2·|x|``: ``x = s·z/√2``, ``z > 0``."""

    def solve(self, ins, outs, theta):
        z = outs[0]
        ok = z > 0
        x = self._signs(theta) * safe_where(ok, z, 1.0) / math.sqrt(2.0)
        log_det = jnp.full(jnp.shape(z), -0.5 * math.log(2.0))
        return Solution([x, x], list(outs), jnp.sum(log_det), all_true(ok))


def _hypot_rule(pat):
    """``jnp.hypot`` with one operand known (both unknown: the scheduler frees one)."""
    from .control import call_body_rule

    if not is_library_call(pat.eqn, jnp.hypot):
        return call_body_rule(pat)
    if not pat.known_out[0] or all(pat.known_in):
        return None
    if pat.same(0, 1):
        return _HypotSameSolver(pat, 0, sign_from_support(pat.in_support[0]))
    if pat.known_in[0] == pat.known_in[1]:
        return None
    unknown = 0 if not pat.known_in[0] else 1
    if pat.eqn.ins[unknown].shape != pat.eqn.outs[0].shape:
        return None  # a broadcast unknown would be over-determined
    return _HypotSolver(pat, unknown, sign_from_support(pat.in_support[unknown]))


DEFAULT_RULES.register_function("hypot", _hypot_rule)
