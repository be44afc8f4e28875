"""The walls, folds and singular points of a schedule (:func:`static_features`), and each one's
margin per posterior draw: how far its known values lie from the edge, in posterior standard
deviations (:func:`solve_margins`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from .._piecewise import theta_dependent
from ..rules._base import _BinarySolver, _UnarySolver
from ..schedule import BlockStep, PolyStep, SolveStep
from ..theta import support_bounds

# relative steps (in posterior standard deviations) at which a domain edge is looked for
_GRID = np.geomspace(1e-4, 4.0, 24)
_PRODUCTS = (lax.mul_p, lax.div_p)


# --- the features of a schedule ------------------------------------------------------------------
@dataclass
class _Probe:
    """One feature: its kind, the relation, the variables it reads, and its per-draw margin."""

    kind: str
    relation: str
    what: str
    reads: tuple
    margin: object  # margin(values, scales) -> (n_draws,) margins


def _steps(schedule):
    if hasattr(schedule, "schedules"):  # a union over flat pieces: every schedule's steps
        return [s for sub in schedule.schedules for s in sub.steps]
    return list(schedule.steps)


def _probes(schedule, proven=frozenset()):
    unknown = set(schedule.unknown_inputs) - proven
    probes = []
    for step in _steps(schedule):
        if isinstance(step, SolveStep):
            probes.extend(_solve_probes(step))
            produced = [v for v, k in zip(step.eqn.ins, step.known_in) if not k]
            relation = step.eqn.describe()
        elif isinstance(step, BlockStep):
            produced, relation = list(step.block.leaves), step.block.anchors[0].describe()
        elif isinstance(step, PolyStep):
            produced, relation = [step.block.leaf], step.block.anchor.describe()
        else:
            continue
        if getattr(getattr(step, "solver", None), "keeps_supports", False):
            continue  # θ ranges over exactly the values that keep them in their supports
        for v in produced:
            if v in unknown:
                probe = _support_probe(v, schedule.supports.get(v), relation)
                if probe is not None:
                    probes.append(probe)
    return probes


def static_features(schedule, proven=()):
    """The walls, folds and singular points a schedule puts in θ-space, before any sampling.

    ``[(kind, relation, what)]``, one per feature, in step order. A singular point counts only
    where its factor moves with continuous θ: a product through an observed factor is no point
    the sampler can reach. ``proven``: solved variables known to stay in their supports (no wall).
    """
    dep = _theta_dependent(schedule)
    return [(p.kind, p.relation, p.what) for p in _probes(schedule, set(proven))
            if p.kind != "singular" or any(v in dep for v in p.reads)]


def _theta_dependent(schedule):
    if hasattr(schedule, "schedules"):  # a union over flat pieces: θ-dependent in any of them
        return set().union(*(theta_dependent(s.steps, s.theta) for s in schedule.schedules))
    return theta_dependent(schedule.steps, schedule.theta)


def _solve_probes(step):
    e, solver = step.eqn, step.solver
    if isinstance(solver, _UnarySolver) and solver.rule.domain is not None:
        z = e.outs[0]
        if _excludes_points_only(solver.rule.domain):  # an odd root at 0: |dx/dz| is infinite there
            kind, what = "singular", f"{e.prim.name}'s inverse at an isolated point outside its domain"
        elif solver.rule.choices:
            kind, what = "fold", "two branches of the solve meet at its domain edge"
        else:
            kind, what = "wall", f"the domain of {e.prim.name}'s inverse"
        return [_Probe(kind, e.describe(), what, (z,), _domain_margin(solver.rule.domain, z))]
    if isinstance(solver, _BinarySolver) and e.prim in _PRODUCTS:
        factors = [v for v, k in zip(e.ins, step.known_in) if k and not v.is_const]
        if e.prim is lax.div_p and step.known_in[0] and not step.known_in[1]:
            factors.append(e.outs[0])  # b = a / z: the observed quotient divides
        return [_Probe("singular", e.describe(), f"{e.prim.name} through a factor near 0 ({v!r})", (v,),
                       _zero_margin(v)) for v in factors]
    return []


#: values at which a domain is tried: both signs over many magnitudes (never exactly 0 or ±1)
_DOMAIN_PROBES = np.concatenate([-np.geomspace(1e-6, 1e6, 37), np.geomspace(1e-6, 1e6, 37)]) * (1 + 1e-3)
_POINTS_ONLY = {}


def _excludes_points_only(domain):
    """Whether ``domain`` holds at every probe value: it leaves out isolated points at most (cbrt's
    ``z != 0``), no interval a sampler could wander into (a logit's (0, 1), a log's z > 0)."""
    key = id(domain)
    if key not in _POINTS_ONLY:
        try:
            _POINTS_ONLY[key] = (domain, bool(np.all(np.asarray(domain(jnp.asarray(_DOMAIN_PROBES))))))
        except Exception:  # a domain that cannot be tried on plain values: a wall, to be safe
            _POINTS_ONLY[key] = (domain, False)
    return _POINTS_ONLY[key][1]


def _support_probe(v, support, relation):
    bounds = support_bounds(support)
    if bounds is None or not (math.isfinite(bounds[0]) or math.isfinite(bounds[1])):
        return None
    lo, hi = bounds[:2]

    def margin(values, scales):
        x, s = values[v], scales[v]
        dist = np.minimum(x - lo, hi - x)
        return _per_draw(dist / s)

    return _Probe("wall", relation, f"solved {v!r} must stay in its support {support}", (v,), margin)


def _per_draw(m):
    """The smallest margin over a variable's elements, per draw (``m``: draws × elements)."""
    m = np.where(np.isnan(m), np.inf, m)
    return np.min(m.reshape(m.shape[0], -1), axis=1) if m.ndim > 1 else m


