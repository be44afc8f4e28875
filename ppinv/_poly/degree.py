"""Structural degrees of a cone's output as a ratio ``P/Q`` in its leaf (:func:`cone_degree`), and
whether a cone is worth solving as a rational equation or should grow (:func:`worth_solving`)."""

from __future__ import annotations

from typing import NamedTuple

MAX_DEGREE = 3
MAX_KINKS = 2  # |u| terms in one cone: 2^k sign branches


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
