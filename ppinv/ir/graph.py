"""Walks over a program's relations (``ir.Program``): what computes what.

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


def inputs_from_outside(eqns, leaf):
    """Variables ``eqns`` read that none of them defines, other than ``leaf`` and constants
    (the known context of a block solved for ``leaf``), in first-use order."""
    inside = {o for e in eqns for o in e.outs}
    out = []
    for e in eqns:
        for v in e.ins:
            if v is not leaf and v not in inside and not v.is_const and v not in out:
                out.append(v)
    return out
