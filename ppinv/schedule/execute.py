"""Running a plan: the one executor (:func:`run_schedule_extra`) and the one PGF walker
(:func:`theta_from_env`), both written against the steps' common interface (``steps.py``)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._compat import is_concrete
from .._piecewise import UnionSchedule
from ..theta import is_constrained
from .steps import read


def run_schedule(schedule, known_values, observed_values, theta):
    """Execute the plan: returns ``(x_values, log_det, ok)`` with ``x`` in input order.

    ``ok`` is False wherever a recovered ``x`` is not finite or log|det| is NaN
    (:func:`finite_guard`), whichever step produced it.
    """
    xs, log_det, ok, _ = run_schedule_extra(schedule, known_values, observed_values, theta)
    return xs, log_det, finite_guard(xs, log_det, ok, theta)


def finite_guard(xs, log_det, ok, theta=None):
    """``ok``, every ``x`` and continuous θ finite, and ``log_det`` not NaN: the one guard of a run.

    NaN propagates: a step that makes NaN from non-NaN values (a forward ``log`` of a
    negative) leaves it in some ``x`` or in log|det|, so this one check at the end finds
    every such step, and the steps need no guard that only detects NaN. An infinite
    ``x`` or θ is outside the domain too (``X`` and a real θ space hold finite values;
    an eager call refuses them as well), so a real support needs no check of its own.
    log|det| may be +∞ at a singular edge point (√ at 0), which callers treat as they
    choose.
    """
    seen = {id(x) for x in xs}  # a θ freed as an input is that x: checked once
    values = list(xs) + [t for t in (theta or {}).values() if id(t) not in seen]
    flags = [jnp.all(jnp.isfinite(v)) for v in values if jnp.issubdtype(jnp.result_type(v), jnp.inexact)]
    flags.append(~jnp.isnan(log_det))
    return jnp.logical_and(ok, jnp.all(jnp.stack(flags)))


def run_schedule_extra(schedule, known_values, observed_values, theta, on_step=None):
    """As :func:`run_schedule`, also returning the values of ``schedule.extra_outputs``.

    log|det| terms and domain flags are collected and combined once at the end
    (not folded step by step), and terms known to be zero are dropped: the
    emitted program is then little more than the inverse itself, which keeps
    XLA's compile time close to that of the forward program.

    ``on_step(what, flags, env)``, if given, is called after each step with that
    step's own domain flags and the values so far, and then for each final check
    (``what`` is ``("support", var)`` or ``("theta", name)``): an eager diagnosis
    of which relation failed (``inverse.py``). It adds nothing to the traced program.
    """
    if isinstance(schedule, UnionSchedule):  # one schedule per side of a flat piece
        return schedule.run(known_values, observed_values, theta)
    env = dict(zip(schedule.known_inputs, known_values))
    for v, val in zip(schedule.observed, observed_values):
        env[v] = jnp.asarray(val, v.dtype)
    terms, flags = [], []
    for step in schedule.steps:
        log_det, step_flags = step.run(env, theta)
        if log_det is not None and not _is_zero(log_det):
            terms.append(log_det)
        step_flags = [f for f in step_flags if f is not None and f is not True]
        flags.extend(step_flags)
        if on_step is not None:
            on_step(step, step_flags, env)
    # supports narrower than the reals; finiteness is run_schedule's final guard
    xs = [env[v] for v in schedule.unknown_inputs]
    for v, x in zip(schedule.unknown_inputs, xs):
        sup = schedule.supports.get(v)
        if is_constrained(sup):
            flags.append(jnp.all(sup.check(x)))
            if on_step is not None:
                on_step(("support", v), flags[-1:], env)
    for name, spec in schedule.theta.items():  # θ outside its space is outside the domain
        if is_constrained(spec.support):
            flags.append(jnp.all(spec.support.check(theta[name])))
            if on_step is not None:
                on_step(("theta", name), flags[-1:], env)
    dtype = _float_dtype(schedule)
    log_det = sum((jnp.sum(jnp.asarray(t, dtype)) for t in terms), jnp.zeros((), dtype))
    ok = jnp.all(jnp.stack([jnp.all(f) for f in flags])) if flags else jnp.asarray(True)
    extra = [read(env, v) for v in schedule.extra_outputs]
    return xs, log_det, ok, extra


def _is_zero(x):
    """A log|det| term that is a constant zero (structural steps, additions)."""
    if isinstance(x, (int, float)):
        return x == 0
    if not is_concrete(x):
        return False
    try:
        return bool(np.all(np.asarray(x) == 0))
    except Exception:
        return False


def schedule_pgf(schedule, program, known_values, x_values, ignored=None):
    """θ from the full inputs: evaluate forward, then read each step's parameters.

    ``ignored`` gives values for program inputs that are neither known nor
    unknown (inputs no observation depends on; any value will do).
    """
    inputs = dict(ignored or {})
    inputs.update({v: val for v, val in zip(schedule.known_inputs, known_values)})
    inputs.update({v: val for v, val in zip(schedule.unknown_inputs, x_values)})
    _, env = program.evaluate(*[inputs[v] for v in program.invars], record=True)
    return theta_from_env(schedule, env)


def theta_from_env(schedule, env):
    """θ read off the values of every variable of a forward evaluation."""
    if isinstance(schedule, UnionSchedule):
        return schedule.theta_from_env(env)
    theta = {}
    for step in schedule.steps:
        theta.update(step.theta_from(env, schedule.theta))
    return {n: theta[n] for n in schedule.theta}


def _float_dtype(schedule):
    for v in list(schedule.unknown_inputs) + list(schedule.observed):
        if v.is_float:
            return v.dtype
    return jnp.zeros(()).dtype
