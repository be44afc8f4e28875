"""Walks over a program's relations (``_ir.Program``): what computes what.

One place for the backward slice (the relations an output needs, and the
variables it depends on), so the scheduler, the joint solves, the control-flow
rules and ``condition`` agree on it.
"""

from __future__ import annotations


def backward_slice(eqns, targets):
    """``(relations, needed)``: the relations of ``eqns`` (in program order) that compute
    ``targets``, and every non-constant variable they depend on (``targets`` included)."""
    needed = {v for v in targets if not v.is_const}
    keep = []
    for e in reversed(eqns):
        if any(o in needed for o in e.outs):
            keep.append(e)
            needed.update(v for v in e.ins if not v.is_const)
    keep.reverse()
    return keep, needed


def ancestors(program, outs):
    """The inputs of ``program`` that ``outs`` depend on."""
    return backward_slice(program.eqns, outs)[1] & set(program.invars)
