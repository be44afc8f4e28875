"""The polynomial block: one unknown solved through a rational cone, ``E(x) = y·Q(x) − P(x) = 0``
at its true degree, a discrete θ picking the root (and the sign branch of each ``|u|``), with the
PGF that recovers that θ (:class:`PolynomialBlock`). The package notes (``__init__.py``) give the
mathematics."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from ..errors import InversionError, UnderdeterminedError
from ..ir import inputs_from_outside
from ..theta import ThetaSpec, int_dtype
from .certificate import at_most_one_root
from .roots import horner, root

_SAMPLE_POINTS = 3  # random points of the known inputs at which identically-zero coefficients are found


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
        self.unique = self.n_codes == 1 or at_most_one_root(self)
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
                q = horner(den, x)
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
        return root(e, choice, self.degree)

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
