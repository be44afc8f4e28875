"""θ supports that are the feasible set: each scalar θ narrowed to where the inverse is in its domain.

A freed variable whose later solves have restricted domains (an arcsine, a square root, the
reach of a two-link arm) is feasible only on part of θ's support; a sampler that meets the
edge of that part hits a wall. For a conditioned model the observations and the context are
concrete when it is built, so the feasible set ``F = {t : the inverse is in its domain at
(y, t, other θ) for some other θ}`` of each scalar continuous θ ``t`` (up to
:data:`_MAX_NARROWED` of them; the other continuous θ range over their supports as the discrete
ones do) can be computed then, and certified:

* the inverse's domain flag (``run_schedule``'s ``ok``) is traced as a function of ``t`` and
  of the discrete θ, and enclosed over cells of ``t`` in interval arithmetic
  (:mod:`~ppinv.geometry.enclosure`). A cell is *infeasible* when the flag is certainly false
  for every value of every discrete θ (each ranges over its whole support), *feasible* when it
  is certainly true for one of them (the cell then lies in the union over the discrete values,
  which is the set θ's support must hold), and is split otherwise (branch and bound) down to
  round-off, so the edges are located to a few ulps;
* a flag that is 2π-periodic in ``t`` (:mod:`~ppinv.geometry.periodic`: ``t`` enters only
  through ``sin``/``cos`` and shift-invariant tests) has a periodic feasible set; one period
  is searched, starting inside an infeasible cell.

Only a feasible set mapped exactly changes θ: one interval ``[a, b]`` becomes the support
``interval(a, b)``; a periodic set ``⋃ₖ [a + 2πk, b + 2πk]`` becomes ``t = s + 2πk`` with
``s ∈ interval(a, b)`` and a new integer θ ``k`` (:class:`PeriodicFreeStep`; ``log|det| = 0``).
Anything else — a union of several intervals, an undecided cell left anywhere but at an edge,
a primitive without interval bounds, data that are not concrete — keeps θ as it was (the wall
stays; exactness is kept). Only certified-infeasible cells are ever cut away, and the cut is
widened by a relative margin for the round-off of the (not outward-rounded) bounds.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints

from .._compat import is_concrete
from ..schedule import FreeStep, Schedule, run_schedule
from ..schedule.steps import cast
from ..theta import ThetaSpec, integer, int_dtype, support_bounds, support_from_bounds
from .enclosure import Box, enclose, point
from .periodic import is_periodic

__all__ = ["feasible_theta", "feasible_set", "PeriodicFreeStep"]

TWO_PI = 2 * math.pi
_INT64 = 9.223372036854775807e18  # an integer θ's whole range: every int64 lies inside
_GRID = 64  # cells of the first level
_LEVELS = 64  # bisections at most (a cell of 2π / 64 reaches round-off in about 50)
_REL_TOL = 4e-15  # an undecided edge cell narrower than this (relative) is round-off
_MARGIN = 1e-12  # relative widening of the kept set, for bounds that are not outward-rounded
_HALF_LINE = 1e6  # the unbounded ends of a support start as cells beyond ±this
_MAX_CHOICES = 8  # combinations of small discrete θ tried one by one (more: one box of all values)
_MAX_OPEN = 512  # undecided cells per level at most: more is no edge but a flag bounds cannot decide
_MAX_NARROWED = 4  # scalar continuous θ searched at most (more: none is, build time stays bounded)


@dataclasses.dataclass
class PeriodicFreeStep(FreeStep):
    """A variable drawn as ``θ[name] + 2π·θ[period]``: ``θ[name]`` in one period's feasible
    interval, ``θ[period]`` the period (an integer). Its PGF: the period holding the value."""

    period: str = ""
    lower: float = 0.0
    theta_is_value = False  # θ[name] is not the variable itself: the θ site keeps a θ name

    def __post_init__(self):
        self.theta_names = (self.name, self.period)

    def describe(self):
        return f"free   {self.var!r} <- θ[{self.name!r}] + 2π·θ[{self.period!r}]"

    def run(self, env, theta):
        k = jnp.asarray(theta[self.period]).astype(jnp.result_type(theta[self.name]))
        env[self.var] = cast(theta[self.name] + TWO_PI * k, self.var)
        return None, ()

    def theta_from(self, env, specs):
        x = env[self.var]
        k = jnp.floor((x - self.lower) / TWO_PI)
        return {self.name: jnp.asarray(x - TWO_PI * k).astype(specs[self.name].dtype),
                self.period: k.astype(specs[self.period].dtype)}


# --- the flag and its cells ------------------------------------------------------------------------
def _flag_program(schedule, ctx, y, name):
    """``ok(t, *other θ)`` of the schedule at concrete ``ctx`` and ``y``, traced; and the other
    θ names in its input order (the other continuous θ first, then the discrete ones)."""
    spec = schedule.theta
    others = [n for n in spec if n != name and not spec[n].discrete] + [n for n in spec if spec[n].discrete]

    def ok(t, *rest):
        theta = {name: t, **dict(zip(others, rest))}
        return run_schedule(schedule, list(ctx), list(y), theta)[2]

    avals = [jax.ShapeDtypeStruct(spec[n].shape, spec[n].dtype) for n in [name] + others]
    return jax.make_jaxpr(ok)(*avals), others


def _choices(specs):
    """The values the discrete θ are tried at: every combination of the small bounded ones (a sign,
    a root) — ``{index: value}`` — the others (periods) each as their whole int64 range in one box;
    one choice of no fixed values when the combinations are too many."""
    small = [i for i, s in enumerate(specs) if isinstance(s.support, constraints.integer_interval)
             and int(np.prod(s.shape, dtype=np.int64)) == 1]
    sizes = [int(specs[i].support.upper_bound - specs[i].support.lower_bound) + 1 for i in small]
    if int(np.prod(sizes, dtype=np.int64)) > _MAX_CHOICES:
        return [{}]
    ranges = [range(int(specs[i].support.lower_bound), int(specs[i].support.upper_bound) + 1) for i in small]
    return [dict(zip(small, combo)) for combo in itertools.product(*ranges)]


def _whole(s):
    """The range of every element of another θ: an infeasible cell of ``t`` is infeasible for all of it."""
    if isinstance(s.support, constraints.integer_interval):
        return float(s.support.lower_bound), float(s.support.upper_bound)
    if s.discrete:
        return -_INT64, _INT64
    bounds = support_bounds(s.support)  # a continuous θ: its hull (the real line when unknown)
    return (-math.inf, math.inf) if bounds is None else (float(np.min(bounds[0])), float(np.max(bounds[1])))


def _inside(s):
    """One value inside another θ's support (the feasibility test at one point)."""
    lo, hi = _whole(s)
    if s.discrete:
        return max(lo, min(hi, 0.0))
    if math.isfinite(lo) and math.isfinite(hi):
        return 0.5 * (lo + hi)
    return lo + 1.0 if math.isfinite(lo) else (hi - 1.0 if math.isfinite(hi) else 0.0)


