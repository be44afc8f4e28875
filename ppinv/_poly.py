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
picks one; degree 3 (van der Waals' ``P(V)``) has one or three real roots
(Cardano's and the trigonometric form, polished by Newton's method) and a
discrete θ picks one by rank (0: the largest real root), a code beyond the
real roots being outside the domain — unless ``F = P/Q`` is proven strictly
monotone over the leaf's support (``_monotone.derivative_sign``), when at most
one root is admissible and it is taken with no θ. A root is admissible only where ``Q(x) ≠ 0`` (``Q`` is the product
of every divisor in the cone, so no division on the way is by zero) and ``x``
lies in the unknown's support (or the image of the relation defining it);
elsewhere the solve reports "not ok". Implicit differentiation of ``E`` gives

    log|dx/dy| = log|Q(x)| − log|E′(x)|,   |E′(root)| = √discriminant (degree 2).

**The degree is the true one.** The structure of the program bounds the
degree (``(a − a)·2a`` looks quadratic); the block evaluates the coefficients
at random values of its known inputs, and a coefficient that vanishes at every
one of them (within its own rounding bound) is identically zero. The equation
is solved at the degree that remains, and refused when the unknown cancels out.

**Kinks.** ``|u|`` of a rational ``u`` (softsign's ``x / (1 + |x|)``) is
``s·u`` with a sign ``s`` per kink: each sign pattern is a rational branch,
and a root of a branch is admissible only where every ``u`` has that branch's
sign (``u ≥ 0`` for ``+``, ``u < 0`` for ``−``). The candidates are then the
roots of every branch; a discrete θ picks one, unless the block proves at
build time that at most one is ever admissible: every coefficient a constant,
degree 1, each kink's argument affine in the unknown, and the Möbius map of
every region between the kinks free of poles and increasing (or every one
decreasing). The function is then strictly monotone and the one admissible
candidate is taken. A branch on which the output does not depend on the
unknown (``x − |x|`` for ``x ≥ 0``) is a flat piece: refused.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .ir import inputs_from_outside
from .errors import InversionError, UnderdeterminedError
from .theta import ThetaSpec, int_dtype

__all__ = ["poly_degree", "cone_degree", "worth_solving", "Degree", "PolynomialBlock", "MAX_DEGREE", "Rational",
           "default_rationals", "padd", "pmul", "ppow"]

MAX_DEGREE = 3
MAX_KINKS = 2  # |u| terms in one cone: 2^k sign branches
_SAMPLE_POINTS = 3  # random points of the known inputs at which identically-zero coefficients are found


# --- the rational slot of the rule table ---------------------------------------------------
class Rational(NamedTuple):
    """What a primitive is as a rational function of its inputs: the ``rational`` slot.

    * ``degree(eqn, d) -> (deg P, deg Q) | None``: the output's degrees as a ratio ``P/Q``
      in the unknown, given each input's (``d``, ``(0, 0)`` for a known one); ``None``
      where this equation is not rational (a parameter, a dtype);
    * ``combine(eqn, args, one, magnitude, sign) -> (num, den)``: the output's coefficient
      lists from the inputs' (``args``: ``(num, den)`` pairs, lowest degree first, ``den``
      ``None`` for a polynomial; ``one``: the constant 1 of the leaf's shape); with
      ``magnitude`` every sign is dropped (``−`` adds), which bounds each coefficient's
      size before cancellation; ``sign`` is the branch's sign of a kink;
    * ``divisor(eqn) -> input index | None``: the input that must not be zero;
    * ``kink``: ``|u|``-like, ``s·u`` with a sign ``s`` per branch.

    Fill it for a new primitive with :func:`ppinv.rules.defrational`.
    """

    degree: object
    combine: object
    divisor: object = None
    kink: bool = False


def padd(a, b):
    """The sum of two coefficient lists (lowest degree first)."""
    n = max(len(a), len(b))
    return [(a[i] if i < len(a) else 0 * b[i]) + (b[i] if i < len(b) else 0 * a[i]) for i in range(n)]


def pmul(a, b):
    """The product of two coefficient lists; ``None`` is the polynomial 1."""
    if a is None or b is None:  # a denominator of 1
        return b if a is None else a
    out = [None] * (len(a) + len(b) - 1)
    for i, ai in enumerate(a):
        for j, bj in enumerate(b):
            t = ai * bj
            out[i + j] = t if out[i + j] is None else out[i + j] + t
    return out


def ppow(a, k, one):
    """``a**k`` for a coefficient list and an integer ``k ≥ 0``."""
    out = [one]
    for _ in range(k):
        out = pmul(out, a)
    return out


def _negate(coeffs, magnitude):
    return coeffs if magnitude else [-c for c in coeffs]


def _sum_degree(eqn, d):
    (p1, q1), (p2, q2) = d
    return max(p1 + q2, p2 + q1), q1 + q2


def _sum(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    if eqn.prim is lax.sub_p:
        n2 = _negate(n2, magnitude)
    den = None if d1 is None and d2 is None else pmul(d1, d2)
    return padd(pmul(n1, d2), pmul(n2, d1)), den


def _product(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    return pmul(n1, n2), (None if d1 is None and d2 is None else pmul(d1, d2))


def _quotient(eqn, args, one, magnitude, sign):
    (n1, d1), (n2, d2) = args
    return pmul(n1, d2) if d2 is not None else n1, pmul(d1, n2)


def _power_of(eqn):
    return eqn.params["y"] if eqn.prim is lax.integer_pow_p else 2


def _power_degree(eqn, d):
    k = _power_of(eqn)
    num, den = d[0]
    return (k * num, k * den) if k >= 0 else (-k * den, -k * num)


def _power(eqn, args, one, magnitude, sign):
    k = _power_of(eqn)
    num, den = args[0]
    num_k = ppow(num, abs(k), one)
    den_k = None if den is None else ppow(den, abs(k), one)
    if k >= 0:
        return num_k, den_k
    return (den_k if den_k is not None else [one]), num_k


def _same_degree(eqn, d):
    return d[0]


def _negation(eqn, args, one, magnitude, sign):
    num, den = args[0]
    return _negate(num, magnitude), den


def _absolute(eqn, args, one, magnitude, sign):
    num, den = args[0]
    return (num if sign > 0 else _negate(num, magnitude)), den


def _identity(eqn, args, one, magnitude, sign):
    return args[0]


def _float_to_float(eqn, d):
    return d[0] if eqn.ins[0].is_float else None


def default_rationals():
    """The built-in ``rational`` slots: sums, products, quotients, integer powers, ``|u|``, casts."""
    out = {
        lax.add_p: Rational(_sum_degree, _sum),
        lax.sub_p: Rational(_sum_degree, _sum),
        lax.mul_p: Rational(lambda e, d: (d[0][0] + d[1][0], d[0][1] + d[1][1]), _product),
        lax.div_p: Rational(lambda e, d: (d[0][0] + d[1][1], d[0][1] + d[1][0]), _quotient, divisor=lambda e: 1),
        lax.integer_pow_p: Rational(_power_degree, _power,
                                    divisor=lambda e: 0 if e.params["y"] < 0 else None),
        lax.neg_p: Rational(_same_degree, _negation),
        lax.abs_p: Rational(_same_degree, _absolute, kink=True),
        lax.convert_element_type_p: Rational(_float_to_float, _identity),
    }
    for name in ("square_p", "copy_p"):
        prim = getattr(lax, name, None)
        if prim is not None:
            out[prim] = Rational(_power_degree, _power) if name == "square_p" else Rational(_same_degree, _identity)
    return out


# --- structural degrees ----------------------------------------------------------------
def poly_degree(eqn, degrees, table):
    """Degrees ``(deg P, deg Q)`` of ``eqn``'s output as a ratio ``P/Q`` in the leaf, given those
    of its inputs (absent: known, ``(0, 0)``); ``None`` where the relation is not rational
    (its ``rational`` slot in ``table`` is empty, or says so)."""
    rule = table.slot("rational", eqn.prim)
    if rule is None or not all(o.is_float for o in eqn.outs):
        return None
    return rule.degree(eqn, [degrees.get(v, (0, 0)) for v in eqn.ins])


class Degree(NamedTuple):
    """Structural degrees of a cone's output ``P/Q`` in its leaf, and how many ``|u|`` it has."""

    num: int
    den: int
    kinks: int = 0


def cone_degree(anchor, eqns, leaf, table):
    """Structural :class:`Degree` of ``anchor``'s output in ``leaf`` through ``eqns`` (the cone,
    anchor included, any order); ``None`` when a relation is not rational (with kinks) or not
    elementwise in the leaf's shape."""
    if any(o.shape != leaf.shape for e in eqns for o in e.outs):
        return None
    degrees = {leaf: (1, 0)}
    for e in sorted(eqns, key=lambda e: e.id):
        deg = poly_degree(e, degrees, table)
        if deg is None:
            return None
        degrees[e.outs[0]] = deg
    return Degree(*degrees[anchor.outs[0]], kinks=sum(table.slot("rational", e.prim).kink for e in eqns))


def worth_solving(degrees):
    """``True``: solve this cone; ``False``: grow it (a degree-1 polynomial is the linear
    block's, a larger cone may be of higher degree); ``None``: give up (degree too high)."""
    num, den, kinks = degrees if isinstance(degrees, Degree) else Degree(*degrees)
    degree = max(num, den)
    if degree > MAX_DEGREE or kinks > MAX_KINKS:
        return None
    return degree >= 2 or (degree >= 1 and (den > 0 or kinks > 0))


def _horner(coeffs, x):
    out = coeffs[-1]
    for c in reversed(coeffs[:-1]):
        out = out * x + c
    return out


class PolynomialBlock:
    """Solve ``anchor`` (known output) for the single leaf ``x`` of a rational cone.

    ``degree`` is the structural bound (an int, or a :class:`Degree` as :func:`cone_degree`
    gives it); the block solves at the true degree. ``support`` is the leaf's support or
    image constraint: a root outside it is not admissible.
    """

    def __init__(self, anchor, eqns, leaf, degree, origin, support=None, *, table):
        self.anchor = anchor
        self.eqns = sorted(eqns, key=lambda e: e.id)
        self._rules = {e: table.slot("rational", e.prim) for e in self.eqns}
        self.leaf = leaf
        self.known_inputs = inputs_from_outside(self.eqns, leaf)
        self.support = None if support is constraints.real else support
        self.kinks = [e for e in self.eqns if self._rules[e].kink]
        self.branches = list(itertools.product((1, -1), repeat=len(self.kinks)))  # one sign per kink
        bound = max(degree[:2]) if isinstance(degree, tuple) else degree
        self._has_denominator = isinstance(degree, tuple) and degree[1] > 0
        degrees = [self._true_degree(bound, signs) for signs in self.branches]
        self._refuse_constant_branches(degrees)
        self.degree = max(degrees)
        self.n_codes = len(self.branches) * self.degree  # candidates: a root of a branch
        self.unique = self.n_codes == 1 or self._monotone_certificate()
        self.theta = ()
        if not self.unique:
            support = constraints.integer_interval(0, self.n_codes - 1)
            self.theta = (ThetaSpec(leaf.shape, np.dtype(int_dtype()), support, "root", origin),)
        self.description = self._describe()

    def _describe(self):
        what = "rational" if self._has_denominator else "polynomial"
        kind = "Möbius (degree-1 rational)" if (self.degree, what) == (1, "rational") else f"degree-{self.degree} {what}"
        kinks = f" ({len(self.kinks)} |·| kink(s): a sign per branch)" if self.kinks else ""
        tail = "θ picks the root" if self.theta else ("one root" if self.n_codes == 1 else "provably one admissible root")
        return f"solve a {kind} equation in {self.leaf!r}{kinks}; {tail}"

    def _refuse_constant_branches(self, degrees):
        if all(d > 0 for d in degrees):
            return
        if len(self.branches) == 1:
            raise UnderdeterminedError(
                f"the relation\n    {self.anchor.describe()}\ndoes not depend on {self.leaf!r}: written as a ratio "
                f"of polynomials in it, every coefficient that involves {self.leaf!r} is identically zero (the "
                "unknown cancels out), so its output does not determine it. Remove the cancelling terms, or make "
                f"{self.leaf!r} a free parameter of the program."
            )
        flat = self.branches[degrees.index(0)]
        where = ", ".join(f"{k.ins[0]!r} {'≥ 0' if s > 0 else '< 0'}" for k, s in zip(self.kinks, flat))
        raise InversionError(
            f"the relation\n    {self.anchor.describe()}\nhas a flat piece: where {where}, its output does not "
            f"depend on {self.leaf!r}, so a whole interval of {self.leaf!r} maps to one value and solving would "
            "drop that piece. Write the piece with jnp.where, or make the variable a free parameter."
        )

    # -- the ratio ------------------------------------------------------------------
    def _walk(self, read, xp, signs, magnitude=False):
        """``(num, den)`` of every variable of the cone in the leaf, in the branch ``signs``;
        ``read(v)`` gives known values."""
        dtype = self.leaf.dtype
        one = xp.ones(self.leaf.shape, dtype)
        env = {self.leaf: ([0 * one, one], None)}
        sign_of = dict(zip(self.kinks, signs))

        def value(v):
            if v in env:
                return env[v]
            val = xp.asarray(read(v), dtype) * one
            return [abs(val) if magnitude else val], None

        for e in self.eqns:
            env[e.outs[0]] = self._rules[e].combine(e, [value(v) for v in e.ins], one, magnitude, sign_of.get(e, 1))
        return env

    def _known_reader(self, known_env):
        return lambda v: v.value if v.is_const else known_env[v]

    def _true_degree(self, bound, signs):
        """The highest power of the leaf whose coefficient (in ``P`` or ``Q``) is not zero at
        every random point of the known inputs; ``bound`` where that cannot be evaluated."""
        rng = np.random.RandomState(0)
        eps = np.finfo(self.leaf.dtype).eps
        tol = 8 * (len(self.eqns) + 1) * eps  # a coefficient within its rounding bound of zero
        out = self.anchor.outs[0]
        nonzero = set()
        try:
            for _ in range(_SAMPLE_POINTS):
                known = {}
                for v in self.known_inputs:
                    draw = rng.uniform(0.5, 2.0, v.shape) * rng.choice([-1.0, 1.0], v.shape)
                    known[v] = draw.astype(v.dtype) if v.is_float else np.ones(v.shape, v.dtype)
                read = lambda v, known=known: np.asarray(v.value) if v.is_const else known[v]
                with jax.ensure_compile_time_eval():
                    values = self._walk(read, np, signs)[out]
                    sizes = self._walk(read, np, signs, magnitude=True)[out]
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

    def _monotone_certificate(self):
        """True when at most one candidate can ever be admissible (see the module notes): constant
        coefficients, degree 1, kinks affine in the leaf, and the Möbius map of every region
        between the kinks pole-free with a derivative of one sign throughout; or, for a cubic,
        ``F`` proven strictly monotone on the leaf's support by interval bounds of ``F′``
        (known inputs over the whole line)."""
        if self.degree == 3:
            from ._monotone import derivative_sign

            try:
                return derivative_sign(self.eqns, self.leaf, self.support or constraints.real, lambda v: None) != 0
            except Exception:  # a primitive with no interval bounds, a bound not concrete here
                return False
        if self.known_inputs or self.degree != 1:
            return False
        try:
            with jax.ensure_compile_time_eval():
                return self._certify_regions(lambda v: np.asarray(v.value))
        except Exception:  # a constant that is not concrete here
            return False

    def _certify_regions(self, read):
        base = self._walk(read, np, self.branches[0])
        lines = []  # each kink's argument a·x + c
        for k in self.kinks:
            num, den = base[k.ins[0]]
            coeffs = [_one_value(c) for c in num]
            if den is not None or len(coeffs) > 2 or any(c is None for c in coeffs) or len(coeffs) < 2 or coeffs[1] == 0:
                return False
            lines.append((coeffs[1], coeffs[0]))
        lo, hi = _support_bounds(self.support)
        cuts = sorted({-c / a for a, c in lines if lo < -c / a < hi})
        edges = [lo] + cuts + [hi]
        directions = set()
        for left, right in zip(edges[:-1], edges[1:]):
            mid = _interior_point(left, right)
            signs = tuple(1 if a * mid + c >= 0 else -1 for a, c in lines)
            num, den = self._walk(read, np, signs)[self.anchor.outs[0]]
            p = [_one_value(c) for c in (list(num) + [0.0, 0.0])[:2]]
            q = [1.0, 0.0] if den is None else [_one_value(c) for c in (list(den) + [0.0, 0.0])[:2]]
            if any(c is None for c in p + q):
                return False
            if q[1] != 0 and left <= -q[0] / q[1] <= right:  # a pole in the region (or at its edge)
                return False
            if q[1] == 0 and q[0] == 0:
                return False
            det = p[1] * q[0] - p[0] * q[1]  # f' = det / Q²
            if det == 0:
                return False
            directions.add(det > 0)
        return len(directions) == 1

    def equation(self, env, z):
        """Coefficients ``e₀ … e_d`` of ``E(x) = z·Q(x) − P(x)`` and the denominator ``Q``."""
        num, den = env[self.anchor.outs[0]]
        den_c = den if den is not None else [jnp.ones_like(num[0])]
        n = self.degree + 1
        zero = jnp.zeros_like(num[0])
        pad = lambda c: (list(c) + [zero] * n)[:n]
        e = [z * q - p for p, q in zip(pad(num), pad(den_c))]
        return e, den_c

    # -- solve and PGF --------------------------------------------------------------
    def _candidates(self, known_env, z):
        """``(x, log|det|, ok)`` of every candidate root, in code order (branch-major)."""
        read = self._known_reader(known_env)
        out = []
        for signs in self.branches:
            e, den = self.equation(self._walk(read, jnp, signs), z)
            for r in range(self.degree):
                x, slope, ok = self._root(e, r)
                q = _horner(den, x)
                ok = ok & (q != 0) & self._admissible(read, signs, x)
                if self.support is not None:
                    ok = ok & self.support.check(x)
                safe = lambda v, ok=ok: jnp.where(ok, jnp.abs(v), 1.0)
                out.append((x, jnp.log(safe(q)) - jnp.log(safe(slope)), ok))
        return out

    def _admissible(self, read, signs, x):
        """The cone evaluated at ``x``: no division by zero, and every kink of the branch's sign."""
        env = {self.leaf: x}
        ok = jnp.ones(jnp.shape(x), bool)
        sign_of = dict(zip(self.kinks, signs))
        for e in self.eqns:
            ins = [env[v] if v in env else read(v) for v in e.ins]
            divisor = self._rules[e].divisor(e) if self._rules[e].divisor is not None else None
            if divisor is not None:
                ok = ok & (ins[divisor] != 0)
            if e in sign_of:
                ok = ok & ((ins[0] >= 0) if sign_of[e] > 0 else (ins[0] < 0))
            env[e.outs[0]] = e.bind(*ins)[0]
        return ok

    def solve(self, known_env, z, theta):
        cands = self._candidates(known_env, z)
        if self.theta:
            code = theta[0]
            x, ld, ok = cands[0][0], cands[0][1], (code == 0) & cands[0][2]
            for i, (xi, ldi, oki) in enumerate(cands[1:], 1):
                pick = code == i
                x, ld, ok = jnp.where(pick, xi, x), jnp.where(pick, ldi, ld), jnp.where(pick, oki, ok)
        else:  # one candidate, or provably at most one admissible: the admissible one
            x, ld, ok = cands[-1]
            for xi, ldi, oki in reversed(cands[:-1]):
                x, ld, ok = jnp.where(oki, xi, x), jnp.where(oki, ldi, ld), oki | ok
        return x, jnp.sum(jnp.where(ok, ld, 0.0)), jnp.all(ok)

    def _root(self, e, choice):
        """``(x, |E′(x)|, ok)`` of root ``choice`` of the equation with coefficients ``e``."""
        if self.degree == 1:
            return self._moebius(e)
        if self.degree == 2:
            return self._quadratic(e, choice)
        return self._cubic(e, choice)

    @staticmethod
    def _moebius(e):
        e0, e1 = e
        ok = e1 != 0
        x = -e0 / jnp.where(ok, e1, 1.0)
        return x, e1, ok

    @staticmethod
    def _quadratic(e, choice):
        """Root ``choice`` (0: the larger, 1: the smaller) of ``c0 + c1·x + c2·x²``."""
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
        # degenerate to linear where c2 == 0 at this point: a single root, reached with choice 0
        lin = -c0 / jnp.where(c1 != 0, c1, 1.0)
        x = jnp.where(quad, hi if choice == 0 else lo, lin)
        slope = jnp.where(quad, sq, c1)  # |E'(x)| at the root
        ok = jnp.where(quad, ok_d & (sq > 0), (c1 != 0) & (choice == 0))
        return x, slope, ok

    @staticmethod
    def _cubic(e, choice):
        """Real root ``choice`` (0: the largest) of ``c0 + c1·x + c2·x² + c3·x³``.

        Three distinct real roots (discriminant > 0): the trigonometric form; one: Cardano's,
        in the cancellation-free form ``u + v`` with ``u`` the larger cube root and ``u·v = −p/3``.
        Two Newton steps on the cubic polish the root; the first starts from a value held fixed
        under differentiation, so the derivative is the implicit one, ``−∂E/∂e · … / E′(x)``.
        """
        c0, c1, c2, c3 = e
        cubic = c3 != 0
        c3s = jnp.where(cubic, c3, 1.0)
        a, b, c = c2 / c3s, c1 / c3s, c0 / c3s
        p = b - a * a / 3.0
        q = 2.0 * a**3 / 27.0 - a * b / 3.0 + c
        three = -(4.0 * p**3 + 27.0 * q * q) > 0
        m = jnp.sqrt(jnp.where(three, -p / 3.0, 1.0))
        phi = jnp.arccos(jnp.clip(jnp.where(three, -q / (2.0 * m**3), 0.0), -1.0, 1.0))
        trig = 2.0 * m * jnp.cos(phi / 3.0 - 2.0 * jnp.pi * choice / 3.0)
        s = jnp.sqrt(jnp.where(three, 0.0, jnp.maximum(q * q / 4.0 + p**3 / 27.0, 0.0)))
        u = jnp.cbrt(-q / 2.0 - jnp.where(q >= 0, s, -s))
        us = jnp.where(u != 0, u, 1.0)
        cardano = jnp.where(u != 0, u - p / (3.0 * us), 0.0)
        x = lax.stop_gradient(jnp.where(three, trig, cardano) - a / 3.0)

        def value_and_slope(x):
            return ((c3 * x + c2) * x + c1) * x + c0, (3.0 * c3 * x + 2.0 * c2) * x + c1

        for _ in range(2):
            val, slope = value_and_slope(x)
            x = x - val / jnp.where(slope != 0, slope, 1.0)
        _, slope = value_and_slope(x)
        ok = (three | (choice == 0)) & (slope != 0) & jnp.isfinite(x)
        # degenerate to a quadratic where c3 == 0 at this point: its two roots, codes 0 and 1
        if choice < 2:
            xq, slope_q, ok_q = PolynomialBlock._quadratic((c0, c1, c2), choice)
        else:
            xq, slope_q, ok_q = x, slope, jnp.zeros_like(ok)
        return (jnp.where(cubic, x, xq), jnp.abs(jnp.where(cubic, slope, slope_q)),
                jnp.where(cubic, ok, ok_q))

    def _nearest_code(self, read, z, x, branch):
        """The code of the candidate root nearest ``x`` (its own root, up to round-off)."""
        best = jnp.full(jnp.shape(x), jnp.inf, x.dtype)
        code = jnp.zeros(jnp.shape(x), int_dtype())
        for b, signs in enumerate(self.branches):
            e, _ = self.equation(self._walk(read, jnp, signs), z)
            for r in range(self.degree):
                xr, _, ok = self._root(e, r)
                dist = jnp.where(ok & (branch == b), jnp.abs(xr - x), jnp.inf)
                code = jnp.where(dist < best, b * self.degree + r, code)
                best = jnp.minimum(best, dist)
        return code

    def pgf(self, known_env, x):
        if not self.theta:
            return ()
        read = self._known_reader(known_env)
        # the branch: the sign of each kink's argument at x
        env, branch = {self.leaf: x}, jnp.zeros(jnp.shape(x), int_dtype())
        for e in self.eqns:
            ins = [env[v] if v in env else read(v) for v in e.ins]
            if self._rules[e].kink:
                branch = 2 * branch + (ins[0] < 0).astype(int_dtype())  # itertools.product order
            env[e.outs[0]] = e.bind(*ins)[0]
        if self.degree == 1:
            return (branch,)
        if self.degree == 3:
            return (self._nearest_code(read, env[self.anchor.outs[0]], x, branch),)
        # the root within the branch: the smaller one (1) left of the vertex
        z = env[self.anchor.outs[0]]
        root = jnp.zeros(jnp.shape(x), int_dtype())
        for b, signs in enumerate(self.branches):
            (c0, c1, c2), _ = self.equation(self._walk(read, jnp, signs), z)
            vertex = -c1 / (2 * jnp.where(c2 != 0, c2, 1.0))
            root = jnp.where(branch == b, jnp.where(c2 != 0, x < vertex, False).astype(int_dtype()), root)
        return (branch * self.degree + root,)


def _one_value(c):
    """The single value of a coefficient array that is the same in every element, else ``None``."""
    c = np.asarray(c, dtype=float)
    flat = c.reshape(-1)
    return float(flat[0]) if flat.size and np.all(flat == flat[0]) else None


def _support_bounds(support):
    """Scalar ``(lower, upper)`` bounds of a support (``±inf`` where open or unknown)."""
    lo = getattr(support, "lower_bound", None)
    hi = getattr(support, "upper_bound", None)
    as_float = lambda b, default: float(b) if b is not None and np.ndim(b) == 0 else default
    try:
        return as_float(lo, -np.inf), as_float(hi, np.inf)
    except Exception:  # a bound that is not concrete
        return -np.inf, np.inf


def _interior_point(left, right):
    if np.isinf(left) and np.isinf(right):
        return 0.0
    if np.isinf(left):
        return right - 1.0
    if np.isinf(right):
        return left + 1.0
    return 0.5 * (left + right)
