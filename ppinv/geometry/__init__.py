"""θ geometry after sampling: where divergences concentrate, and discrete θ that never moved.

NUTS needs a smooth density on the whole of θ's space. Three things a schedule can put inside
it cost divergences or bias (DESIGN §8):

* a **wall** — a solve with a restricted domain (``log``, ``sqrt``, ``logit``, ``arcsin``) or a
  solved value that must stay in its support: the density drops to zero across it;
* a **fold** — two branches of a solve meeting (a square at 0, ``sin`` at its extremum): the
  domain edge of a solve with a discrete choice, where log|det| diverges;
* a **singular point** — a product or quotient whose known factor, computed from θ, is near 0.

Every solve of the schedule gets a *margin* per draw: how far its known values lie from the
edge of its domain, in units of their posterior standard deviation (scale-free, and infinite for
values θ does not move: a fixed observation near an edge is no wall the sampler meets). A
feature where divergent draws have smaller margins than the others (rank statistic) is where
divergences concentrate, and the relation that makes it is named as ppinv's errors name
relations (primitive, places, source line).

One job per module:

* ``findings.py`` — what a report holds (:class:`GeometryFeature`, :class:`StuckBranch`, :class:`GeometryReport`).
* ``margins.py`` — a schedule's walls, folds and singular points, and their margins per draw.
* ``divergences.py`` — whether divergent draws concentrate at a feature's edge.
* ``stuck.py`` — discrete θ that kept one value over a chain.
* ``report.py`` — :func:`geometry_report`, the entry point.
"""

from __future__ import annotations

from .findings import GeometryFeature, GeometryReport, StuckBranch
from .margins import solve_margins, static_features
from .report import geometry_report

__all__ = ["GeometryFeature", "StuckBranch", "GeometryReport", "geometry_report", "solve_margins", "static_features"]
