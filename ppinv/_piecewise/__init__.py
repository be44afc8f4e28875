"""Piecewise functions, and the flat pieces no inverse may drop.

**Piecewise functions.** In ``jnp.where(pred(x), f1(x), f0(x))`` the predicate
and every case are computed from the same unknown ``x``, so no single relation
can be solved. Each case ``z = f_k(x)`` is inverted on its own (a small
schedule on scalars, vmapped over elements); a discrete θ per element says
which case produced ``z`` (and, for a case with discrete choices of its own —
the sign behind an ``abs`` — which of them), and the predicate is re-evaluated
on the recovered ``x``: where it disagrees, ``(z, θ)`` is outside the domain.
A case that cannot be inverted makes the whole program fail, naming the case:
a piece is inverted or the program refused, never dropped.

**Flat pieces.** A case whose value does not depend on ``x`` (the ``0`` of
``relu``, the ``c`` of ``max(x, c)``) has a preimage of full dimension on
which the output is constant. Solving ``x`` from the output reaches only the
other pieces. That is exact when the output is fixed by the observations alone
(the flat piece then matters only for observations on a null set), but not
when the output is computed from θ: the flat piece then carries posterior mass.
Rules and blocks declare such pieces (``flat_pieces``); the scheduler avoids
solving through them with θ-dependent values (it computes ``x`` forward
instead, freeing another variable). Where that is impossible, the inverse is
the union of schedules, one per side of the flat piece, with a discrete θ
choosing among them (:func:`union_of_flat_pieces`); a program where even that
fails is refused with an error naming the piece.

One job per module:

* ``cone.py`` — which relations form a piecewise function of one variable (:func:`piecewise_cone`).
* ``block.py`` — the piecewise solve, each case inverted on its own (:class:`PiecewiseBlock`).
* ``supports.py`` — the interval of the leaf on which a case is selected (:func:`piece_support`).
* ``flat.py`` — flat pieces and what a schedule computes from θ (:class:`FlatPiece`, :func:`theta_dependent`).
* ``union.py`` — the union of schedules around a flat piece (:func:`union_of_flat_pieces`).
"""

from __future__ import annotations

from ..errors import FlatPieceError
from .block import PiecewiseBlock
from .cone import is_elementwise, lift_select, piecewise_cone  # noqa: F401  (lift_select: the whole mechanism here)
from .flat import FlatPiece, theta_dependent, theta_dependent_flat_pieces  # noqa: F401
from .supports import _EMPTY, piece_support  # noqa: F401  (imported from here by the tests)
from .union import UnionSchedule, union_of_flat_pieces

__all__ = [
    "PiecewiseBlock",
    "piecewise_cone",
    "is_elementwise",
    "FlatPiece",
    "FlatPieceError",
    "theta_dependent",
    "union_of_flat_pieces",
    "UnionSchedule",
]
