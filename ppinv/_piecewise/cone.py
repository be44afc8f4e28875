"""Which relations form a piecewise function of one variable: the elementwise cone below a
``select_n`` (:func:`piecewise_cone`), and a ``where`` inside it lifted to the observation
(:func:`lift_select`)."""

from __future__ import annotations

import numpy as np
from jax import lax

from .._compat import CALL_PRIMITIVES, is_concrete
from .._ir import V, Eqn


# Primitives that act element by element (scalar operands broadcast). Shape-preserving is not
# enough: ``cumsum`` and ``rev`` keep the shape but mix elements, which a per-element solve
# cannot invert.
_ELEMENTWISE_NAMES = (
    "abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp convert_element_type copy cos cosh "
    "digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt integer_pow is_finite le lgamma log log1p "
    "log2 logistic lt max min mul ne neg nextafter not or pow reduce_precision rem round rsqrt select_n "
    "sign sin sinh sqrt square sub tan tanh xor"
).split()
_ELEMENTWISE = frozenset(p for p in (getattr(lax, n + "_p", None) for n in _ELEMENTWISE_NAMES) if p is not None)


def _is_elementwise_prim(e) -> bool:
    return _elementwise_primitive(e.prim, e.params)


def _elementwise_primitive(prim, params) -> bool:
    """``prim`` (of a relation, or of an equation of a call's jaxpr) acts element by element."""
    if prim in _ELEMENTWISE:
        return True
    body_param = CALL_PRIMITIVES.get(prim)
    if body_param is None:
        return False
    from .._ir import _body_of

    body, _ = _body_of(params[body_param])  # a kept call (``logaddexp``): elementwise if its body is
    return all(_elementwise_primitive(q.primitive, q.params) for q in body.eqns)


def is_elementwise(e, shape) -> bool:
    """Whether relation ``e`` acts element by element on arrays of ``shape``."""
    return (
        len(e.outs) == 1
        and all(o.shape == shape for o in e.outs)
        and all(v.shape in (shape, ()) for v in e.ins)
        and _is_elementwise_prim(e)
    )


def piecewise_cone(anchor, definer, is_known, pending):
    """``(eqns, leaf)`` when every unknown input of the ``select_n`` anchor traces back to one
    variable through elementwise relations; else ``None``.

    The predicate is computed from that variable, or known (``jnp.where(mask, f(x), x)`` with
    a constant or known ``mask``: it picks the case of each element, so no θ chooses it). A
    known predicate that may select a case not computed from the variable (a constant or known
    case) is declined: the output there does not depend on the variable, which that element of
    the observation would leave undetermined.
    """
    lifted = anchor.prim is not lax.select_n_p
    if lifted and (len(anchor.outs) != 1 or not anchor.outs[0].is_float or not is_elementwise(anchor, anchor.outs[0].shape)):
        return None
    if not lifted and is_known(anchor.ins[0]) and not _never_picks_a_known_case(anchor, is_known):
        return None
    shape = anchor.outs[0].shape
    cone, in_cone, leaves = [], set(), set()  # the set: membership in O(1), not O(cone)
    frontier = [v for v in anchor.ins if not is_known(v)]
    while frontier:
        u = frontier.pop()
        d = definer.get(u)
        if d is not None and d in pending and d not in in_cone and is_elementwise(d, shape):
            cone.append(d)
            in_cone.add(d)
            frontier.extend(v for v in d.ins if not is_known(v))
        elif d is None or d not in in_cone:
            leaves.add(u)
            if len(leaves) > 1:
                return None  # one variable or none: a long sum of unknowns stops here
    if len(leaves) != 1:
        return None
    (leaf,) = leaves
    if leaf.shape != shape or not leaf.is_float:
        return None
    if lifted and len(_inner_selects(cone, is_known)) != 1:
        return None  # no where inside (another strategy's), or several (their products of pieces: not lifted)
    return cone, leaf


def _inner_selects(cone, is_known):
    return [e for e in cone if e.prim is lax.select_n_p and not is_known(e.ins[0])]


def lift_select(anchor, eqns, is_known):
    """``G(x, where(p(x), c₀(x), c₁(x)))`` observed, as ``where(p(x), G(x, c₀(x)), G(x, c₁(x)))``
    (elementwise, the same function): the relations below the where copied once per case, and
    a ``select_n`` of the copies whose output is the anchor's. Returns the new anchor and the
    relations (the copies added)."""
    (inner,) = _inner_selects(eqns, is_known)
    above = {inner.outs[0]}
    downstream = []
    for e in sorted(list(eqns) + [anchor], key=lambda q: q.id):
        if e is not inner and any(v in above for v in e.ins):
            downstream.append(e)
            above.update(e.outs)
    cases = []
    copies = []
    for case in inner.ins[1:]:
        rename = {inner.outs[0]: case}
        for e in downstream:
            outs = [V(o.shape, o.dtype) for o in e.outs]
            # fresh ids, in order: within the block the copies follow what they read
            copy = Eqn(e.prim, e.params, [rename.get(v, v) for v in e.ins], outs, e.source)
            rename.update(zip(e.outs, outs))
            copies.append(copy)
        cases.append(rename[anchor.outs[0]])
    new_anchor = Eqn(lax.select_n_p, {}, [inner.ins[0], *cases], list(anchor.outs), anchor.source)
    return new_anchor, [e for e in eqns if e not in downstream] + copies


def _never_picks_a_known_case(anchor, is_known):
    """A known predicate: whether it is sure to select, everywhere, a case that is not known."""
    pred, cases = anchor.ins[0], anchor.ins[1:]
    known_cases = [k for k, c in enumerate(cases) if is_known(c)]
    if not known_cases:
        return True
    if not (pred.is_const and is_concrete(pred.value)):
        return False  # known only at run time: which case it selects is not known now
    picks = np.asarray(pred.value).astype(np.int64)
    return not np.any(np.isin(picks, known_cases))
