"""Joint solves of one unknown through a rational function.

``z = b·x·(1 − x)`` uses ``x`` twice, and so does ``z = Vmax·x / (Km + x)``:
no single rule solves either. But the relations between ``x`` and ``z``
(sums, products, quotients and integer powers with known operands, element by
element) make ``z`` a ratio ``P(x) / Q(x)`` of polynomials whose coefficients
are computed from known values. Observing ``z = y`` leaves the polynomial
equation

    E(x) = y·Q(x) − P(x) = 0,

solved in closed form: degree 1 is the Möbius inverse ``x = −e₀/e₁`` (no θ);
degree 2 has two roots and a discrete θ (0: the larger root, 1: the smaller)
picks one. A root is admissible only where ``Q(x) ≠ 0`` (``Q`` is the product
of every divisor in the cone, so no division on the way is by zero) and ``x``
lies in the unknown's support (or the image of the relation defining it);
elsewhere the solve reports "not ok". Implicit differentiation of ``E`` gives

    log|dx/dy| = log|Q(x)| − log|E′(x)|,   |E′(root)| = √discriminant (degree 2).

**The degree is the true one.** The structure of the program bounds the
degree (``(a − a)·2a`` looks quadratic); the block evaluates the coefficients
at random values of its known inputs, and a coefficient that vanishes at every
one of them (within its own rounding bound) is identically zero. The equation
is solved at the degree that remains, and refused when the unknown cancels out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from ._ir import inputs_from_outside
from .errors import UnderdeterminedError
from .theta import ThetaSpec, int_dtype

__all__ = ["poly_degree", "cone_degree", "worth_solving", "PolynomialBlock", "MAX_DEGREE"]

MAX_DEGREE = 2
_SAMPLE_POINTS = 3  # random points of the known inputs at which identically-zero coefficients are found
_PASS_THROUGH = {lax.convert_element_type_p} | {getattr(lax, n) for n in ("copy_p",) if hasattr(lax, n)}
_SQUARE = getattr(lax, "square_p", None)
_OPS = {lax.add_p, lax.sub_p, lax.mul_p, lax.div_p, lax.neg_p, lax.integer_pow_p} | _PASS_THROUGH
if _SQUARE is not None:
    _OPS.add(_SQUARE)


# --- structural degrees ----------------------------------------------------------------
def _power(eqn):
    return eqn.params["y"] if eqn.prim is lax.integer_pow_p else 2


def poly_degree(eqn, degrees):
    """Degrees ``(deg P, deg Q)`` of ``eqn``'s output as a ratio ``P/Q`` in the leaf, given those
    of its inputs (absent: known, ``(0, 0)``); ``None`` where the relation is not rational."""
    p = eqn.prim
    if p not in _OPS or not all(o.is_float for o in eqn.outs):
        return None
    if p is lax.convert_element_type_p and not eqn.ins[0].is_float:
        return None
    d = [degrees.get(v, (0, 0)) for v in eqn.ins]
    if p in (lax.add_p, lax.sub_p):
        (p1, q1), (p2, q2) = d
        return max(p1 + q2, p2 + q1), q1 + q2
    if p is lax.mul_p:
        return d[0][0] + d[1][0], d[0][1] + d[1][1]
    if p is lax.div_p:
        return d[0][0] + d[1][1], d[0][1] + d[1][0]
    if p is lax.integer_pow_p or p is _SQUARE:
        k = _power(eqn)
        num, den = d[0]
        return (k * num, k * den) if k >= 0 else (-k * den, -k * num)
    return d[0]  # neg, convert_element_type, copy


def cone_degree(anchor, eqns, leaf):
    """Structural ``(deg P, deg Q)`` of ``anchor``'s output in ``leaf`` through ``eqns`` (the cone,
    anchor included, any order); ``None`` when a relation is not rational or not elementwise in
    the leaf's shape."""
    if any(o.shape != leaf.shape for e in eqns for o in e.outs):
        return None
    degrees = {leaf: (1, 0)}
    for e in sorted(eqns, key=lambda e: e.id):
        deg = poly_degree(e, degrees)
        if deg is None:
            return None
        degrees[e.outs[0]] = deg
    return degrees[anchor.outs[0]]


def worth_solving(degrees):
    """``True``: solve this cone; ``False``: grow it (a degree-1 polynomial is the linear
    block's, a larger cone may be of higher degree); ``None``: give up (degree too high)."""
    num, den = degrees
    degree = max(num, den)
    if degree > MAX_DEGREE:
        return None
    return degree >= 2 or (den > 0 and degree >= 1)


