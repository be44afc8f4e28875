"""Cones: the relations between one stalled relation and the unknowns it traces back to."""

from __future__ import annotations

from .._monotone import is_elementwise_analytic


def single_leaf_cones(state, anchor, expandable):
    """Cones between ``anchor`` and one variable, smallest first.

    Unknown operands are expanded latest-defined first (through relations
    ``expandable`` accepts); each time one variable remains, ``(cone, leaf)`` is
    yielded. Stopping at the nearest such variable (``x`` in ``b·x·(1 − x)``)
    rather than at the program's inputs keeps an iterated map a chain of small
    solves instead of one polynomial of degree 2ⁿ.
    """
    cone = [anchor]
    frontier = {v for v in anchor.ins if not state.is_known(v)}
    while frontier:
        if len(frontier) == 1:
            yield list(cone), next(iter(frontier))
        u = max(frontier, key=lambda v: state.order.get(state.definer.get(v), -1))
        d = state.definer.get(u)
        if d is None or d not in state.pending or d in cone or len(d.outs) != 1 or not expandable(d):
            return
        cone.append(d)
        frontier.discard(u)
        frontier.update(v for v in d.ins if not state.is_known(v))


def elementwise_cones(state, anchor):
    """Single-leaf cones of elementwise analytic relations below ``anchor`` (see
    :func:`single_leaf_cones`), the leaf of the anchor's shape; nothing if the anchor is not one."""
    if len(anchor.outs) != 1 or not anchor.outs[0].is_float or not is_elementwise_analytic(anchor, state.table):
        return
    shape = anchor.outs[0].shape

    def elementwise(e):
        return is_elementwise_analytic(e, state.table) and e.outs[0].shape == shape and all(
            v.shape in (shape, ()) for v in e.ins
        )

    if not elementwise(anchor):
        return
    for cone, leaf in single_leaf_cones(state, anchor, elementwise):
        if leaf.shape != shape or not leaf.is_float:
            return
        yield cone, leaf


def univariate_leaf(state, anchor):
    """The single variable an elementwise-analytic relation traces back to, if any."""
    return next((leaf for _, leaf in elementwise_cones(state, anchor)), None)


def known_operands(state, eqns):
    """The known, non-constant inputs of ``eqns``, in order of first use."""
    known = []
    for e in eqns:
        for v in e.ins:
            if state.is_known(v) and not v.is_const and v not in known:
                known.append(v)
    return known
