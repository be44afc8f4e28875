"""Rules for control flow: ``scan`` (and ``fori_loop``), ``cond``/``switch``, ``while``.

``scan`` is inverted by scheduling its *body* once and running that schedule
in a ``lax.scan`` of its own — forwards when the initial carry is known (each
step solves its unknown ``xs`` from the observed ``ys``), backwards when the
final carry is known (each step solves the previous carry). Per-step θ is
stacked along the scan axis, so trace and compile time do not depend on the
number of iterations. Carry components that depend only on known values (a
loop counter) are computed by a forward pre-pass and treated as known.

``cond`` inverts every branch with the same knowledge pattern and switches on
the index; when the index depends on unknowns it is drawn from θ as a
discrete choice and re-checked on the recovered values (the scheduler turns
its defining relation into a check).

Bodies are imported in their *distinct* inputs (``_ir.body_inputs``): JAX
passes a value a branch closes over as one more operand, so ``lax.cond(p,
lambda v: v * a, ..., a)`` hands the branch ``a`` twice; inverted as two
unknowns, the two could come back different. Operands holding one variable
share one body input, and so do ``xs`` of a loop that scan one array; an
unknown at two carry places of a loop run backwards is refused.

One job per module, each registering its rules on import: ``scan.py`` (``scan``), ``cond.py``
(``cond``/``switch``), ``calls.py`` (a kept call through its body), ``while_loop.py`` (the
refusal of ``while``); ``bodies.py`` imports their bodies.
"""

from __future__ import annotations

# the rule modules, in the order they have always registered
from .scan import _ScanSolver  # noqa: F401  (experiments switch its parallel mode off)
from .cond import _CondSolver, _cond_rule  # noqa: F401
from .calls import _CallSolver, call_body_rule  # noqa: F401  (call_body_rule: the function rules' fallback)
from . import while_loop as _while_loop  # noqa: F401