# --- rational arithmetic on coefficient lists ------------------------------------------
# A value is ``(num, den)``: coefficient lists (lowest degree first) of arrays of the leaf's
# shape; ``den`` is ``None`` for a polynomial (a denominator of 1, kept implicit so that
# polynomials keep their degree).
def _padd(a, b):
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0 * b[i]) + (b[i] if i < len(b) else 0 * a[i]) for i in range(n)]


def _pmul(a, b):
    if a is None or b is None:  # a denominator of 1
        return b if a is None else a
    out = [None] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            t = ai * bj
            out[i + j] = t if out[i + j] is None else out[i + j] + t
    return out


def _ppow(a, k, one):
    out = [one]
    for _ in range(k):
        out = _pmul(out, a)
    return out


def _rational(eqn, args, one, magnitude):
    """The ratio ``eqn`` computes from its inputs' ratios. With ``magnitude`` every sign is
    dropped (``−`` adds), which bounds each coefficient's size before cancellation."""
    p = eqn.prim
    if p in (lax.add_p, lax.sub_p):
        (n1, d1), (n2, d2) = args
        if p is lax.sub_p and not magnitude:
            n2 = [-c for c in n2]
        den = None if d1 is None and d2 is None else _pmul(d1, d2)
        return _padd(_pmul(n1, d2), _pmul(n2, d1)), den
    if p is lax.mul_p:
        (n1, d1), (n2, d2) = args
        return _pmul(n1, n2), (None if d1 is None and d2 is None else _pmul(d1, d2))
    if p is lax.div_p:
        (n1, d1), (n2, d2) = args
        return _pmul(n1, d2) if d2 is not None else n1, _pmul(d1, n2)
    if p is lax.neg_p:
        num, den = args[0]
        return (num if magnitude else [-c for c in num]), den
    if p is lax.integer_pow_p or p is _SQUARE:
        k = _power(eqn)
        num, den = args[0]
        num_k = _ppow(num, abs(k), one)
        den_k = None if den is None else _ppow(den, abs(k), one)
        if k >= 0:
            return num_k, den_k
        return (den_k if den_k is not None else [one]), num_k
    return args[0]  # convert_element_type, copy


def _horner(coeffs, x):
    out = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


