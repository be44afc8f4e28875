"""The plan of an inverse and the search that finds it.

* ``steps.py`` — the step kinds and :class:`Schedule`, all with one interface;
* ``execute.py`` — the one executor and the one PGF walker;
* ``search.py`` — the search: worklist, strategies (``ppinv.joint``), freeing, backtracking, budget;
* ``build.py`` — :func:`build_schedule`, the search run on a program (and the union over flat pieces);
* ``checks.py`` — refusals of outputs that cannot be observed or are determined twice;
* ``ranking.py`` — which variable to free when nothing else moves;
* ``stuck.py`` — the error naming the coupled relations when nothing moves at all;
* ``supports.py`` — supports of intermediates from the table's image rules.
"""

from .execute import finite_guard, run_schedule, run_schedule_extra, schedule_pgf, theta_from_env
from .build import build_schedule
from .search import Search
from .steps import BlockStep, ForwardStep, FreeStep, JointStep, PolyStep, Schedule, SolveStep
from .supports import propagate_supports

__all__ = [
    "Schedule",
    "FreeStep",
    "ForwardStep",
    "SolveStep",
    "JointStep",
    "BlockStep",
    "PolyStep",
    "Search",
    "build_schedule",
    "run_schedule",
    "run_schedule_extra",
    "finite_guard",
    "schedule_pgf",
    "theta_from_env",
    "propagate_supports",
]
