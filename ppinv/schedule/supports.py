"""Supports of intermediate variables, carried forward by the table's image rules."""

from __future__ import annotations


def propagate_supports(eqns, table, given):
    """``given`` (variable -> support) extended forward through ``eqns`` by the table's image rules.

    A variable that no image rule reaches is absent (nothing is known of it).
    """
    sup = dict(given)
    for e in eqns:
        if len(e.outs) != 1:
            continue
        image = table.image_rule(e.prim)
        if image is None:
            continue
        try:
            s = image(e, tuple(sup.get(v) for v in e.ins))
        except Exception:
            s = None
        if s is not None:
            sup[e.outs[0]] = s
    return sup
