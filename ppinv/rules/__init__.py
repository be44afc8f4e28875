"""The overlay: tables of inverse rules keyed by JAX primitive objects.

Tables are layered like method tables: a lookup tries the innermost layer
first and falls back to the layers below it, ending at the defaults. Users add
rules globally with :func:`register_rule` or for a block of code with
:func:`overlay`.

Functions (calls to ``jit`` or ``custom_jvp`` functions) can also have rules,
keyed by the function's name: a call with such a rule is kept as one relation
instead of being inlined. This is how library functions whose bodies cannot be
inverted primitive by primitive (``logaddexp``, hence ``softplus``) get exact
inverses, and how :func:`ppinv.custom_inverse` works.

**Slots.** Besides its inverse rules and its image, a primitive has named slots
(:data:`SLOTS`) that say what it *is* to the joint solves, so that a primitive
ppinv has never seen can take part in them:

* ``linearity`` (:func:`deflinear`): which inputs the output is affine in,
  given which are known; relations of such primitives join joint linear
  solves (two observed combinations of the same unknowns).
* ``monotone`` (:func:`defmonotone`): interval bounds of the value and the
  derivative, from which ppinv proves a function of one unknown strictly
  monotone (``x + myprim(x)``) before solving it numerically.
* ``rational`` (:func:`defrational`): the output as a ratio of polynomials in
  the unknown (degrees and coefficient arithmetic), so that relations such as
  ``b·x·(1 − x)`` or ``Vmax·x / (Km + x)`` are solved in closed form.
* ``solve_cost``: how awkward solving through the primitive is (0 by default,
  1 for products and powers; a rule with a restricted domain or a discrete
  choice counts 2). When a variable must be freed, the one behind the most
  awkward use is preferred, so the remaining solves stay total.

Slots are layered like rules: :meth:`RuleTable.slot` looks in the innermost
layer first. The defaults fill them for JAX's primitives (``rules/linear.py``:
linearity; ``_monotone/jets.py``: interval bounds; ``_poly/rational.py``: ratios). A user's primitive needs what
JAX needs to run and differentiate it (an implementation, a shape rule, a
lowering, JVP and batching rules); one slot is then enough:

>>> import jax
>>> from jax.extend.core import Primitive
>>> from jax.interpreters import ad, batching, mlir
>>> import ppinv
>>> double_p = Primitive("double")                          # z = 2·x
>>> _ = double_p.def_impl(lambda x: 2.0 * x)
>>> _ = double_p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
>>> mlir.register_lowering(double_p, mlir.lower_fun(lambda x: 2.0 * x, multiple_results=False))
>>> ad.primitive_jvps[double_p] = lambda p, t: (double_p.bind(*p), 2.0 * t[0])
>>> batching.primitive_batchers[double_p] = lambda args, dims: (double_p.bind(*args), dims[0])
>>> f = lambda a, b: (double_p.bind(a) + b, a - b)         # two observed combinations
>>> with ppinv.overlay() as layer:                          # the slot for this block only
...     _ = ppinv.rules.deflinear(double_p, table=layer)
...     inv = ppinv.inverse(f, 1.0, 1.0)
>>> [round(float(v), 5) for v in inv((3.0, 0.0))]
[1.0, 1.0]
"""

from __future__ import annotations

from ._base import BinaryRule, Choice, FunctionSolver, Linearity, Pattern, Solution, Solver, UnaryRule, all_true, safe_where
from .table import (
    DEFAULT_RULES,
    SLOTS,
    RuleTable,
    _USER_RULES,  # noqa: F401  (the user layer, for tests and experiments)
    current_table,
    deflinear,
    defmonotone,
    defrational,
    overlay,
    register_function_rule,
    register_rule,
    undefine_slot,
    unregister_rule,
)

__all__ = [
    "RuleTable",
    "Pattern",
    "Solution",
    "Solver",
    "FunctionSolver",
    "UnaryRule",
    "BinaryRule",
    "Choice",
    "all_true",
    "safe_where",
    "DEFAULT_RULES",
    "register_rule",
    "register_function_rule",
    "unregister_rule",
    "overlay",
    "current_table",
    "SLOTS",
    "Linearity",
    "deflinear",
    "defmonotone",
    "defrational",
    "undefine_slot",
]

# Populate the default table.
from . import arithmetic as _arithmetic  # noqa: E402,F401
from . import elementwise as _elementwise  # noqa: E402,F401
from . import structural as _structural  # noqa: E402,F401
from . import linear as _linear  # noqa: E402,F401
from . import functions as _functions  # noqa: E402,F401
from . import control as _control  # noqa: E402,F401
