"""Rules for primitives that move elements around without changing them.

Reshaping, transposing, reversing, squeezing and size-preserving broadcasts are
bijections (``log|det| = 0``). Splitting and joining (``concatenate``,
``stack``, ``split``) are solved when every piece on the unknown side is
unknown; a join with some pieces already known is left to the scheduler's
linear-block solver, since solving it alone would over-determine those pieces.

One job per module, each registering its rules on import: ``maps.py`` (bijections that
rearrange elements, cumulative sums and products), ``joins.py`` (joins and splits),
``select.py`` (``select_n`` on its own), ``placements.py`` (gathers and scatters with indices
known now); ``entry_program.py`` and ``entries.py`` rewrite a stuck set of relations entry by
entry; ``common.py`` holds what they share.
"""

from __future__ import annotations

# the rule modules, in the order they have always registered
from . import maps as _maps  # noqa: F401
from . import joins as _joins  # noqa: F401
from . import select as _select  # noqa: F401
from .placements import Placement, index_refusal, placement  # noqa: F401
from .entry_program import MAX_SPLIT_ENTRIES  # noqa: F401
from .entries import EntrySplitBlock, entry_split_block  # noqa: F401  (entry_split_block: ``joint/entries.py``)
