"""Choosing θ by geometry when a model is conditioned (DESIGN §8).

Every θ that makes the inverse a bijection gives the same posterior, but not the same
sampler: a θ whose solves have restricted domains (a ``logit``, an ``arcsin``, a solved
latent that must stay in its support) puts walls inside θ-space, where the density drops
to zero and NUTS diverges or sticks. The scheduler ranks the variables it frees by a fixed
order of preferences; here the conditioned model's schedule is chosen among a few
alternatives by what a sampler will meet:

* **candidates** — the scheduler's own schedule (the default), and the schedules obtained by
  freeing each upstream latent first, every set of as many latents as the default frees (the
  two dissociation constants of ``models/binding_equilibrium.py``, whose default frees a
  concentration and a ligand and leaves 2 % of prior draws valid), and all of them but one (so that the one
  left is solved last, through whichever relation it is in: ``c = cbrt(y − σ(a + b))``
  rather than ``b = logit(y − c³) − a``). At most :data:`MAX_CANDIDATES`, so build time
  stays linear in the program;
* **validity** — the fraction of prior draws of the latents whose θ (by the candidate's
  PGF) the inverse maps to a valid point at the observed data: inside every solve's domain
  and every latent's support. One compiled program per candidate, a loop over
  :data:`NUM_DRAWS` draws (the same draws for all: differences are not sampling noise);
  the default first, then the alternatives with the fewest static features, and none that
  could at best tie with one already measured;
* **static terms** — the walls and folds (solves with restricted domains, solved values
  that must stay in a support) and the singular points (a product through a factor that
  moves with θ) of the schedule (:func:`ppinv.geometry.static_features`).

A default that maps at least half the draws to valid points is kept: its walls lie in the
prior's tails, which the posterior seldom reaches (on ``models/`` such a default samples as
well as or better than its more valid alternatives). Otherwise the most valid alternative
that is clearly more valid than the default wins; within Monte-Carlo error of the best,
fewer walls and folds, then fewer singular points. A default with no wall or fold is kept
at no cost (nothing is drawn or compiled), and so is one whose only walls are supports its
own operations keep (``b = y / a`` with ``y > 0`` and ``a`` a positive θ, shown by the rule
table's image rules). The choice needs the data and the model's
arguments as values: while they are traced it keeps the default. The posterior does not
depend on the choice (every candidate is an exact inverse); only the sampler's geometry
does. ``plan.theta_choice`` says what was compared and why the schedule was taken.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
from jax import lax
from numpyro import handlers

from ._compat import is_concrete
from .errors import InversionError
from .geometry import static_features
from .arguments import sign_support
from .theta import support_within

__all__ = ["ThetaCandidate", "ThetaChoice", "choose_schedule", "NUM_DRAWS", "MAX_CANDIDATES", "MAX_MEASURED_SITES"]

#: prior draws each candidate's validity is measured on
NUM_DRAWS = 256
#: alternative schedules built besides the default (the bound that keeps build time linear)
MAX_CANDIDATES = 12
#: validity differences below this (plus two standard errors) are ties
_VALID_SLACK = 0.01
#: a default that maps at least this fraction of the prior draws to valid points is kept: its walls
#: lie in the prior's tails, where the posterior seldom is (measured on models/: the enzyme assay's
#: default, 73 % valid, samples 2.5x faster than its 100 % valid alternative; Kepler's, 16 %, diverges)
#: Models with more separate latent sites upstream of the data keep the default θ (cost bound).
MAX_MEASURED_SITES = 5
KEEP_DEFAULT_VALID = 0.5


@dataclass
class ThetaCandidate:
    """One schedule considered: the latents freed first, its static features, its validity."""

    free: tuple
    inverse: object = None  # the :class:`~ppinv.Inverse` with that schedule
    features: list = field(default_factory=list)
    valid: float = math.nan
    refused: str = ""

    @property
    def schedule(self):
        return self.inverse.schedule if self.inverse is not None else None

    @property
    def walls(self) -> int:
        return sum(kind in ("wall", "fold") for kind, _, _ in self.features)

    @property
    def singular(self) -> int:
        return sum(kind == "singular" for kind, _, _ in self.features)

    @property
    def theta(self) -> tuple:
        return tuple(self.schedule.theta) if self.schedule is not None else ()

    def __str__(self):
        free = f"free={list(self.free)}" if self.free else "default"
        if self.refused:
            return f"{free}: refused ({self.refused})"
        valid = "not measured" if math.isnan(self.valid) else f"{self.valid:.1%} valid"
        return f"{free}: θ {list(self.theta)}, {valid}, {self.walls} wall(s)/fold(s), {self.singular} singular"


@dataclass
class ThetaChoice:
    """What :func:`choose_schedule` compared (``candidates[0]`` is the default) and took."""

    chosen: ThetaCandidate
    candidates: list
    reason: str
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return self.chosen is not self.candidates[0]

    def __str__(self):
        lines = [f"θ choice ({self.seconds:.2f} s): {self.reason}"]
        lines += [f"  {'*' if c is self.chosen else '-'} {c}" for c in self.candidates]
        return "\n".join(lines)


def choose_schedule(plan, default, free, full_ctx):
    """The inverse of ``plan`` whose schedule a sampler meets the fewest walls in, and why (a
    :class:`ThetaChoice`).

    ``default`` is the :class:`~ppinv.Inverse` the scheduler built with the latents ``free``
    (names) freed first; the alternatives are ``default.with_free(names)`` (raising
    :class:`InversionError` where that is impossible); ``full_ctx()`` gives the known inputs
    of the inverse.
    """
    start = time.perf_counter()
    first = ThetaCandidate(tuple(free), default, static_features(default.schedule))

    def done(chosen, candidates, reason):
        return chosen.inverse, ThetaChoice(chosen, candidates, reason, time.perf_counter() - start)

    if not first.walls:
        return done(first, [first], "the default schedule has no wall or fold: kept")
    if len(plan.upstream) > MAX_MEASURED_SITES:
        # drawing the prior compiles every site's sampler, and each candidate is one more
        # schedule search: with many separate sites the choice would cost more than sampling
        return done(first, [first], f"{len(plan.upstream)} latent sites (more than {MAX_MEASURED_SITES}): "
                                    "not measured, default kept")
    full_ctx = _concrete_context(plan, full_ctx)
    if full_ctx is None:
        return done(first, [first], "traced data, params or model arguments: no point to measure at; default kept")
    y = plan._observed(full_ctx)
    first.features = _features(default, full_ctx, y)
    if not first.walls:
        return done(first, [first], "the default schedule has no wall or fold its own operations do not rule out: kept")
    candidates = [first] + _alternatives(plan, default, tuple(free), first)
    built = [c for c in candidates if c.inverse is not None]
    for c in built[1:]:
        c.features = _features(c.inverse, full_ctx, y)
    if len(built) == 1:
        return done(first, candidates, "no alternative schedule: default kept")
    draws = _prior_draws(plan, full_ctx, NUM_DRAWS)
    measured = []
    for c in [first] + sorted(built[1:], key=_static_cost):  # most promising first
        if measured and first.valid >= KEEP_DEFAULT_VALID:
            break  # kept whatever the alternatives measure: none is compiled
        if any(m.valid == 1.0 and _static_cost(m) <= _static_cost(c) for m in measured):
            continue  # it can at best tie with one measured before it, which a tie keeps: not compiled
        c.valid = _valid_fraction(plan, c.inverse, full_ctx, y, draws)
        measured.append(c)
    chosen, reason = _pick(measured)
    return done(chosen, candidates, reason)


def _concrete_context(plan, full_ctx):
    """The known inputs and the observations as values, or ``None`` while any is traced."""
    try:
        ctx = full_ctx()
        y = plan._observed(ctx) if all(is_concrete(v) for v in ctx) else None
    except Exception:  # data given as shapes only (a handlers.condition from outside, under jit)
        return None
    return ctx if y is not None and all(is_concrete(v) for v in y) else None


def _free_lists(upstream, free, width=0):
    """Latents to free first: each one alone, then every set of ``width`` of them (as many as the
    default frees: binding totals are best solved for the free concentrations with both
    constants freed), then all but each one (the user's ``free`` before them)."""
    rest = [n for n in upstream if n not in free]
    singles = [free + (n,) for n in rest]
    sets = [free + c for c in itertools.combinations(rest, width)] if 1 < width < len(rest) - 1 else []
    all_but = [free + tuple(m for m in rest if m != n) for n in rest] if len(rest) > 2 else []
    return singles + sets + all_but


def _features(inverse, ctx, y):
    """Static features of ``inverse``'s schedule, less the support walls its own operations rule out.

    The inverse is traced with θ in its supports and the data and context known by their sign
    (``y = 2`` is positive): ``b = y / a`` with ``y > 0`` and ``a`` a positive θ is positive, so
    ``b``'s support is no wall.
    """
    schedule = inverse.schedule
    found = inverse.proven_supports({"context": [sign_support(v) for v in ctx], "y": [sign_support(v) for v in y]})
    proven = {u for u in schedule.unknown_inputs if support_within(found.get(u), schedule.supports.get(u))}
    return static_features(schedule, proven=proven)


# --- candidates ------------------------------------------------------------------------------------------
def _alternatives(plan, inverse, free, default):
    seen = {default.schedule.describe()}
    out = []
    width = len([n for n in default.schedule.theta if n in plan.upstream]) - len(free)
    for names in _free_lists(list(plan.upstream), free, width):
        if len(out) >= MAX_CANDIDATES:
            break
        c = ThetaCandidate(names)
        try:
            c.inverse = inverse.with_free(list(names))
        except InversionError as err:  # this set cannot be θ: the others can still be
            c.refused = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
            out.append(c)
            continue
        key = c.schedule.describe()
        if key in seen:  # the same schedule as one before
            continue
        seen.add(key)
        out.append(c)
    return out


def _static_cost(c):
    return (c.walls, c.singular)


def _pick(built):
    """The default unless most prior draws are invalid under it and an alternative does clearly
    better; then the most valid alternative, within noise of it the fewest walls/folds, then
    singular points, then the earliest.

    Counts of walls and folds only rank alternatives that beat the default: a count says nothing
    of whether the posterior comes near them (on ``models/manifold_toy.py`` the default's two
    folds sample far better than one wall elsewhere, at equal validity).
    """
    default = built[0]
    if default.valid >= KEEP_DEFAULT_VALID:
        return default, (f"the default maps {default.valid:.1%} of prior draws to valid points (at least "
                         f"{KEEP_DEFAULT_VALID:.0%}): kept")
    best = max(c.valid for c in built)

    def within_noise(c, of):
        se = math.sqrt(max(of * (1 - of) + c.valid * (1 - c.valid), 0.0) / NUM_DRAWS)
        return c.valid >= of - _VALID_SLACK - 2 * se

    better = [c for c in built[1:] if within_noise(c, best) and not within_noise(default, c.valid)]
    if not better:
        return default, f"no alternative is clearly more valid than the default ({default.valid:.1%}): kept"
    chosen = min(better, key=_static_cost)  # min keeps the first of equals
    return chosen, (f"free={list(chosen.free)} maps {chosen.valid:.1%} of prior draws to valid points "
                    f"({chosen.walls} wall(s)/fold(s)), the default {default.valid:.1%} ({default.walls})")


# --- measuring a candidate ---------------------------------------------------------------------------------
def _prior_draws(plan, full_ctx, n):
    """``n`` prior draws of the upstream latents (as inputs of the inverted map), one compiled program."""
    n_args, n_params = len(plan.arg_avals), len(plan.params)
    args, kwargs = plan.rebuild_args(full_ctx)
    params = dict(zip(plan.params, full_ctx[n_args:n_args + n_params]))
    data = dict(zip(plan.data_names, full_ctx[n_args + n_params:]))

    def one(key):
        with handlers.trace() as tr, handlers.seed(rng_seed=key), handlers.substitute(data=params), \
                handlers.condition(data=data):
            plan.cm.model(*args, **kwargs)
        return [plan.sites[m].to_input(jnp.asarray(tr[m]["value"])) for m in plan.upstream]

    # a loop, not a vmap: XLA compiles a batched rejection sampler (Gamma, Beta) several times slower
    return jax.jit(lambda keys: lax.map(one, keys))(jax.random.split(jax.random.PRNGKey(0), n))


def _valid_fraction(plan, inverse, full_ctx, y, draws):
    """Fraction of the draws whose θ (by ``inverse``'s PGF) maps to a valid point at ``y``."""

    def one(xs):
        theta = inverse.pgf_flat(full_ctx, xs)
        solved, log_det, ok = inverse.run_flat(full_ctx, y, theta)
        for m, x in zip(plan.upstream, solved):  # the whole support (a simplex's last entry too)
            support = plan.sites[m].support
            if support is not None:
                ok = ok & jnp.all(support.check(plan.sites[m].from_input(x)))
        return ok & jnp.isfinite(log_det)

    return float(jnp.mean(jax.jit(lambda xs: lax.map(one, xs))(draws)))