def _discrete_boxes(specs, choice, batch):
    """The boxes of the discrete θ for one choice: its values where it fixes them, else the whole
    range (infeasibility must hold for all of them)."""
    boxes = []
    for i, s in enumerate(specs):
        lo, hi = (choice[i], choice[i]) if i in choice else _whole(s)
        shape = (batch,) + tuple(s.shape)
        boxes.append(Box(np.full(shape, float(lo)), np.full(shape, float(hi))))
    return boxes


def _one_value(specs, batch):
    """One value of every other θ (see :func:`_inside`): a feasibility test."""
    return [point(np.full(s.shape, _inside(s)), batch) for s in specs]


def _decider(program, specs, shape):
    """``decide(lo, hi) -> (feasible, infeasible)`` per cell ``[lo, hi]`` of ``t``."""
    cache, choices = {}, _choices(specs)

    def decide(lo, hi):
        batch = lo.shape[0]
        t = Box(np.broadcast_to(lo.reshape((batch,) + (1,) * len(shape)), (batch,) + shape),
                np.broadcast_to(hi.reshape((batch,) + (1,) * len(shape)), (batch,) + shape))
        infeasible = np.ones(batch, bool)
        for choice in choices:  # certainly false for every choice of the discrete θ
            _, no = enclose(program, [t] + _discrete_boxes(specs, choice, batch), cache)[0].certainly()
            infeasible &= no.reshape(batch)
        feasible, _ = enclose(program, [t] + _one_value(specs, batch), cache)[0].certainly()
        return feasible.reshape(batch), infeasible

    return decide


