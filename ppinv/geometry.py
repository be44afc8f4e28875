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
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._piecewise import theta_dependent
from .schedule import BlockStep, PolyStep, SolveStep
from .errors import InputError
from .rules._base import _BinarySolver, _UnarySolver
from .theta import support_bounds

__all__ = ["GeometryFeature", "StuckBranch", "GeometryReport", "geometry_report", "solve_margins", "static_features"]

# relative steps (in posterior standard deviations) at which a domain edge is looked for
_GRID = np.geomspace(1e-4, 4.0, 24)
_PRODUCTS = (lax.mul_p, lax.div_p)


@dataclass
class GeometryFeature:
    """One wall, fold or singular point of the schedule, and how the divergences relate to it.

    ``margin_divergent`` / ``margin_other``: median margin (posterior standard deviations to the
    edge) at the divergent draws and at the others; ``association``: the probability that a
    divergent draw is nearer the edge than a non-divergent one (0.5: unrelated);
    ``concentrated``: divergences concentrate here.
    """

    kind: str
    relation: str
    what: str
    margin_divergent: float
    margin_other: float
    association: float
    n_divergent: int
    concentrated: bool = False

    def __str__(self):
        flag = "divergences concentrate here" if self.concentrated else "not where divergences are"
        return (f"{self.kind} ({self.what}) made by\n      {self.relation}\n      median margin "
                f"{self.margin_divergent:.3g} sd at divergent draws vs {self.margin_other:.3g} sd elsewhere, "
                f"association {self.association:.2f}: {flag}")


@dataclass
class StuckBranch:
    """A discrete θ site that kept one value over a whole chain while other branches have mass."""

    site: str
    chain: int
    value: object
    other_mass: float
    evidence: str

    def __str__(self):
        return (f"discrete θ '{self.site}' stayed at {self.value} over chain {self.chain}; other branches "
                f"hold about {self.other_mass:.1%} of the mass ({self.evidence})")


@dataclass
class GeometryReport:
    """What :func:`geometry_report` found. ``concentrated`` lists the features where the
    divergent transitions concentrate, most associated first."""

    n_draws: int
    n_divergent: int
    features: list = field(default_factory=list)
    stuck: list = field(default_factory=list)

    @property
    def concentrated(self):
        return [f for f in self.features if f.concentrated]

    def __str__(self):
        lines = [f"θ geometry: {self.n_divergent} divergent of {self.n_draws} transitions"]
        if not self.features:
            lines.append("  no walls, folds or singular points in the schedule")
        for f in self.features:
            lines.append(f"  {'*' if f.concentrated else '-'} {f}")
        for s in self.stuck:
            lines.append(f"  ! {s}")
        return "\n".join(lines)


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


# --- divergences against margins ------------------------------------------------------------------
def _association(m_div, m_other):
    """P(a divergent draw is nearer the edge than another draw), ties counted half (the
    Mann–Whitney statistic), and its z-score against 0.5 (no relation)."""
    n1, n2 = m_div.size, m_other.size
    if n1 == 0 or n2 == 0:
        return 0.5, 0.0
    a, b = m_div[:, None], m_other[None, :]
    auc = float(np.mean((a < b) + 0.5 * (a == b)))
    return auc, (auc - 0.5) / math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2))


def _feature(kind, relation, what, margins, diverging, min_divergent, z_min):
    m, d = margins.reshape(-1), diverging.reshape(-1)
    m_div, m_other = m[d], m[~d]
    assoc, z = _association(m_div, m_other)
    med = lambda x: float(np.median(x)) if x.size else math.nan  # noqa: E731
    # A divergent draw is a point of the trajectory that diverged, not the point where it did:
    # divergent draws lie nearer the edge than the others (significantly: the z-score of the
    # rank statistic), and within the posterior's spread of it.
    near = bool(m_div.size) and float(np.median(m_div)) < 1.0
    concentrated = bool(d.sum() >= min_divergent and z >= z_min and near)
    return GeometryFeature(kind, relation, what, med(m_div), med(m_other), assoc, int(d.sum()), concentrated)


# --- discrete θ that never moved -------------------------------------------------------------------
def _stuck_branches(conditioned, samples, args, kwargs, min_mass):
    plan = conditioned.plan(*args, **kwargs)
    discrete = {plan.theta_sites[n]: spec for n, spec in plan.schedule.theta.items() if spec.discrete}
    if not discrete:
        return []
    theta = {k: np.asarray(v) for k, v in conditioned.theta_of(samples, *args, batch_ndims=2, **kwargs).items()}
    untouched = {n: jnp.asarray(samples[n]) for n in plan.untouched if n in samples}
    found = []
    for site, spec in discrete.items():
        vals = theta[site]
        n_chains = vals.shape[0]
        for c in range(n_chains):
            first = vals[c, 0]
            if not np.all(vals[c] == first):
                continue
            others = np.concatenate([vals[k] for k in range(n_chains) if k != c]) if n_chains > 1 else vals[c][:0]
            from_chains = float(np.mean(np.any((others != first).reshape(len(others), -1), axis=1))) if len(
                others) else 0.0
            chain_theta = {k: v[c] for k, v in theta.items()}
            chain_untouched = {k: v[c] for k, v in untouched.items()}
            from_weights = _other_branch_mass(conditioned, plan, site, spec, chain_theta, chain_untouched,
                                              args, kwargs)
            mass = max(from_chains, from_weights)
            if mass >= min_mass:
                evidence = (f"other chains visit other values in {from_chains:.1%} of their draws; "
                            f"the branch weights of this chain's draws give {from_weights:.1%}")
                found.append(StuckBranch(site, c, first.tolist(), mass, evidence))
    return found


