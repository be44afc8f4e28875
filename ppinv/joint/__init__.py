"""Joint solves: the strategies the search asks when no relation can be solved alone.

Each kind of joint solve is one :class:`Strategy` that proposes
:class:`JointSolve` candidates for the stalled relations; the search
(``ppinv.schedule.search``) asks the registered strategies in order, takes the
first candidate that fits the θ budget and charges it (one loop, one place).
The defaults, in the order they are asked:

============== ==============================================================
``softmax``    ``softmax``/``log_softmax`` observed on a head: the logits, closed form
``shares``     ``x / Σx`` observed on all entries but one: the total is θ
``cholesky``   the lower triangle of ``cholesky(A)`` observed: ``A = L·Lᵀ``
``rule``       a rule of the table spending θ on unconstrained operands
``linear``     connected linear relations (``linearity`` slot), one solve
``polar``      ``r·cos t`` and ``r·sin t`` observed together
``chain``      the end point of a planar chain: two joints in closed form
``polynomial`` one variable through a rational function (closed-form roots)
``piecewise``  one variable through ``jnp.where`` pieces, θ picks the piece
``monotone``   one variable through a provably strictly monotone function
``monomial``   products and powers of positive unknowns: a log-linear solve
``fractional`` ratios of affine functions of several unknowns: a linear solve
``newton``     a square coupled block, Newton's method where a certificate proves one root
``entries``    (last resort) a triangular system solved entry by entry
============== ==============================================================

A new kind of joint solve is a new strategy:

>>> import ppinv
>>> from ppinv.joint import Strategy, register_strategy, unregister_strategy
>>> class Nothing(Strategy):
...     name = "nothing"
...     def candidates(self, state):
...         return iter(())          # proposes no solve: the search goes on as before
>>> s = register_strategy(Nothing(), before="linear")
>>> [t.name for t in ppinv.joint.strategies()][:5]
['softmax', 'shares', 'cholesky', 'rule', 'nothing']
>>> unregister_strategy(s)
"""

from __future__ import annotations

from .base import JointSolve, SearchState, Strategy
from .chain import PlanarChains
from .cholesky import CholeskyFactors
from .entries import EntryByEntry
from .fractional import FractionalSystems
from .linear import LinearBlocks
from .monomial import Monomials
from .newton import NewtonSystems
from .polar import PolarPairs
from .rule import RuleWithTheta, rule_solve
from .shares import SharesOfATotal
from .single_leaf import Monotone, Piecewise, Polynomial
from .softmax import SoftmaxHeads

__all__ = [
    "Strategy",
    "JointSolve",
    "SearchState",
    "strategies",
    "register_strategy",
    "unregister_strategy",
    "rule_solve",
]

_REGISTRY = [SoftmaxHeads(), SharesOfATotal(), CholeskyFactors(), RuleWithTheta(), LinearBlocks(), PolarPairs(), PlanarChains(), Polynomial(), Piecewise(), Monotone(), Monomials(), FractionalSystems(),
              NewtonSystems(), EntryByEntry()]


def strategies(stage: str | None = None) -> list:
    """The registered strategies in the order the search asks them (of one ``stage`` if given)."""
    return [s for s in _REGISTRY if stage is None or s.stage == stage]


def register_strategy(strategy: Strategy, *, before: str | None = None) -> Strategy:
    """Add ``strategy`` to the registry, before the one named ``before`` (else last of its stage).

    Returns the strategy (for :func:`unregister_strategy`).
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(
            f"register_strategy expects a ppinv.joint.Strategy (with a candidates(state) method), "
            f"got {type(strategy).__name__}"
        )
    if strategy.stage not in ("stalled", "last_resort"):
        raise ValueError(f"strategy {strategy.name!r}: stage must be 'stalled' or 'last_resort', got {strategy.stage!r}")
    if before is None:
        _REGISTRY.append(strategy)
        return strategy
    names = [s.name for s in _REGISTRY]
    if before not in names:
        raise ValueError(f"no strategy named {before!r} to insert before; registered: {', '.join(names)}")
    _REGISTRY.insert(names.index(before), strategy)
    return strategy


def unregister_strategy(strategy: Strategy) -> None:
    """Remove a strategy added with :func:`register_strategy`."""
    _REGISTRY.remove(strategy)