def _domain_margin(domain, z):
    """Distance of ``z`` to the edge of ``{domain(z)}``: the smallest step (in sd) that leaves it."""

    def margin(values, scales):
        x, s = values[z], scales[z]
        edge = np.full(x.shape, np.inf)
        for d in _GRID[::-1]:  # smallest step last, so it wins
            out = np.zeros(x.shape, bool)
            for direction in (1.0, -1.0):
                out |= ~np.asarray(domain(jnp.asarray(x + direction * d * s)), bool)
            edge = np.where(out & (s > 0), d, edge)
        return _per_draw(edge)

    return margin


def _zero_margin(v):
    def margin(values, scales):
        return _per_draw(np.abs(values[v]) / scales[v])

    return margin


def solve_margins(conditioned, samples, *args, batch_ndims=1, **kwargs):
    """Per draw, the margin of every wall, fold and singular point of ``conditioned``'s schedule.

    Returns ``[(kind, relation, what, margins)]`` with ``margins`` shaped like the batch: the
    distance of the solve's known values to its domain edge in posterior standard deviations
    (the scale is the spread over all the draws given; ``inf`` for values no draw moves).
    """
    plan = conditioned.plan(*args, **kwargs)
    probes = _probes(plan.schedule)
    if not probes:
        return []
    latents = {n: jnp.asarray(samples[n]) for n in plan.upstream}
    batch = next(iter(latents.values())).shape[:batch_ndims]
    flat = {n: v.reshape((-1,) + v.shape[batch_ndims:]) for n, v in latents.items()}
    values = _values_at(plan, flat, {v for p in probes for v in p.reads}, args, kwargs)
    scales = {v: _scale(x) for v, x in values.items()}
    return [(p.kind, p.relation, p.what, p.margin(values, scales).reshape(batch)) for p in probes]


def _values_at(plan, latents, wanted, args, kwargs):
    """Values of the program's variables ``wanted`` at every draw (the forward program, recorded)."""
    ctx = plan.full_ctx_of(args, kwargs)
    schedule, program = plan.schedule, plan.program
    inputs = {v: jnp.zeros(v.shape, v.dtype) for v in plan.ignored}
    inputs.update(dict(zip(schedule.known_inputs, ctx)))
    wanted = [v for v in wanted if not v.is_const]

    def one(lat):
        env_in = dict(inputs)
        env_in.update({v: plan.sites[n].to_input(lat[n]) for v, n in zip(schedule.unknown_inputs, plan.upstream)})
        _, env = program.evaluate(*[env_in[v] for v in program.invars], record=True)
        return [env[v] for v in wanted]

    out = jax.jit(jax.vmap(one))(latents)
    return {v: np.asarray(x, float) for v, x in zip(wanted, out)}


def _scale(x):
    """Posterior standard deviation per element (0 where no draw moves it)."""
    s = np.std(x, axis=0)
    return np.where(s > 1e-12 * (1.0 + np.abs(np.mean(x, axis=0))), s, 0.0)[None]
