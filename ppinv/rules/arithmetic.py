"""Rules for elementwise binary primitives: ``z = p(a, b)`` with one operand known.

When both operands are unknown and distinct, no rule applies: the scheduler
frees one of them from θ (DESIGN §3), which is exactly the ``a = θ, b = z/θ``
rule of the table in DESIGN §1 but lets the scheduler pick *which* operand.
When both operands are the *same* variable (``a + a``, ``a * a``) the relation
is unary in ``a`` and is solved as such.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .table import DEFAULT_RULES
from .._piecewise import FlatPiece
from ..theta import ThetaSpec, int_dtype, support_bounds
from .._block import concrete_const, const_has_zero
from ._base import BinaryRule, Solution, Solver, UnaryRule, all_true, known_value, xp_of
from .elementwise import SQUARE_RULE, _root_rule


def _zeros(z):
    return 0.0  # a log|det| known to be zero: the schedule drops it


def _positive(sup):
    return sup is constraints.positive or isinstance(sup, constraints.greater_than) and not isinstance(
        sup, constraints.greater_than_eq
    ) and _nonneg_bound(sup)


def _nonneg_bound(sup):
    try:
        return float(sup.lower_bound) >= 0
    except Exception:
        return False


def _both_positive(eqn, sup):
    if all(_positive(s) or _positive_const(v) for s, v in zip(sup, eqn.ins)):
        return constraints.positive
    return None


def _positive_const(v):
    return concrete_const(v) and bool(np.all(np.asarray(v.value) > 0))


# --- add / sub ----------------------------------------------------------------
# With both operands unknown and one of them bounded, freeing the other outright leaves a wall
# in θ-space (the solved operand leaves its support). The feasible split instead lets θ range
# over exactly the values of the freed operand for which the solved one stays in its support:
# ``x + y = s`` with ``x, y`` in (0, 1) gives ``x = lo + (hi − lo)·θ``, θ in (0, 1), with
# ``lo = max(0, s − 1)`` and ``hi = min(1, s)``. It generalises the simplex θ of a sum of
# positives (``x = s·θ``) to interval- and bound-supported summands.
class _FeasibleSplitSolver(Solver):
    """``z = a + b`` (``sign=+1``) or ``z = a − b`` (``sign=−1``), both operands unknown: θ places
    operand ``t`` in the interval where the other one, ``o = c_z·z + c_t·t``, stays in its support.

    The map ``(z, θ) → (t, o)`` has ``|det| = |∂t/∂θ|`` (the other operand is affine in ``z``
    and ``t`` with unit coefficients), so log|det| is ``log(hi − lo)`` for a bounded interval
    and 0 for a half-line (``t = lo + θ`` or ``t = hi − θ``, θ positive).
    """

    keeps_supports = True  # both operands stay in their supports for every θ: no wall

    def __init__(self, pat, t, t_bounds, o_bounds, sign):
        z = pat.eqn.outs[0]
        self.t = t
        # o = c_z·z + c_t·t:  add: o = z − t;  sub, t = a: b = t − z;  sub, t = b: a = z + t
        self.c_z, self.c_t = {(1, 0): (1, -1), (1, 1): (1, -1), (-1, 0): (-1, 1), (-1, 1): (1, 1)}[(sign, t)]
        self.t_bounds, self.o_bounds = t_bounds[:2], o_bounds[:2]
        lo, hi = self._bounds(0.0)
        self.finite = (math.isfinite(lo), math.isfinite(hi))
        support = constraints.unit_interval if all(self.finite) else constraints.positive
        name = pat.eqn.prim.name
        self.theta = (ThetaSpec(z.shape, z.dtype, support, "feasible", pat.eqn.describe()),)
        self.theta_hints = (f"{name}_feasible",)
        self.description = (f"split {name}: θ places operand {t} where operand {1 - t} stays in its support "
                            f"(the feasible {'interval' if all(self.finite) else 'half-line'})")

    def _bounds(self, z):
        """``(lo, hi)`` of the feasible values of ``t`` given ``z`` (NumPy-style broadcasting)."""
        o_lo, o_hi = self.o_bounds
        # o = c_z·z + c_t·t in [o_lo, o_hi]  <=>  c_t·t in [o_lo − c_z·z, o_hi − c_z·z]
        lo_o, hi_o = (o_lo - self.c_z * z, o_hi - self.c_z * z)
        if self.c_t < 0:
            lo_o, hi_o = -hi_o, -lo_o
        xp = xp_of(z)
        return xp.maximum(self.t_bounds[0], lo_o), xp.minimum(self.t_bounds[1], hi_o)

    def solve(self, ins, outs, theta):
        z = outs[0]
        (u,) = theta
        lo, hi = self._bounds(z)
        if all(self.finite):
            ok = hi > lo
            width = jnp.where(ok, hi - lo, 1.0)
            t = lo + width * u
            ld = jnp.sum(jnp.log(width))
        else:
            ok = None
            t = lo + u if self.finite[0] else hi - u
            ld = 0.0
        o = self.c_z * z + self.c_t * t
        new_ins = [None, None]
        new_ins[self.t], new_ins[1 - self.t] = t, o
        return Solution(new_ins, [z], ld, all_true(ok))

    def pgf(self, ins, outs):
        t = ins[self.t]
        lo, hi = self._bounds(outs[0])
        if all(self.finite):
            return ((t - lo) / (hi - lo),)
        return (t - lo if self.finite[0] else hi - t,)


def _restricts(bounds):
    return bounds is not None and (math.isfinite(bounds[0]) or math.isfinite(bounds[1]))


def _feasible_split(pat, sign):
    """The feasible split of ``z = a ± b`` when it applies (see ``_FeasibleSplitSolver``), else ``None``."""
    eqn = pat.eqn
    if not (pat.allow_theta and pat.known_out[0]) or any(pat.known_in) or pat.same(0, 1):
        return None
    if not all(pat.exclusive) or not all(v.is_float and v.shape == eqn.outs[0].shape for v in eqn.ins):
        return None  # another use could determine an operand; a broadcast operand is over-determined
    bounds = [support_bounds(s) for s in pat.in_support]
    # Only when both operands are bounded does freeing either one leave a wall; with one bounded,
    # the scheduler frees that one (θ then carries its support) and keeps its name.
    if not all(_restricts(b) for b in bounds):
        return None
    return _FeasibleSplitSolver(pat, 0, bounds[0], bounds[1], sign)


_ADD = BinaryRule(
    solve_left=lambda z, b: (z - b, _zeros(z), None),
    solve_right=lambda z, a: (z - a, _zeros(z), None),
    same=UnaryRule(lambda z: z / 2, lambda z, x: jnp.full(jnp.shape(z), -math.log(2.0), jnp.result_type(z))),
)
_SUB = BinaryRule(
    solve_left=lambda z, b: (z + b, _zeros(z), None),
    solve_right=lambda z, a: (a - z, _zeros(z), None),
)


def _add_rule(pat):
    return _feasible_split(pat, +1) or _ADD(pat)


def _sub_rule(pat):
    return _feasible_split(pat, -1) or _SUB(pat)


_add_rule.image = _both_positive
DEFAULT_RULES.register(lax.add_p, _add_rule)
DEFAULT_RULES.register(lax.sub_p, _sub_rule)


# --- mul / div ------------------------------------------------------------------
# The known operand may be a Python float, a NumPy or jax array, a model argument or a
# tracer: ``known_value`` makes it NumPy when its value is here, so that the zero check
# and log|det| are decided now; a tracer keeps them as run-time domain flags.
def _mul_solve(z, known):
    known = known_value(known)
    xp = xp_of(known)
    ok = known != 0
    k = xp.where(ok, known, 1)
    return z / k, -xp.log(xp.abs(k)), ok


def _div_left(z, b):  # z = a / b  ->  a = z * b
    b = known_value(b)
    xp = xp_of(b)
    ok = b != 0
    return z * b, xp.log(xp.abs(xp.where(ok, b, 1))), ok


def _div_right(z, a):  # z = a / b  ->  b = a / z
    ok = (z != 0) & (a != 0)
    zs = jnp.where(ok, z, 1)
    a_s = jnp.where(ok, a, 1)
    return a_s / zs, jnp.log(jnp.abs(a_s)) - 2 * jnp.log(jnp.abs(zs)), ok


_MUL = BinaryRule(solve_left=_mul_solve, solve_right=_mul_solve, same=SQUARE_RULE, image=_both_positive)


def _mul_rule(pat):
    """A product with a constant factor that is zero somewhere does not determine the other factor."""
    for i in (0, 1):
        if not pat.known_in[1 - i] and const_has_zero(pat.eqn.ins[i]):
            return None
    return _MUL(pat)


_mul_rule.image = _both_positive
DEFAULT_RULES.register(lax.mul_p, _mul_rule)
_DIV = BinaryRule(solve_left=_div_left, solve_right=_div_right, image=_both_positive)


def _div_rule(pat):
    """Division by a constant that is zero somewhere has no inverse for the numerator."""
    if not pat.known_in[0] and const_has_zero(pat.eqn.ins[1]):
        return None
    return _DIV(pat)


_div_rule.image = _both_positive
DEFAULT_RULES.register(lax.div_p, _div_rule)


# --- max / min ------------------------------------------------------------------------------
# ``z = max(x, c)`` with ``c`` known is piecewise: ``x`` where ``x > c``, and ``c`` — whatever ``x``
# is — where ``x <= c``. Solving ``x = z`` reaches only the first piece; the second is *flat* and
# is declared to the scheduler (``_piecewise/``), which refuses to solve through it with values
# computed from θ (the flat piece then holds posterior mass) and computes ``x`` forwards instead.
# With both operands unknown, θ picks which operand attains ``z`` and the positive gap to the
# other: every preimage, one continuous dimension per element, like ``reduce_max``.
def _clip_solver(strict_side):
    def solve(z, known):
        ok = strict_side(z, known)
        return z, _zeros(z), ok

    return solve


class _ArgExtremePairSolver(Solver):
    """``z = max(a, b)`` (or ``min``) with ``a``, ``b`` unknown: θ picks the operand equal to
    ``z`` (0: ``a``, 1: ``b``) and the gap ``g > 0`` to the other one, ``z ∓ g``."""

    def __init__(self, pat, sign):
        z = pat.eqn.outs[0]
        self.sign = sign  # +1: the other operand lies below z; -1: above
        name = "max" if sign > 0 else "min"
        self.theta = (
            ThetaSpec(z.shape, np.dtype(int_dtype()), constraints.integer_interval(0, 1), f"arg{name}",
                      pat.eqn.describe()),
            ThetaSpec(z.shape, z.dtype, constraints.positive, "gap", pat.eqn.describe()),
        )
        self.description = f"{name} of two unknowns: θ picks the operand that attains it and the gap to the other"

    def solve(self, ins, outs, theta):
        z = outs[0]
        k, gap = theta
        other = z - self.sign * gap
        a = jnp.where(k == 0, z, other)
        b = jnp.where(k == 0, other, z)
        ok = jnp.all(gap > 0) & jnp.all((k == 0) | (k == 1))
        # (z, gap) -> (a, b) is (z, z - gap) or (z - gap, z): |det| = 1
        return Solution([a, b], [z], 0.0, ok)

    def pgf(self, ins, outs):
        a, b = ins
        k = (self.sign * b > self.sign * a).astype(int_dtype())
        return k, self.sign * (outs[0] - jnp.where(k == 0, b, a))


def _extreme_pair_rule(sign, one_known):
    """The rule for ``max`` (``sign=+1``) or ``min`` (``-1``)."""
    region = "<=" if sign > 0 else ">="

    def on_flat(x, c):  # the output is c, whatever x
        return x <= c if sign > 0 else x >= c

    def rule(pat):
        if not pat.known_out[0] or all(pat.known_in):
            return None
        eqn = pat.eqn
        if not all(v.is_float for v in eqn.ins):
            return None  # an integer operand's flat piece has positive (counting) measure: forward only
        if not pat.same(0, 1) and not any(pat.known_in):
            z = eqn.outs[0]
            if pat.allow_theta and all(v.shape == z.shape for v in eqn.ins):
                return _ArgExtremePairSolver(pat, sign)
            return None
        solver = one_known(pat)
        if solver is not None and not pat.same(0, 1):
            i = pat.unknown_in[0]
            x, c = eqn.ins[i], eqn.ins[1 - i]
            solver.flat_pieces = (
                FlatPiece(eqn, x, c, (eqn.outs[0], c), f"{x!r} {region} {c!r}",
                          inside=lambda read, x=x, c=c: on_flat(read(x), read(c)), reads=(x, c)),
            )
        return solver

    return rule


_identity = UnaryRule(lambda z: z, lambda z, x: _zeros(z))
_MAX_ONE_KNOWN = BinaryRule(
    solve_left=_clip_solver(lambda z, b: z > b),
    solve_right=_clip_solver(lambda z, a: z > a),
    same=_identity,
)
_MIN_ONE_KNOWN = BinaryRule(
    solve_left=_clip_solver(lambda z, b: z < b),
    solve_right=_clip_solver(lambda z, a: z < a),
    same=_identity,
)
DEFAULT_RULES.register(lax.max_p, _extreme_pair_rule(+1, _MAX_ONE_KNOWN))
DEFAULT_RULES.register(lax.min_p, _extreme_pair_rule(-1, _MIN_ONE_KNOWN))


# --- pow --------------------------------------------------------------------------
def _pow_rule(pat):
    """``z = a ** b``. With ``b`` a constant integer, as ``integer_pow``; else ``a > 0``."""
    if pat.same(0, 1) or not pat.known_out[0]:
        return None
    if not pat.known_in[1] and pat.known_in[0]:
        return _POW_EXPONENT(pat)
    if pat.known_in[1] and not pat.known_in[0]:
        b = pat.const(1)
        if b is not None and np.ndim(b) == 0 and float(b) == int(b) and int(b) != 0:
            return _root_rule(int(b))(_as_unary(pat))
        return _POW_BASE(pat)
    return None


def _pow_base(z, b):
    ok = (z > 0) & (b != 0)
    zs = jnp.where(ok, z, 1)
    bs = jnp.where(ok, b, 1)
    return zs ** (1 / bs), -jnp.log(jnp.abs(bs)) + (1 / bs - 1) * jnp.log(zs), ok


def _pow_exponent(z, a):
    ok = (z > 0) & (a > 0) & (a != 1)
    zs = jnp.where(ok, z, 2)
    a_s = jnp.where(ok, a, 2)
    la = jnp.log(a_s)
    return jnp.log(zs) / la, -jnp.log(zs) - jnp.log(jnp.abs(la)), ok


_POW_BASE = BinaryRule(solve_left=_pow_base)
_POW_EXPONENT = BinaryRule(solve_right=_pow_exponent)


def _as_unary(pat):
    """The pattern of ``z = a ** const`` seen as a unary relation of ``a``."""
    from dataclasses import replace

    from .._ir import Eqn

    eqn = pat.eqn
    unary = Eqn(eqn.prim, eqn.params, eqn.ins[:1], eqn.outs, eqn.source)
    return replace(pat, eqn=unary, known_in=pat.known_in[:1], in_support=pat.in_support[:1])


DEFAULT_RULES.register(lax.pow_p, _pow_rule)


# --- atan2 ------------------------------------------------------------------------
# z = atan2(a, b) is the angle of the point (b, a): (a, b) = r (sin z, cos z) with r > 0.
def _atan2_left(z, b):  # a = b tan z, on the ray through angle z: b / cos z > 0
    c = jnp.cos(z)
    ok = (b != 0) & (b * c > 0) & (z > -jnp.pi) & (z <= jnp.pi)
    cs = jnp.where(ok, c, 1)
    return b * jnp.sin(z) / cs, jnp.log(jnp.abs(jnp.where(ok, b, 1))) - 2 * jnp.log(jnp.abs(cs)), ok


def _atan2_right(z, a):  # b = a / tan z, on the ray: a / sin z > 0
    s = jnp.sin(z)
    ok = (a != 0) & (a * s > 0) & (z > -jnp.pi) & (z <= jnp.pi)
    ss = jnp.where(ok, s, 1)
    return a * jnp.cos(z) / ss, jnp.log(jnp.abs(jnp.where(ok, a, 1))) - 2 * jnp.log(jnp.abs(ss)), ok


DEFAULT_RULES.register(lax.atan2_p, BinaryRule(solve_left=_atan2_left, solve_right=_atan2_right))


# Solving through a product or a power divides or takes roots: freeing the variable behind
# it keeps the other solves total (``schedule/ranking.py``).
for _prim in (lax.mul_p, lax.div_p, lax.pow_p, lax.integer_pow_p, getattr(lax, "square_p", None), lax.dot_general_p):
    if _prim is not None:
        DEFAULT_RULES.define("solve_cost", _prim, 1)
