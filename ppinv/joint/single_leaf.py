"""One stalled relation solved for the one variable its unknowns trace back to.

Three strategies, tried in this order: a rational function of that variable
(closed-form roots, ``_poly/``), a piecewise function (``jnp.where`` over
pieces, each inverted, ``_piecewise/``), a strictly monotone function with no
closed form (a numeric solve with a uniqueness proof, ``_monotone/``). Which
primitives they reach through comes from the table: the ``rational`` slot for the
rational cone, the ``monotone`` slot (interval bounds) for the monotone one.
"""

from __future__ import annotations

from .._monotone import MonotoneBlock, derivative_sign
from .._piecewise import PiecewiseBlock, piecewise_cone
from .._poly import PolynomialBlock, cone_degree, poly_degree, worth_solving
from ..schedule.steps import PolyStep
from .base import JointSolve, Strategy
from .cones import elementwise_cones, known_operands, single_leaf_cones


def _solve_for_leaf(block, anchor, leaf, hint, pieces=None):
    return JointSolve(
        make_step=lambda names: PolyStep(block, tuple(names)),
        theta=tuple(block.theta),
        hints=(hint,) * len(block.theta),
        finished=(anchor,),
        determined=(leaf,),
        pieces=pieces,
    )


class Polynomial(Strategy):
    """A relation whose unknowns trace back to one variable through a rational function."""

    name = "polynomial"

    def candidates(self, state):
        for anchor in state.stalled():
            if len(anchor.outs) != 1 or not anchor.outs[0].is_float:
                continue
            found = polynomial_cone(state, anchor)
            if found is None:
                continue
            eqns, leaf, degree = found
            block = PolynomialBlock(anchor, eqns, leaf, degree, anchor.describe(), state.supports.get(leaf),
                                    table=state.table)
            yield _solve_for_leaf(block, anchor, leaf, "poly_root")


class Piecewise(Strategy):
    """``jnp.where(pred(x), f1(x), f0(x))`` observed: invert each piece, θ picks one."""

    name = "piecewise"

    def candidates(self, state):
        for anchor in state.stalled():
            found = piecewise_cone(anchor, state.definer, state.is_known, state.pending)
            if found is None:
                continue
            eqns, leaf = found
            known = known_operands(state, list(eqns) + [anchor])
            block = PiecewiseBlock(anchor, eqns, leaf, known, state.table, anchor.describe(),
                                   state.supports.get(leaf))
            yield _solve_for_leaf(block, anchor, leaf, "piece", pieces=block)


class Monotone(Strategy):
    """A relation whose unknowns trace back to one variable through a strictly monotone
    function with no closed-form inverse (``x + sin x``): solved numerically."""

    name = "monotone"

    def candidates(self, state):
        for anchor in state.stalled():
            found = monotone_cone(state, anchor)
            if found is None:
                continue
            eqns, leaf, sign = found
            block = MonotoneBlock(anchor, eqns, leaf, state.supports.get(leaf), sign, anchor.describe())
            yield _solve_for_leaf(block, anchor, leaf, "monotone_root")


def polynomial_cone(state, anchor):
    """The smallest rational cone to a single variable that ``_poly/`` solves."""
    for cone, leaf in single_leaf_cones(state, anchor, lambda d: poly_degree(d, {}, state.table) is not None):
        degree = cone_degree(anchor, cone, leaf, state.table)
        verdict = None if degree is None else worth_solving(degree)
        if verdict is None:
            return None
        if verdict:
            return cone, leaf, degree
    return None


def monotone_cone(state, anchor):
    """The smallest elementwise cone to a single variable that is provably strictly monotone."""
    for cone, leaf in elementwise_cones(state, anchor):
        sign = derivative_sign(sorted(cone, key=state.order.__getitem__), leaf, state.supports.get(leaf),
                               state.supports.get, state.table)
        if sign:
            return cone, leaf, sign
    return None
