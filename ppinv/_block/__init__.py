"""Linear solves: joint blocks of linear relations, and the linear algebra they share.

One job per module:

* ``linearity.py`` — whether a relation is affine in its unknown inputs (:func:`is_linear`).
* ``structure.py`` — what the build knows about run-time known values (:class:`KnownStructure`).
* ``matrix.py`` — ``K u = rhs`` solved with exact values and derivatives (:class:`MatrixSolve`).
* ``block.py`` — a joint block of linear relations solved at once (:class:`LinearBlock`).
"""

from __future__ import annotations

from ..errors import PieceRankError
from .block import LinearBlock
from .linearity import concrete_const, const_has_zero, is_linear  # noqa: F401  (const_has_zero: for the rules)
from .matrix import MatrixSolve
from .structure import KnownStructure, TypicalDraws

__all__ = [
    "is_linear",
    "LinearBlock",
    "PieceRankError",
    "MatrixSolve",
    "KnownStructure",
    "TypicalDraws",
    "concrete_const",
]
