"""The body of a higher-order relation (a loop, a branch, a kept call) imported as a program in
its *distinct* operand variables, cached per relation and knowledge pattern."""

from __future__ import annotations

from ..._compat import jaxpr_parts, scan_counts
from ..table import keep_call


_body_cache: dict = {}


def _body_program(closed, table, operands, mergeable, inline_consts=True):
    """The body of a higher-order relation applied to ``operands``, as a program in their
    distinct variables (``ir.body_inputs``), and each operand's slot among them."""
    from ..._ir import body_inputs, import_jaxpr

    layout = []
    for i, (o, merge) in enumerate(zip(operands, mergeable)):
        if o.is_const and inline_consts:
            layout.append(("const", id(o)))
        elif merge:
            layout.append(next(j for j in range(i + 1) if mergeable[j] and operands[j] is o))
        else:
            layout.append(i)
    refs = tuple(o for o in operands if o.is_const)
    key = (id(closed), id(table), tuple(layout), inline_consts)
    hit = _body_cache.get(key)
    if hit is None or hit[0] is not closed or any(a is not b for a, b in zip(hit[1], refs)):
        jaxpr, _ = jaxpr_parts(closed)
        inputs, slots = body_inputs(jaxpr.invars, operands, mergeable, inline_consts)
        hit = (closed, refs, import_jaxpr(closed, keep_call=keep_call(table), inputs=inputs), slots)
        _body_cache[key] = hit
    return hit[2], hit[3]


def _scan_body(eqn, table):
    """A loop body in its distinct inputs: ``xs`` positions scanning one array share one input
    (their slices are equal at every step). Returns the body and each ``xs`` position's index
    among the distinct ``xs``."""
    nc, nk = scan_counts(eqn.params)
    mergeable = [i >= nc + nk for i in range(len(eqn.ins))]
    body, slots = _body_program(eqn.params["jaxpr"], table, eqn.ins, mergeable, inline_consts=False)
    return body, [s - nc - nk for s in slots[nc + nk :]]
