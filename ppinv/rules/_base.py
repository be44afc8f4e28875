"""The rule interface: how one relation is solved for its unknown places.

A *rule* is consulted by the scheduler with a :class:`Pattern` (which places of
the relation ``outs = prim(ins)`` are known) and answers with a :class:`Solver`
or ``None``. A solver is static (built once, at scheduling time) and has three
parts, all pure JAX:

* ``solve(ins, outs, theta)`` fills in the unknown places from the known ones
  and the θ leaves it declared, returning the local ``log|det|`` of the map
  (consumed known values, θ) → (produced values) and a domain flag;
* ``pgf(ins, outs)`` returns those θ leaves from fully known places;
* ``theta``: the :class:`~ppinv.theta.ThetaSpec` of each leaf it consumes.

Most rules are elementwise and are written with :class:`UnaryRule` or
:class:`BinaryRule`, which take plain functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .._compat import is_concrete
from ..theta import ThetaSpec, int_dtype

__all__ = [
    "Pattern",
    "Solution",
    "Solver",
    "FunctionSolver",
    "UnaryRule",
    "BinaryRule",
    "Choice",
    "all_true",
    "safe_where",
    "known_value",
    "Linearity",
]


@dataclass(frozen=True)
class Pattern:
    """What the scheduler knows about one relation when it asks a rule.

    Attributes
    ----------
    eqn:
        The relation (``eqn.prim``, ``eqn.params``, ``eqn.ins``, ``eqn.outs``).
    known_in, known_out:
        Which places are known.
    in_support, out_support:
        Inferred supports (NumPyro constraints or ``None``) of each place.
    allow_theta:
        False while the scheduler only propagates; True when it is stuck and a
        rule may consume θ for places that no other relation constrains.
    exclusive:
        Per input: True when this relation is the input's only pending use, so
        a θ-consuming solve cannot over-determine it.
    table:
        The rule table in effect (rules for control flow schedule their bodies with it).
    structure:
        A :class:`~ppinv._block.KnownStructure`: whether a known input moves
        with θ, and a generic value of it (``None``: nothing is known).
    """

    eqn: Any
    known_in: tuple
    known_out: tuple
    in_support: tuple
    out_support: tuple
    allow_theta: bool = False
    exclusive: tuple = ()
    table: Any = None
    structure: Any = None

    @property
    def params(self):
        return self.eqn.params

    @property
    def unknown_in(self) -> list:
        return [i for i, k in enumerate(self.known_in) if not k]

    @property
    def all_out_known(self) -> bool:
        return all(self.known_out)

    def const(self, i):
        """Concrete value of input ``i`` when it is a constant, else ``None``.

        A constant closed over from an enclosing ``jit``/``vmap`` is a tracer: it
        is known only at run time, so it is ``None`` here too.
        """
        v = self.eqn.ins[i]
        return v.value if v.is_const and is_concrete(v.value) else None

    def same(self, i, j) -> bool:
        return self.eqn.ins[i] is self.eqn.ins[j]


class Solution(NamedTuple):
    ins: list
    outs: list
    log_det: Any
    ok: Any


class Solver:
    """Base class of static solve plans; see the module docstring."""

    theta: tuple = ()
    description: str = ""

    def solve(self, ins, outs, theta) -> Solution:  # pragma: no cover - interface
        raise NotImplementedError

    def pgf(self, ins, outs) -> tuple:
        return ()


class FunctionSolver(Solver):
    """A solver made from two functions (handy for user rules)."""

    def __init__(self, solve, pgf=None, theta=(), description=""):
        self._solve = solve
        self._pgf = pgf
        self.theta = tuple(theta)
        self.description = description

    def solve(self, ins, outs, theta):
        return self._solve(ins, outs, theta)

    def pgf(self, ins, outs):
        return tuple(self._pgf(ins, outs)) if self._pgf else ()


def all_true(*flags):
    """Conjunction of scalar/array flags; ``None`` when there is no condition to check.

    Flags that are already concrete (computed from constants) are decided now,
    so they never reach the compiled program.
    """
    out = None
    for f in flags:
        if f is None:
            continue
        if is_concrete(f) and not isinstance(f, jax.core.Tracer):
            if bool(np.all(f)):
                continue
            f = np.asarray(False)
        f = jnp.all(f)
        out = f if out is None else jnp.logical_and(out, f)
    return out


def xp_of(*values):
    """``numpy`` when every value is concrete (constants), else ``jax.numpy``."""
    return np if all(is_concrete(v) for v in values) else jnp


def known_value(x):
    """A known operand as a rule should test it: a NumPy array when its value is here now.

    Known operands arrive as Python floats, NumPy arrays, concrete ``jax.Array``
    constants or model arguments, or tracers. A concrete one is converted, so that
    its checks (``!= 0``) and ``log|det|`` are decided once, at trace time
    (``jnp`` operations on a concrete array inside a trace would be traced);
    a tracer stays as it is, and its checks become run-time domain flags.
    """
    return np.asarray(x) if is_concrete(x) else x


def safe_where(ok, x, safe):
    """``x`` where ``ok`` else ``safe``: keeps NaN out of values *and* gradients."""
    return jnp.where(ok, x, jnp.asarray(safe, dtype=jnp.result_type(x)))


@dataclass(frozen=True)
class Choice:
    """A discrete, per-element θ leaf of an elementwise rule (a sign, a period)."""

    kind: str
    support: Any


def _elementwise_theta(choices: Sequence[Choice], shape, origin):
    return tuple(ThetaSpec(tuple(shape), np.dtype(int_dtype()), c.support, c.kind, origin) for c in choices)


class _UnarySolver(Solver):
    def __init__(self, rule, pat, arg, out_index=0):
        self.rule = rule
        self.arg = arg
        self.params = dict(pat.params)
        self.theta = _elementwise_theta(rule.choices, pat.eqn.ins[arg].shape, pat.eqn.describe())
        self.description = f"solve {pat.eqn.prim.name} for its input"

    def solve(self, ins, outs, theta):
        z = outs[0]
        rule = self.rule
        ok = rule.domain(z) if rule.domain is not None else None
        zs = safe_where(ok, z, rule.safe) if ok is not None else z
        x = rule.inverse(zs, *theta)
        ld = rule.log_det(zs, x, *theta)
        new_ins = list(ins)
        new_ins[self.arg] = x
        return Solution(new_ins, list(outs), ld if isinstance(ld, float) else jnp.sum(ld), all_true(ok))

    def pgf(self, ins, outs):
        if not self.rule.choices:
            return ()
        return tuple(self.rule.pgf(ins[self.arg], outs[0]))


class UnaryRule:
    """Rule for an elementwise ``z = p(x)``, solved for ``x`` when ``z`` is known.

    Parameters
    ----------
    inverse:
        ``inverse(z, *choices) -> x``.
    log_det:
        ``log_det(z, x, *choices)`` elementwise ``log|dx/dz|``.
    domain:
        ``domain(z) -> bool array``: where ``z`` has a preimage.
        Outside it the solve reports "not ok" (log density −∞).
    safe:
        A value inside the domain; substituted outside it so that no NaN
        reaches values or gradients.
    choices:
        Discrete per-element θ leaves (:class:`Choice`), passed to ``inverse``
        and ``log_det`` after ``z``.
    pgf:
        ``pgf(x, z) -> tuple`` of the choices that reproduce ``x``.

    A rule that depends on the equation's parameters builds a ``UnaryRule``
    per pattern (see the ``integer_pow`` rule).
    image:
        ``image(params, in_support) -> constraint``: the support of ``z``
        (used when ``z`` itself is freed from θ).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> exp_rule = UnaryRule(lambda z: jnp.log(z), lambda z, x: -jnp.log(z),
    ...                      domain=lambda z: z > 0)
    """

    def __init__(self, inverse, log_det, domain=None, safe=1.0, choices=(), pgf=None, image=None):
        self.inverse = inverse
        self.log_det = log_det
        self.domain = domain
        self.safe = safe
        self.choices = tuple(choices)
        self.pgf = pgf
        self.image = image

    def __call__(self, pat: Pattern):
        if pat.known_out[0] and not pat.known_in[0] and len(pat.eqn.ins) == 1:
            return _UnarySolver(self, pat, 0)
        return None


class _BinarySolver(Solver):
    def __init__(self, fn, pat, unknown, description):
        self.fn = fn
        self.unknown = unknown
        self.description = description

    def solve(self, ins, outs, theta):
        z = outs[0]
        other = ins[1 - self.unknown]
        x, ld, ok = self.fn(z, other)
        new_ins = list(ins)
        new_ins[self.unknown] = x
        # A scalar known operand (``x * 3.0`` on a vector) gives a scalar
        # per-element log|det|; it counts once per element of z, not once.
        if isinstance(ld, float) or is_concrete(ld):  # a constant: sum it now
            total = float(np.sum(np.broadcast_to(np.asarray(ld), jnp.shape(z))))
        else:
            total = jnp.sum(jnp.broadcast_to(ld, jnp.shape(z)))
        return Solution(new_ins, list(outs), total, all_true(ok))


class _SameSolver(_UnarySolver):
    """``z = p(a, a)`` solved for ``a`` through a unary rule."""

    def solve(self, ins, outs, theta):
        sol = super().solve(ins, outs, theta)
        new_ins = list(sol.ins)
        new_ins[1 - self.arg] = new_ins[self.arg]
        return sol._replace(ins=new_ins)


class BinaryRule:
    """Rule for an elementwise ``z = p(a, b)`` with one operand known.

    ``solve_left(z, b) -> (a, log_det, ok)`` and
    ``solve_right(z, a) -> (b, log_det, ok)``; ``same`` is a
    :class:`UnaryRule` for ``z = p(a, a)`` (``a + a``, ``a * a``). Any may be
    ``None`` when that case has no inverse.
    """

    def __init__(self, solve_left=None, solve_right=None, same=None, image=None):
        self.solve_left = solve_left
        self.solve_right = solve_right
        self.same = same
        self.image = image

    def __call__(self, pat: Pattern):
        if not pat.known_out[0] or all(pat.known_in):
            return None
        name = pat.eqn.prim.name
        out_shape = pat.eqn.outs[0].shape
        if pat.same(0, 1):
            if self.same is None:
                return None
            return _SameSolver(self.same, pat, 0)
        if pat.known_in[0] == pat.known_in[1]:
            return None  # both unknown: the scheduler frees one
        unknown = 0 if not pat.known_in[0] else 1
        if pat.eqn.ins[unknown].shape != out_shape:
            return None  # a broadcast unknown would be over-determined
        fn = self.solve_left if unknown == 0 else self.solve_right
        if fn is None:
            return None
        side = "left" if unknown == 0 else "right"
        return _BinarySolver(fn, pat, unknown, f"solve {name} for its {side} operand")


Rule = Callable[[Pattern], Solver | None]


# --- the linearity slot -----------------------------------------------------------------
class Linearity:
    """A ``linearity`` slot: ``linearity(eqn, known) -> bool``, whether ``outs = prim(ins)`` is
    affine in its unknown inputs once the ``known`` ones are fixed.

    ``operands``: the inputs the output may be affine in (default: every one, jointly); the
    others must be known. ``multilinear``: affine in any *one* of them when the rest are known
    (a product), so two unknown operands, or one variable in two places, are not linear.
    ``when(eqn, known) -> bool``: a further condition (on parameters or constant operands).
    The generic conditions (floating outputs, floating unknowns) are checked by the caller.
    """

    def __init__(self, operands=None, *, multilinear=False, when=None):
        self.operands = None if operands is None else frozenset(operands)
        self.multilinear = multilinear
        self.when = when

    def __call__(self, eqn, known) -> bool:
        unknown = [i for i, k in enumerate(known) if not k]
        if self.operands is not None and not self.operands.issuperset(unknown):
            return False
        if self.multilinear:
            if len(unknown) != 1:
                return False
            v = eqn.ins[unknown[0]]
            if any(u is v for i, u in enumerate(eqn.ins) if i != unknown[0]):
                return False  # the same variable in a second place: a square
        return self.when is None or bool(self.when(eqn, known))

    def __repr__(self):
        parts = [] if self.operands is None else [f"operands={sorted(self.operands)}"]
        if self.multilinear:
            parts.append("multilinear=True")
        if self.when is not None:
            parts.append(f"when={getattr(self.when, '__name__', self.when)}")
        return f"Linearity({', '.join(parts)})"
