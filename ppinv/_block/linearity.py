"""Whether a relation is linear (affine) in its unknown inputs: what a joint linear block may hold."""

from __future__ import annotations

import numpy as np
from jax import lax

from .._compat import is_concrete


def concrete_const(v) -> bool:
    """``v`` is a constant whose value is available now.

    A constant closed over from an enclosing ``jit``/``vmap`` is a tracer: known
    at run time only, so it is treated like any other run-time known value.
    """
    return v.is_const and is_concrete(v.value)


def const_has_zero(v) -> bool:
    """``v`` is a concrete constant with a zero entry (tracers are decided at run time)."""
    return concrete_const(v) and bool(np.any(np.asarray(v.value) == 0))


def is_linear(eqn, known, moves_with_theta=None, table=None) -> bool:
    """Whether ``eqn`` is linear (affine) in its unknown inputs, given which inputs are known.

    What each primitive is comes from its ``linearity`` slot in ``table`` (default: the
    active rule table; see :func:`ppinv.rules.deflinear`). ``moves_with_theta(v)`` says
    whether a known input changes with θ (:meth:`KnownStructure.moves_with_theta`; by
    default every non-constant does). A ``select_n`` whose predicate moves with θ is a
    piecewise map: each value of the predicate is a piece of the preimage, on which the
    unchosen cases do not enter the output. It is linear only when every case is unknown (a
    known case would be a flat piece, with no unknown to solve), and a block holding it is
    solved only if it is square and of full rank on every piece (:class:`LinearBlock`);
    otherwise the select rule frees the unchosen cases, or the piecewise mechanism inverts
    each piece.
    """
    moves = moves_with_theta or (lambda v: not v.is_const)
    if not all(v.is_float for v in eqn.outs):
        return False
    unknown = [i for i, k in enumerate(known) if not k]
    if not unknown or any(not eqn.ins[i].is_float for i in unknown):
        return False  # an integer operand (an index) must be known
    if eqn.prim is lax.select_n_p:
        # a known case is a flat piece wherever the predicate picks it (``_piecewise/``)
        return bool(known[0]) and (not moves(eqn.ins[0]) or not any(known[1:]))
    linearity = _table(table).slot("linearity", eqn.prim)
    return linearity is not None and bool(linearity(eqn, known))


def _table(table):
    if table is None:  # the rules package imports this module: look the table up when asked
        from ..rules import current_table

        table = current_table()
    return table