class PolynomialBlock:
    """Solve ``anchor`` (known output) for the single leaf ``x`` of a rational cone.

    ``degree`` is the structural bound (an int, or ``(deg P, deg Q)`` as :func:`cone_degree`
    gives it); the block solves at the true degree. ``support`` is the leaf's support or
    image constraint: a root outside it is not admissible.
    """

    def __init__(self, anchor, eqns, leaf, degree, origin, support=None):
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self.leaf = leaf
        self.known_inputs = inputs_from_outside(self.eqns, leaf)
        self.support = None if support is constraints.real else support
        bound = max(degree) if isinstance(degree, tuple) else degree
        self._has_denominator = isinstance(degree, tuple) and degree[1] > 0
        self.degree = self._true_degree(bound)
        if self.degree == 0:
            raise UnderdeterminedError(
                f"the relation\n    {anchor.describe()}\ndoes not depend on {leaf!r}: written as a ratio of "
                f"polynomials in it, every coefficient that involves {leaf!r} is identically zero (the unknown "
                "cancels out), so its output does not determine it. Remove the cancelling terms, or make "
                f"{leaf!r} a free parameter of the program."
            )
        self.theta = ()
        if self.degree == 2:
            self.theta = (
                ThetaSpec(leaf.shape, np.dtype(int_dtype()), constraints.integer_interval(0, 1), "root", origin),
            )
        what = "rational" if self._has_denominator else "polynomial"
        kind = "Möbius (degree-1 rational)" if (self.degree, what) == (1, "rational") else f"degree-{self.degree} {what}"
        tail = "θ picks the root" if self.theta else "one root"
        self.description = f"solve a {kind} equation in {leaf!r}; {tail}"

    # -- the ratio ------------------------------------------------------------------
    def _ratio(self, read, xp, magnitude=False):
        """``(num, den)`` of the anchor's output in the leaf; ``read(v)`` gives known values."""
        dtype = self.leaf.dtype
        one = xp.ones(self.leaf.shape, dtype)
        env = {self.leaf: ([0 * one, one], None)}

        def value(v):
            if v in env:
                return env[v]
            val = xp.asarray(read(v), dtype) * one
            return [abs(val) if magnitude else val], None

        for e in self.eqns:
            env[e.outs[0]] = _rational(e, [value(v) for v in e.ins], one, magnitude)
        return env[self.anchor.outs[0]]

    def _known_reader(self, known_env):
        return lambda v: v.value if v.is_const else known_env[v]

    def _true_degree(self, bound):
        """The highest power of the leaf whose coefficient (in ``P`` or ``Q``) is not zero at
        every random point of the known inputs; ``bound`` where that cannot be evaluated."""
        rng = np.random.RandomState(0)
        eps = np.finfo(self.leaf.dtype).eps
        tol = 8 * (len(self.eqns) + 1) * eps  # a coefficient within its rounding bound of zero
        nonzero = set()
        try:
            for _ in range(_SAMPLE_POINTS):
                known = {}
                for v in self.known_inputs:
                    draw = rng.uniform(0.5, 2.0, v.shape) * rng.choice([-1.0, 1.0], v.shape)
                    known[v] = draw.astype(v.dtype) if v.is_float else np.ones(v.shape, v.dtype)
                read = lambda v, known=known: np.asarray(v.value) if v.is_const else known[v]
                with jax.ensure_compile_time_eval():
                    values = self._ratio(read, np)
                    sizes = self._ratio(read, np, magnitude=True)
                for coeffs, bounds in zip(values, sizes):
                    if coeffs is None:
                        nonzero.add(0)  # a denominator of 1
                        continue
                    for k, (c, m) in enumerate(zip(coeffs, bounds)):
                        if np.any(np.abs(np.asarray(c)) > tol * np.asarray(m)):
                            nonzero.add(k)
        except Exception:  # a known value that is not concrete here: keep the structural bound
            return bound
        return min(max(nonzero, default=0), bound)

    def equation(self, known_env, z):
        """Coefficients ``e₀ … e_d`` of ``E(x) = z·Q(x) − P(x)`` and the denominator ``Q``."""
        num, den = self._ratio(self._known_reader(known_env), jnp)
        den_c = den if den is not None else [jnp.ones_like(num[0])]
        n = self.degree + 1
        zero = jnp.zeros_like(num[0])
        pad = lambda c: (list(c) + [zero] * n)[:n]
        e = [z * q - p for p, q in zip(pad(num), pad(den_c))]
        return e, den_c

    # -- solve and PGF --------------------------------------------------------------
    def solve(self, known_env, z, theta):
        e, den = self.equation(known_env, z)
        if self.degree == 1:
            x, slope, ok = self._moebius(e)
        else:
            x, slope, ok = self._quadratic(e, theta[0])
        q = _horner(den, x)
        ok = ok & (q != 0)
        if self.support is not None:
            ok = ok & self.support.check(x)
        safe = lambda v: jnp.where(ok, jnp.abs(v), 1.0)
        ld = jnp.log(safe(q)) - jnp.log(safe(slope))
        return x, jnp.sum(ld), jnp.all(ok)

    @staticmethod
    def _moebius(e):
        e0, e1 = e
        ok = e1 != 0
        x = -e0 / jnp.where(ok, e1, 1.0)
        return x, e1, ok

    @staticmethod
    def _quadratic(e, choice):
        c0, c1, c2 = e
        disc = c1 * c1 - 4 * c2 * c0
        quad = c2 != 0
        ok_d = disc >= 0
        sq = jnp.sqrt(jnp.where(ok_d, disc, 1.0))
        c2s = jnp.where(quad, c2, 1.0)
        # the cancellation-free form: q = −(c1 + sign(c1)·√disc)/2, roots q/c2 and c0/q
        # (the textbook (−c1 ± √disc)/2c2 loses the small root when c1² ≫ |4 c2 c0|)
        q = -0.5 * (c1 + jnp.where(c1 >= 0, sq, -sq))
        q_ok = q != 0
        qs = jnp.where(q_ok, q, 1.0)
        hi = q / c2s
        lo = jnp.where(q_ok, c0 / qs, hi)  # q = 0 only for c1 = disc = 0: a double root
        hi, lo = jnp.maximum(hi, lo), jnp.minimum(hi, lo)
        # degenerate to linear where c2 == 0 at this point: a single root, reached with θ = 0
        lin = -c0 / jnp.where(c1 != 0, c1, 1.0)
        x = jnp.where(quad, jnp.where(choice == 0, hi, lo), lin)
        slope = jnp.where(quad, sq, c1)  # |E'(x)| at the root
        ok = jnp.where(quad, ok_d & (sq > 0), (c1 != 0) & (choice == 0))
        return x, slope, ok & ((choice == 0) | (choice == 1))

    def pgf(self, known_env, x):
        if self.degree < 2:
            return ()
        num, den = self._ratio(self._known_reader(known_env), jnp)
        z = _horner(num, x) / (_horner(den, x) if den is not None else 1.0)
        (c0, c1, c2), _ = self.equation(known_env, z)
        vertex = -c1 / (2 * jnp.where(c2 != 0, c2, 1.0))
        return (jnp.where(c2 != 0, x < vertex, False).astype(int_dtype()),)