def _first_cells(lo, hi):
    """The first level's cells over ``[lo, hi]`` (ends may be infinite): a uniform grid over a
    bounded support, else a grid in decades out to ±10⁶ and unbounded cells beyond."""
    if math.isfinite(lo) and math.isfinite(hi):
        edges = np.linspace(lo, hi, _GRID + 1)
        return edges[:-1], edges[1:]
    ladder = np.concatenate([np.linspace(10.0**k, 10.0 ** (k + 1), 9)[:-1] for k in range(-3, 6)] + [[_HALF_LINE]])
    edges = np.concatenate([-ladder[::-1], [0.0], ladder])
    edges = np.unique(np.clip(edges, lo, hi))
    edges = np.concatenate([[lo] if lo < edges[0] else [], edges, [hi] if hi > edges[-1] else []])
    return edges[:-1], edges[1:]


def _split(lo, hi):
    """Halves of bounded cells; an unbounded cell moves its finite end tenfold outwards."""
    mid = np.where(np.isinf(lo), np.minimum(10 * hi, -1.0), np.where(np.isinf(hi), np.maximum(10 * lo, 1.0),
                                                                       0.5 * (lo + hi)))
    return np.concatenate([lo, mid]), np.concatenate([mid, hi])


def _too_small(lo, hi):
    scale = np.maximum(1.0, np.maximum(np.abs(lo), np.abs(hi)))
    return (hi - lo <= _REL_TOL * scale) | (np.isinf(lo) & (hi < -1e300)) | (np.isinf(hi) & (lo > 1e300))


def _cells(decide, lo, hi):
    """Branch and bound: the final cells ``(lo, hi, status)`` sorted, status 1 feasible, 0
    infeasible, −1 undecided at round-off; ``None`` when undecided cells remain at the depth limit,
    when too many stay undecided, or when the first level certifies no cell infeasible (nothing
    would be cut; what is undecided there lies at the support's ends, as a log's 0 does)."""
    lo, hi = _first_cells(lo, hi)
    done_lo, done_hi, done_status = [], [], []
    for level in range(_LEVELS):
        feasible, infeasible = decide(lo, hi)
        if level == 0 and not np.any(infeasible):  # nothing certainly cut at the first level: θ stays
            return None
        status = np.where(feasible, 1, np.where(infeasible, 0, -1))
        final = (status >= 0) | _too_small(lo, hi)
        done_lo.append(lo[final]), done_hi.append(hi[final]), done_status.append(status[final])
        lo, hi = lo[~final], hi[~final]
        if lo.size == 0:
            break
        if lo.size > _MAX_OPEN:
            return None
        lo, hi = _split(lo, hi)
    else:
        return None
    lo, hi, status = (np.concatenate(x) for x in (done_lo, done_hi, done_status))
    order = np.argsort(lo)
    return lo[order], hi[order], status[order]


def _one_interval(lo, hi, status):
    """``(a, b)``: the cells not certified infeasible, when they form one run of feasible cells
    with undecided (round-off) cells only at its ends; ``None`` otherwise."""
    kept = np.flatnonzero(status != 0)
    if kept.size == 0 or np.any(np.diff(kept) != 1) or not np.any(status[kept] == 1):
        return None
    run = status[kept]
    first, last = np.flatnonzero(run == 1)[[0, -1]]
    if np.any(run[first:last + 1] != 1):  # an undecided cell inside: not certified
        return None
    a, b = lo[kept[0]], hi[kept[-1]]
    return a - _MARGIN * max(1.0, abs(a)), b + _MARGIN * max(1.0, abs(b))


def feasible_set(program, specs, shape, lo, hi, periodic):
    """The feasible interval of ``t`` within ``[lo, hi]`` (θ's support), or ``None``.

    With ``periodic``, ``(a, b)`` is the interval of one period (``b − a < 2π``), repeated every
    2π; otherwise the feasible set itself."""
    decide = _decider(program, specs, tuple(shape))
    if periodic:
        start = _infeasible_start(decide)
        if start is None:
            return None
        lo, hi = start, start + TWO_PI
    cells = _cells(decide, lo, hi)
    if cells is None:
        return None
    found = _one_interval(*cells)
    if found is None or (periodic and not found[1] - found[0] < TWO_PI):
        return None
    return found


def _infeasible_start(decide):
    """The lower end of a certified-infeasible cell in ``[0, 2π)``: where a period may start."""
    edges = np.linspace(0.0, TWO_PI, 4 * _GRID + 1)
    _, infeasible = decide(edges[:-1], edges[1:])
    hits = np.flatnonzero(infeasible)
    return float(edges[hits[0]]) if hits.size else None


