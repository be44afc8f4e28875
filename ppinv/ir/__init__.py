"""ppinv's view of a traced program, release-independent.

ppinv schedules over *relations*: one per primitive equation of the traced
program. ``program.py`` holds the variables (``V``), relations (``Eqn``) and
``Program``; ``importer.py`` imports a jaxpr into that view (inlining call-like
primitives, keeping whole the calls that have a rule of their own and every
``custom_vjp`` call); ``passes.py`` runs common-subexpression elimination and
constant folding over it; ``graph.py`` walks it (backward slices, ancestors, the
inputs a block reads from outside).
"""

from .graph import ancestors, backward_slice, inputs_from_outside
from .importer import body_inputs, fold_complex_linear_maps, import_jaxpr
from .passes import eliminate_common_subexpressions, fold_constants
from .program import Eqn, Program, V, _body_of, _const, bind_custom_vjp

__all__ = [
    "V",
    "Eqn",
    "Program",
    "import_jaxpr",
    "body_inputs",
    "fold_complex_linear_maps",
    "eliminate_common_subexpressions",
    "fold_constants",
    "bind_custom_vjp",
    "backward_slice",
    "ancestors",
    "inputs_from_outside",
]
