"""Parameter spaces Θ: what each θ leaf is, its support, and a reference distribution.

A parametric inverse ``g(y, θ)`` takes θ as a dict of arrays. Floating leaves are
continuous parameters given in their *constrained* space (real, positive, an
interval, a simplex, ...); integer leaves are discrete choices (a sign, which
root, which period of a periodic function). Every leaf carries a NumPyro
constraint so that samplers know its space, and a reference distribution on that
space used for initialisation and independence proposals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

__all__ = [
    "ThetaSpec",
    "integer",
    "sign",
    "IntegerReference",
    "is_constrained",
    "intrinsic_size",
    "int_dtype",
    "support_bounds",
    "support_from_bounds",
]


class _Integer(constraints.Constraint):
    """All integers (for choices such as the period of ``sin``)."""

    is_discrete = True

    def __call__(self, x):
        return jnp.equal(jnp.mod(x, 1), 0)

    def feasible_like(self, prototype):
        return jnp.zeros_like(prototype)

    def tree_flatten(self):
        return (), ((), dict())

    def __eq__(self, other):
        return isinstance(other, _Integer)

    def __hash__(self):
        return hash(_Integer)

    def __repr__(self):
        return "Integer"


#: Support of an unbounded discrete choice (``k`` in ``x = πk + (−1)^k asin y``).
integer = _Integer()
#: Support of a sign choice: 0 means +, 1 means −.
sign = constraints.integer_interval(0, 1)


def int_dtype():
    """The default integer dtype (int64 under ``jax_enable_x64``, else int32)."""
    return jnp.asarray(0).dtype


class IntegerReference(dist.Distribution):
    """Two-sided geometric distribution on ℤ: ``P(k) ∝ ρ^|k|``.

    The reference distribution of unbounded discrete choices (periods).
    """

    arg_constraints = {"rho": constraints.open_interval(0.0, 1.0)}
    support = integer
    has_enumerate_support = False

    def __init__(self, rho=0.5, *, validate_args=None):
        self.rho = rho
        super().__init__(batch_shape=jnp.shape(rho), validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        # the difference of two independent geometric counts (P(g) ∝ ρ^g on {0, 1, ...}) has
        # P(k) ∝ ρ^|k|; a signed geometric count would put twice log_prob's mass on 0
        shape = sample_shape + self.batch_shape
        k1, k2 = jax.random.split(key)
        p = 1.0 - self.rho
        up, down = jax.random.geometric(k1, p, shape), jax.random.geometric(k2, p, shape)
        return (up - down).astype(int_dtype())

    def log_prob(self, value):
        rho = jnp.asarray(self.rho)
        log_norm = jnp.log1p(-rho) - jnp.log1p(rho)
        return log_norm + jnp.abs(value) * jnp.log(rho)


def is_constrained(support) -> bool:
    """True for a support narrower than the real line (positive, interval, ...)."""
    if support is None:
        return False
    base = support
    while isinstance(base, constraints.independent):
        base = base.base_constraint
    return base is not constraints.real


def intrinsic_size(support, shape) -> int:
    """Number of continuous coordinates of a leaf (a simplex of n entries has n−1)."""
    size = int(np.prod(shape, dtype=np.int64))
    if support is None or support.is_discrete:
        return 0 if support is not None and support.is_discrete else size
    if shape == ():
        return 1
    inv_shape = biject_to(support).inverse_shape(tuple(shape))
    return int(np.prod(inv_shape, dtype=np.int64))


def _base(support):
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return support


# Closed variants of the half-lines; older NumPyro releases lack some (the open one holds
# all but the bound itself, which no density sees).
_GREATER_EQ = getattr(constraints, "greater_than_eq", constraints.greater_than)
_LESS_EQ = getattr(constraints, "less_than_eq", constraints.less_than)
_OPEN_INTERVAL = getattr(constraints, "open_interval", None)


def _ends(base):
    """``(lo, hi, lo_closed, hi_closed)`` as NumPyro states them; ``None`` for other sets."""
    inf = math.inf
    if isinstance(base, constraints.interval):
        closed = _OPEN_INTERVAL is None or not isinstance(base, _OPEN_INTERVAL)
        return base.lower_bound, base.upper_bound, closed, closed
    if isinstance(base, constraints.greater_than):
        return base.lower_bound, inf, _GREATER_EQ is not constraints.greater_than and isinstance(base, _GREATER_EQ), False
    if isinstance(base, constraints.less_than):
        return -inf, base.upper_bound, False, _LESS_EQ is not constraints.less_than and isinstance(base, _LESS_EQ)
    return None


def support_bounds(support):
    """``(lo, hi, lo_closed, hi_closed)``: the smallest interval holding every element of
    ``support`` (the hull of array bounds); the real line for ``None`` and ``real``, and
    for bounds that are not concrete numbers (traced parameters: nothing is known of them).

    ``None`` when the support is not an interval of the reals element by element (a
    simplex, a discrete set).

    >>> support_bounds(constraints.less_than(2.0))
    (-inf, 2.0, False, False)
    """
    base = _base(support)
    if base is None or base is constraints.real:
        return (-math.inf, math.inf, False, False)
    if base.is_discrete or base.event_dim:
        return None
    ends = _ends(base)
    if ends is None:
        return None
    lo, hi, lo_closed, hi_closed = ends
    try:
        lo, hi = float(np.min(lo)), float(np.max(hi))
    except Exception:  # traced or otherwise non-concrete bounds
        return (-math.inf, math.inf, False, False)
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        return None
    return (lo, hi, lo_closed and lo > -math.inf, hi_closed and hi < math.inf)


def support_within(inner, outer) -> bool:
    """``inner`` is known (not ``None``) and lies inside ``outer``, both intervals of the reals."""
    if inner is None:
        return False
    a, b = support_bounds(inner), support_bounds(outer)
    if a is None or b is None:
        return False
    lo_in = b[0] < a[0] or (b[0] == a[0] and (b[2] or not a[2]))
    hi_in = a[1] < b[1] or (a[1] == b[1] and (b[3] or not a[3]))
    return lo_in and hi_in


def support_from_bounds(lo, hi, lo_closed=False, hi_closed=False):
    """The narrowest NumPyro constraint holding the interval from ``lo`` to ``hi``.

    Bounded intervals come back closed (``interval``; it holds the open one too, and its
    bijection reaches the same points); ``positive`` is kept for ``(0, ∞)``, as products and
    sums of positives need. ``None`` for an empty or one-point interval.
    """
    lo, hi = float(lo) + 0.0, float(hi) + 0.0  # + 0.0: no −0 bounds
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        return None
    if lo == -math.inf and hi == math.inf:
        return constraints.real
    if hi == math.inf:
        if lo == 0.0:
            return constraints.nonnegative if lo_closed else constraints.positive
        return _GREATER_EQ(lo) if lo_closed else constraints.greater_than(lo)
    if lo == -math.inf:
        return _LESS_EQ(hi) if hi_closed else constraints.less_than(hi)
    if (lo, hi) == (0.0, 1.0):
        return constraints.unit_interval
    return constraints.interval(lo, hi)


@dataclass(frozen=True, eq=False)
class ThetaSpec:
    """One θ leaf.

    Attributes
    ----------
    shape, dtype:
        Of the array the inverse expects.
    support:
        A NumPyro constraint: the leaf's space.
    kind:
        What the leaf is: ``"value"`` (a variable freed from θ), ``"sign"``,
        ``"period"``, ``"branch"``, ``"root"``, ``"null_space"``, ``"simplex"``...
    origin:
        Where it came from, for messages (a relation or an argument name).
    """

    shape: tuple
    dtype: np.dtype
    support: object
    kind: str = "value"
    origin: str = ""

    @property
    def discrete(self) -> bool:
        return bool(self.support.is_discrete)

    @property
    def continuous_size(self) -> int:
        return intrinsic_size(self.support, self.shape)

    @property
    def event_dim(self) -> int:
        return getattr(self.support, "event_dim", 0)

    def reference(self):
        """A proper distribution on this leaf's support (event shape = the leaf's shape)."""
        shape = tuple(self.shape)
        if self.discrete:
            if isinstance(self.support, constraints.integer_interval):
                d = dist.DiscreteUniform(self.support.lower_bound, self.support.upper_bound)
            else:
                d = IntegerReference(0.5)
            return d.expand(shape).to_event(len(shape)) if shape else d
        transform = biject_to(self.support)
        base_shape = transform.inverse_shape(shape) if shape else ()
        base = dist.Normal(jnp.zeros((), self.dtype), 1.0).expand(base_shape)
        base = base.to_event(len(base_shape)) if base_shape else base
        d = dist.TransformedDistribution(base, transform)
        extra = len(shape) - d.event_dim
        return d.to_event(extra) if extra > 0 else d

    def describe(self) -> str:
        return f"{self.kind} {self.dtype.name}{list(self.shape)} in {self.support}"
