"""Running a conditioned model's plan: θ sites, the inverse, the replayed model and the exact
conditional density (θ → latents and density), and the PGF (latents → θ)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro
from numpyro import handlers
from numpyro.distributions import constraints

from .density import ConditionalDensity, _inside_or_minus_inf, _ReplayLatents
from .outside import _substituted_from_outside


class PlanRunning:
    """The running half of a :class:`~ppinv.conditioning.plan.Plan`."""

    def observed_values(self, ctx, data=None, params=None):
        """The exact observations' values, in ``self.exact`` order."""
        return self._observed(self._full_ctx(ctx, data, params), data)

    def _observed(self, full_ctx, data=None):
        data = self.cm.data if data is None else data
        delta_vals = jax.extend.core.jaxpr_as_fun(self.delta_obs_jaxpr)(*full_ctx) if self._has_model_deltas else []
        it = iter(delta_vals)
        return [jnp.asarray(data[n]) if self.sites[n].from_data else next(it) for n in self.exact]

    @property
    def _has_model_deltas(self):
        return any(self.sites[n].delta and not self.sites[n].from_data for n in self.exact)

    def invert(self, ctx, theta, data=None, params=None):
        """``(x by site, log|det|, ok)`` for θ given as a dict by θ leaf name.

        ``ctx`` holds the array leaves of the model arguments (``ctx_of``); ``params``
        defaults to the values the enclosing handlers give, ``data`` to ``cm.data``.
        """
        return self._invert(self._full_ctx(ctx, data, params), theta, data)

    def _invert(self, full_ctx, theta, data=None):
        y = self._observed(full_ctx, data)
        xs, log_det, ok = self.inverse.run_flat(full_ctx, y, theta)  # a NaN in traced data: outside the domain
        return {n: self.sites[n].from_input(x) for n, x in zip(self.upstream, xs)}, log_det, ok

    def pgf(self, ctx, latent_values, data=None, params=None):
        """θ (by leaf name) reproducing the given latent values."""
        return self._pgf(self._full_ctx(ctx, data, params), latent_values)

    def _pgf(self, full_ctx, latent_values):
        vals = [self.sites[n].to_input(jnp.asarray(latent_values[n])) for n in self.upstream]
        return self.inverse.pgf_flat(full_ctx, vals)

    def run(self, args, kwargs, data=None):
        """The conditioned model's body: θ sites, the inverse, the replayed model."""
        data = self.cm.data if data is None else data
        params = self.read_params(args, kwargs)
        full = self._full_ctx(self.ctx_of(args, kwargs), data, params)
        refs = {n: s.reference() for n, s in self.schedule.theta.items()}
        densities = {n: ConditionalDensity(refs[n]) for n in refs}
        given = self._theta_from_given_latents(full)
        theta = {}
        with handlers.substitute(data={self.theta_sites[n]: v for n, v in given.items()}):
            for n, site in self.theta_sites.items():
                theta[n] = numpyro.sample(site, densities[n], infer={"ppinv_theta": n})
        x, log_det, ok = self._invert(full, theta, data)
        replay = _ReplayLatents(x, set(self.exact), self.support_unsure)
        with handlers.substitute(data=params), handlers.condition(data={n: data[n] for n in self.data_names}), replay:
            result = self.cm.model(*args, **kwargs)
        total = replay.log_prob + log_det
        log_density = _inside_or_minus_inf(total, jnp.logical_and(ok, replay.valid))
        self._carry_density(densities, log_density, full, data)
        for n in self.solved:
            numpyro.deterministic(n, replay.values[n])
        return result

    def _carry_density(self, densities, log_density, full_ctx, data):
        """Put the exact conditional on the first θ site (zero on the others).

        Without θ the exact observations fix the latents; their joint density given the
        other latents is then a likelihood, carried by the first exact site, observed.
        """
        if densities:
            first, *rest = densities.values()
            first.share = log_density
            for d in rest:
                d.share = jnp.zeros((), log_density.dtype)
            return
        name = self.exact[0]
        shape = self.sites[name].shape
        value = jnp.broadcast_to(self._observed(full_ctx, data)[0], shape)
        real = constraints.independent(constraints.real, len(shape)) if shape else constraints.real
        numpyro.sample(name, ConditionalDensity(None, log_density, event_shape=shape, support=real), obs=value)

    def _theta_from_given_latents(self, full_ctx):
        """θ from the PGF when the enclosing handlers substitute every solved latent, else ``{}``.

        NumPyro's substitute ignores ``deterministic`` sites; here the solved latents are
        the model's own sites, so values given for all of them (``Predictive`` with the
        samples of ppinv's kernels, which hold the model's sites and no θ) fix θ. Values
        the handlers give for θ sites themselves still take precedence.
        """
        if not self.extra_theta_sites:
            return {}
        values = {}
        for n in self.solved + [u for u in self.upstream if u not in self.solved]:
            v = _substituted_from_outside(n)
            if v is None:
                return {}
            values[n] = v
        return self._pgf(full_ctx, values)
