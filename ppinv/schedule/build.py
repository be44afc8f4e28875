"""``build_schedule``: the search run on a program, with the union over flat pieces when every
schedule found would solve through one."""

from __future__ import annotations

from .._piecewise import union_of_flat_pieces
from ..errors import InversionError
from .search import Search


def build_schedule(program, known_inputs, unknown_inputs, observed, supports, table, names, extra_outputs=(),
                   free=(), outer_theta=True, typical=None):
    """Schedule ``program`` given which inputs are known and which outputs are observed.

    ``extra_outputs`` are variables to compute as well (not observed): the
    carry of a loop body solved forwards, for instance. ``free`` are unknown
    inputs to make θ before the search chooses any. ``outer_theta=False``
    says the known inputs and observations are fixed data (a top-level
    inverse), not values an enclosing schedule computed from θ. ``typical``
    gives input values at a typical point (or a function returning them): linear
    solves whose matrix moves with θ choose their chart there (``_block.py``).
    """
    rest = (known_inputs, unknown_inputs, observed, supports, table, names, extra_outputs, free)
    seeds = (list(known_inputs) + list(observed)) if outer_theta else []

    def schedule_of(prog):
        strict = Search(prog, *rest, outer_theta=outer_theta, typical=typical)
        try:
            return strict.run()
        except InversionError:
            if not strict.flat_refusals:
                raise
        # Every schedule found solves through a flat piece with θ-dependent values. Scheduled
        # without that restriction, the program either fails for another reason (that error
        # is the one to report) or succeeds by solving through the piece, whose other side
        # the union then covers with a schedule of its own.
        return Search(prog, *rest, flat_ok=True, outer_theta=outer_theta, typical=typical).run()

    return union_of_flat_pieces(program, schedule_of, seeds)