# --- the rewritten θ -------------------------------------------------------------------------------
def _scalar_continuous(schedule):
    """The names of the schedule's scalar continuous θ (each is narrowed on its own), or ``[]``
    when there are more than :data:`_MAX_NARROWED` of them (the search costs a trace each)."""
    names = [n for n, s in schedule.theta.items()
             if not s.discrete and int(np.prod(s.shape, dtype=np.int64)) == 1 and s.event_dim == 0]
    return names if len(names) <= _MAX_NARROWED else []


def _narrowed(schedule, name, a, b, periodic):
    """The schedule with θ ``name`` in ``[a, b]`` (and a period θ where ``periodic``); ``None``
    when ``periodic`` and ``name`` is not drawn by a free step of its own."""
    old = schedule.theta[name]
    spec = ThetaSpec(old.shape, old.dtype, support_from_bounds(a, b), old.kind, old.origin)
    if not periodic:
        return dataclasses.replace(schedule, theta={n: spec if n == name else s for n, s in schedule.theta.items()})
    at = _free_step(schedule, name)
    if at is None:
        return None
    period = _fresh(f"{name}_period", schedule.theta)
    steps = list(schedule.steps)
    steps[at] = PeriodicFreeStep(steps[at].var, name, period=period, lower=a)
    theta = {}
    for n, s in schedule.theta.items():
        theta[n] = spec if n == name else s
        if n == name:
            theta[period] = ThetaSpec((), np.dtype(int_dtype()), integer, "period", f"period of {name}")
    return dataclasses.replace(schedule, steps=steps, theta=theta)


def _free_step(schedule, name):
    """The index of the free step drawing θ ``name`` outright, or ``None``."""
    return next((i for i, s in enumerate(schedule.steps) if type(s) is FreeStep and s.name == name), None)


def _fresh(name, taken):
    k, out = 1, name
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    return out


def _with_schedule(inverse, schedule):
    """``inverse`` running ``schedule`` instead (nothing traced again)."""
    other = copy.copy(inverse)
    other.schedule = schedule
    other.trace_count = 0
    other._run = jax.jit(other.run_flat)
    other._pgf = jax.jit(other.pgf_flat)
    return other


def _narrow_one(schedule, name, ctx, y):
    """``(schedule, (a, b, periodic))`` with θ ``name`` narrowed to its certified feasible set
    (the projection of the whole feasible set onto it: only cells infeasible for every value of
    the other θ are cut), or ``None``."""
    bounds = support_bounds(schedule.theta[name].support)
    if bounds is None:
        return None
    try:
        program, others = _flag_program(schedule, ctx, y, name)
        periodic = bounds[:2] == (-math.inf, math.inf) and is_periodic(program)
        if periodic and _free_step(schedule, name) is None:
            return None  # a period θ needs the variable drawn by a free step of its own
        specs = [schedule.theta[n] for n in others]
        found = feasible_set(program, specs, schedule.theta[name].shape, bounds[0], bounds[1], periodic)
    except Exception:  # noqa: BLE001 - NoEnclosure, or a flag that cannot be traced: no certificate, θ as it was
        return None
    if found is None:
        return None
    a, b = found
    if periodic:  # the period nearest 0 (the set repeats every 2π): θ's values stay small
        shift = TWO_PI * round(0.5 * (a + b) / TWO_PI)
        a, b = a - shift, b - shift
    else:  # never wider than the support was
        a, b = max(a, bounds[0]), min(b, bounds[1])
        if (a, b) == tuple(bounds[:2]):
            return None
    narrowed = _narrowed(schedule, name, a, b, periodic)
    return None if narrowed is None else (narrowed, (a, b, periodic))


def feasible_theta(inverse, ctx, y):
    """``(inverse, found)``: ``inverse`` with each scalar continuous θ narrowed to its certified
    feasible set at the concrete context ``ctx`` and observations ``y`` — the projection of the
    feasible set onto that θ, so the product of the narrowed supports still holds all of it —
    and what was found (``None``, or ``{θ name: (a, b, periodic)}``); the inverse unchanged
    where nothing is certified."""
    schedule = inverse.schedule
    if not isinstance(schedule, Schedule) or not all(is_concrete(v) for v in list(ctx) + list(y)):
        return inverse, None
    found = {}
    for name in _scalar_continuous(schedule):
        narrowed = _narrow_one(schedule, name, ctx, y)
        if narrowed is not None:
            schedule, found[name] = narrowed
    if not found:
        return inverse, None
    return _with_schedule(inverse, schedule), found