def _alternatives(spec, value):
    """Other values of one element of a discrete θ: every value of a bounded choice, ±1 of a period."""
    lo, hi = getattr(spec.support, "lower_bound", None), getattr(spec.support, "upper_bound", None)
    if lo is not None and hi is not None and int(hi) - int(lo) <= 16:
        return [k for k in range(int(lo), int(hi) + 1)]
    return [int(value) - 1, int(value), int(value) + 1]


def _other_branch_mass(conditioned, plan, site, spec, theta, untouched, args, kwargs):
    """Mean over the draws of the conditional probability that the site's element is elsewhere
    (exact Gibbs weights from the conditioned model's density at each alternative value);
    the largest over the site's elements."""
    from numpyro.infer.util import log_density

    def logp(params):
        return log_density(conditioned, args, kwargs, params)[0]

    batched = jax.jit(jax.vmap(logp))
    current = theta[site]
    n = current.shape[0]
    flat = current.reshape(n, -1)
    worst = 0.0
    for j in range(flat.shape[1]):
        values = _alternatives(spec, flat[0, j])
        lps = []
        for k in values:
            alt = flat.copy()
            alt[:, j] = k
            params = {**{s: jnp.asarray(v) for s, v in theta.items()}, **untouched,
                      site: jnp.asarray(alt.reshape(current.shape), current.dtype)}
            lps.append(np.asarray(batched(params), float))
        lps = np.stack(lps)  # alternatives × draws
        with np.errstate(invalid="ignore"):
            w = np.exp(lps - np.max(lps, axis=0, keepdims=True))
            w = w / np.sum(w, axis=0, keepdims=True)
        at_current = np.asarray([w[values.index(int(flat[i, j])), i] for i in range(n)])
        worst = max(worst, float(np.nanmean(1.0 - at_current)))
    return worst


# --- the entry point ---------------------------------------------------------------------------------
def geometry_report(mcmc=None, *, conditioned=None, samples=None, diverging=None, model_args=(),
                    model_kwargs=None, min_divergent=3, z_min=2.5, min_branch_mass=0.01,
                    warn=True) -> GeometryReport:
    """Name the walls, folds and singular points where divergences concentrate, after sampling.

    Give an ``MCMC`` run with one of ppinv's kernels (``InverseNUTS``, ``InverseHMC``,
    ``InverseMH``), or ``conditioned`` with ``samples`` of its latents grouped by chain
    (``chains × draws × ...``) and ``diverging`` (``chains × draws``; none: no divergences).

    Every solve with a restricted domain gets a margin per draw (see :func:`solve_margins`); a
    feature is *concentrated* when at least ``min_divergent`` transitions diverged, divergent
    draws lie nearer its edge than the others (the rank statistic's z-score ≥ ``z_min``), and
    within one posterior standard deviation of it. A ``UserWarning``
    names each discrete θ site that kept one value over a whole chain while other branches
    hold at least ``min_branch_mass`` of the mass (from the other chains' draws, or from the
    exact branch weights at this chain's draws); ``warn=False`` only reports it.

    Examples
    --------
    >>> import jax, numpyro, numpyro.distributions as dist, ppinv
    >>> from numpyro.infer import MCMC
    >>> def model():
    ...     c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    ...     p = numpyro.sample("p", dist.Uniform(0.0, 1.0))
    ...     numpyro.deterministic("y", c + p)
    >>> cm = ppinv.condition(model, {"y": 0.3}, free=["c"])  # p = y − c must stay in (0, 1): a wall
    >>> mcmc = MCMC(ppinv.infer.InverseNUTS(cm), num_warmup=50, num_samples=100, progress_bar=False)
    >>> mcmc.run(jax.random.PRNGKey(0))
    >>> report = ppinv.diagnostics.geometry_report(mcmc)
    >>> print(report)  # doctest: +SKIP
    θ geometry: 23 divergent of 100 transitions
      * wall (solved p:float64[] must stay in its support ...) made by
          v2:float64[] = add(c:float64[], p:float64[])  at <doctest>:4 (model)
          ...
    """
    if mcmc is not None:
        conditioned = conditioned if conditioned is not None else mcmc.sampler.model
        samples = mcmc.get_samples(group_by_chain=True)
        extra = mcmc.get_extra_fields(group_by_chain=True)
        diverging = extra.get("diverging", diverging)
        model_args = tuple(getattr(mcmc, "_args", model_args) or ())
        model_kwargs = dict(getattr(mcmc, "_kwargs", None) or model_kwargs or {})
    if conditioned is None or samples is None:
        raise InputError("geometry_report needs an MCMC run, or conditioned= and samples=.")
    model_kwargs = dict(model_kwargs or {})
    shape = np.shape(next(iter(samples.values())))[:2]
    diverging = np.zeros(shape, bool) if diverging is None else np.asarray(diverging, bool).reshape(shape)
    margins = solve_margins(conditioned, samples, *model_args, batch_ndims=2, **model_kwargs)
    features = [_feature(*m, diverging, min_divergent, z_min) for m in margins]
    features.sort(key=lambda f: (not f.concentrated, -f.association))
    stuck = _stuck_branches(conditioned, samples, model_args, model_kwargs, min_branch_mass)
    if warn:
        for s in stuck:
            warnings.warn(str(s), UserWarning, stacklevel=2)
    return GeometryReport(int(np.prod(shape)), int(diverging.sum()), features, stuck)
