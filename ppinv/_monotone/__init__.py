"""Strictly monotone univariate relations solved numerically: ``z = F(x)``.

``x + sin x``, Kepler's ``M = E − e·sin E`` and ``x⁵ + x`` use their unknown
more than once and have no closed-form inverse, but each has exactly one
preimage because ``F`` is strictly monotone. ppinv *proves* that at build time
— interval arithmetic on ``F′`` over the whole support of ``x`` (and of the
known inputs ``F`` reads) shows ``F′ ≥ 0`` or ``F′ ≤ 0``; every primitive here
is analytic, so ``F′`` vanishes only at isolated points and ``F`` is strictly
monotone — and refuses the block otherwise, since a non-monotone ``F`` has
preimages one numeric solve would miss. Interval bounds are conservative: a
variable met twice in a quotient (``x / (1 + x)``) can hide monotonicity, and
such relations are refused with the reason.

At run time ``F(x) = z`` is solved elementwise by Newton's method safeguarded
by bisection on a bracket (found by doubling) in the unconstrained coordinate
of ``x``'s support, to round-off; the search is oriented by the direction of that
support's bijection too (``less_than``'s decreases). θ is empty; ``log|dx/dz| = −log|F′(x)|``;
derivatives with respect to ``z`` and the known inputs come from the implicit
function theorem (``lax.custom_root``). When no root exists (``z`` outside the
range of ``F``) the solve is "not ok".

One job per module:

* ``interval.py`` — interval arithmetic on ``(lo, hi)`` pairs.
* ``jets.py`` — per-primitive bounds of value and derivative, the ``monotone`` slot (:func:`default_jets`).
* ``sign.py`` — the proof of monotonicity, piece by piece (:func:`derivative_sign`).
* ``block.py`` — the numeric solve with implicit derivatives (:class:`MonotoneBlock`).
"""

from __future__ import annotations

from .block import MonotoneBlock
from .interval import _add, _mul  # noqa: F401  (interval enclosures of Jacobians, intervals.py)
from .jets import _power_bounds, default_jets, monotone_bounds, unary_jet  # noqa: F401  (_power_bounds: intervals.py)
from .sign import _subdivisions, _table, derivative_sign, is_elementwise_analytic  # noqa: F401

__all__ = ["derivative_sign", "MonotoneBlock", "is_elementwise_analytic", "unary_jet", "monotone_bounds",
           "default_jets"]
