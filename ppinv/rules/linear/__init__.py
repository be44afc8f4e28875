"""Rules for reductions and linear maps whose inverse needs a continuous θ.

* ``z = Σ x`` over some axes: θ holds all but one element of each reduced
  group (the last is ``z − Σθ``). When the summands are positive, θ is instead
  a point of the simplex per group (``x = z · θ``), so that every solved value
  stays positive: the posterior of a sum of Gamma variables is then a
  Dirichlet in θ and mixes fast.
* ``z = Π x`` over some axes: as for sums, on the multiplicative group.
* ``y = A x`` (``dot_general`` with one operand known, ``A`` m×n of rank m):
  for a constant ``A``, ``x = A⁺ y + N θ`` with ``N`` an orthonormal basis of
  the null space (decomposed once); for an ``A`` known only at run time (a
  model argument, or computed from other unknowns) a parametrisation whose
  derivatives are exact too: pivots chosen per call when ``A`` is the same at
  every θ, a null space projected from a fixed basis when it moves with θ
  (see ``MatrixSolve`` in ``_block/matrix.py``).

These rules consume θ only when the scheduler is stuck and the unknown operand
has no other pending use (``pattern.exclusive``); otherwise the operand is
determined elsewhere and a θ here would over-determine it.

The module also fills the ``linearity`` slot of every primitive that joint
linear solves (``_block.py``) may go through: copies and rearrangements, sums
and differences, placements at known indices, and products and quotients with
known factors.

One module per job: ``reductions.py`` (sums, products, max/min), ``dot.py``
(``dot_general`` with a known operand), ``solves.py`` (undoing linear solves; the
``cholesky`` call), ``slots.py`` (the linearity slots). Importing the package
registers them all, in this order.
"""

from . import reductions, dot, solves, slots  # noqa: F401,E402  (registration, in the old order)
from .reductions import move_axes_last, restore_axes  # noqa: F401
