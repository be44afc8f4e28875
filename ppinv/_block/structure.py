"""What the build knows about values known only at run time: whether they move with θ, and
their values at generic and at typical inputs (where linear solves check rank and choose charts)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from .._compat import is_concrete


# --- what the build knows about run-time known values ------------------------------------------
class KnownStructure:
    """What the build knows about variables whose values are known only at run time.

    ``moves_with_theta(v)`` is False for constants, for the ``fixed`` inputs
    (model arguments and observations of a top-level inverse) and for what is
    computed from those only: such a value is the same at every θ.

    ``generic(v)`` is the value ``v`` takes when the program's inputs are drawn
    at random inside their supports: a matrix evaluated there has the
    structural zeros of the real one and generic values otherwise, so a rank
    deficiency there is one for almost every input. ``typical(v)`` is its value
    at a typical point: inputs at ``typical`` values where given (a prior draw
    of a model's latents, the example arguments of :func:`ppinv.inverse`; a dict
    by variable, or a function returning one, called only when needed), random
    elsewhere. Linear solves choose their chart there. Either is ``None`` when
    the evaluation fails or is not finite.
    """

    #: fewest draws whose spread is read as a scale (fewer: the chart is centred, not scaled)
    MIN_SCALE_DRAWS = 8

    def __init__(self, eqns=(), supports=None, fixed=(), typical=None, seed=0):
        self.eqns = list(eqns)  # program order
        self.supports = dict(supports or {})
        self._typical = typical
        self._fixed = set(fixed)
        for e in self.eqns:
            if all(v.is_const or v in self._fixed for v in e.ins):
                self._fixed.update(e.outs)
        self._rng = np.random.RandomState(seed)
        self._random_values = {}
        self._roots = {"generic": {}, "typical": {}}
        self._values = {"generic": {}, "typical": {}}
        self._references = {}

    def moves_with_theta(self, v) -> bool:
        return not (v.is_const or v in self._fixed)

    def generic(self, v):
        return self._value(v, "generic")

    def typical(self, v):
        return self._value(v, "typical")

    def reference(self, v):
        """``(centre, scale)`` of ``v`` over the typical draws (their mean and standard deviation,
        both shaped like ``v``), or ``None``. With a single typical point the centre is its value
        there and the scale is ``None``. Linear solves whose matrix moves with θ centre and scale
        their chart here: any such chart is exact, and this one makes θ's prior near-standard."""
        if v not in self._references:
            self._references[v] = self._reference(v)
        return self._references[v]

    def _reference(self, v):
        draws = self._draws()
        if draws is None or v.is_const or not v.is_float:
            value = self.typical(v)
            return None if value is None else (np.asarray(value, np.float64), None)
        stacked = self._evaluate_draws(v, draws)
        if stacked is None:
            return None
        centre = stacked.mean(axis=0)
        if stacked.shape[0] < self.MIN_SCALE_DRAWS:
            return centre, None
        scale = stacked.std(axis=0)
        # an entry the draws do not move (a constant in disguise) keeps unit scale
        scale = np.where(scale > 1e-8 * (1.0 + np.abs(centre)), scale, 1.0)
        return centre, scale

    def _draws(self):
        self._load_typical()
        return self._typical if isinstance(self._typical, TypicalDraws) else None

    def _evaluate_draws(self, target, draws):
        """``target`` at every draw: (N, *shape), or ``None`` where it cannot be had."""
        eqns, roots, outs = self._slice(target)
        n = draws.count
        root_values = []
        for u in roots:
            val = draws.get(u)
            if val is None or not is_concrete(val) or np.shape(val)[1:] != u.shape:
                root_values.append(np.broadcast_to(self._random(u), (n,) + u.shape))
            else:
                root_values.append(np.asarray(val, u.dtype))

        def run(vals):
            env = dict(zip(roots, vals))
            for e in eqns:
                env.update(zip(e.outs, e.bind(*[u.value if u.is_const else env[u] for u in e.ins])))
            return env[target]

        try:
            with jax.ensure_compile_time_eval():
                stacked = np.asarray(jax.jit(jax.vmap(run))(root_values), np.float64)
        except Exception:  # an input outside some domain, a primitive that cannot be batched here
            return None
        return stacked if np.all(np.isfinite(stacked)) else None

    def _slice(self, target):
        """The equations ``target`` is computed by, its roots (inputs not computed by them), and their outputs."""
        needed, eqns = {target}, []
        for e in reversed(self.eqns):
            if any(o in needed for o in e.outs):
                eqns.append(e)
                needed.update(u for u in e.ins if not u.is_const)
        eqns.reverse()
        defined = {o for e in eqns for o in e.outs}
        roots = [] if target in defined else [target]
        for e in eqns:
            roots += [u for u in e.ins if not u.is_const and u not in defined and u not in roots]
        return eqns, roots, [o for e in eqns for o in e.outs]

    def _value(self, v, mode):
        if v.is_const:
            return np.asarray(v.value) if is_concrete(v.value) else None
        if v not in self._values[mode]:
            self._evaluate(v, mode)
        return self._values[mode].get(v)

    def _evaluate(self, target, mode):
        eqns, roots, outs = self._slice(target)

        def run(root_values):
            env = dict(zip(roots, root_values))
            for e in eqns:
                env.update(zip(e.outs, e.bind(*[u.value if u.is_const else env[u] for u in e.ins])))
            return [env[o] for o in outs]

        values = self._values[mode]
        try:
            # the roots outside compile-time evaluation: a typical point (a model's prior draw) is
            # then one compiled program, not one per operation
            vals = [self._root(u, mode) for u in roots]
            with jax.ensure_compile_time_eval():
                computed = jax.jit(run)(vals)
        except Exception:  # an input outside some domain, a primitive that cannot run here
            values[target] = None
            return
        for v, val in list(zip(roots, vals)) + list(zip(outs, computed)):
            val = np.asarray(val)
            finite = not np.issubdtype(val.dtype, np.inexact) or bool(np.all(np.isfinite(val)))
            values.setdefault(v, val if finite else None)

    def _root(self, u, mode):
        """Input ``u`` in this mode (one value, shared by every evaluation)."""
        roots = self._roots[mode]
        if u not in roots:
            value = self._typical_value(u) if mode == "typical" else None
            roots[u] = value if value is not None else self._random(u)
        return roots[u]

    def _load_typical(self):
        if callable(self._typical):
            try:
                got = self._typical()
                self._typical = got if isinstance(got, TypicalDraws) else dict(got)
            except Exception:  # no typical point can be had now: random values instead
                self._typical = {}

    def _typical_value(self, u):
        self._load_typical()
        typical = self._typical or {}
        val = typical.point(u) if isinstance(typical, TypicalDraws) else typical.get(u)
        if val is None or not is_concrete(val) or np.shape(val) != u.shape:
            return None
        val = np.asarray(val, u.dtype)
        return val if not u.is_float or np.all(np.isfinite(val)) else None

    def _random(self, u):
        """A random value of ``u`` inside its support (drawn once: the same in both modes)."""
        if u not in self._random_values:
            if not u.is_float:
                value = np.zeros(u.shape, u.dtype)
            else:
                value = self._rng.normal(size=u.shape)
                sup = self.supports.get(u)
                if sup is not None and sup is not constraints.real:
                    try:
                        value = np.asarray(biject_to(sup)(jnp.asarray(value)))
                    except Exception:  # a support without a bijection: stay with the normal draw
                        pass
            self._random_values[u] = np.asarray(value, u.dtype)
        return self._random_values[u]


class TypicalDraws(dict):
    """Several draws of a program's inputs (``var -> (N, *shape)``, e.g. prior draws of a model's
    latents); the first draw is the typical point. :meth:`KnownStructure.reference` reads their
    mean and spread."""

    @property
    def count(self) -> int:
        return min((int(np.shape(v)[0]) for v in self.values()), default=0)

    def point(self, v):
        val = self.get(v)
        return None if val is None or np.ndim(val) == 0 else np.asarray(val)[0]
