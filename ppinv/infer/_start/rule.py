"""How starting points are made: an init strategy on the original model's latents and θ values to
fix (:class:`StartRule`)."""

from __future__ import annotations

from functools import partial

import jax.numpy as jnp
from numpyro.infer.initialization import init_to_median, init_to_value


class StartRule:
    """How starting points are made: an init strategy on the latents and θ values to fix.

    ``strategy`` is a NumPyro init strategy (``init_to_sample``, ``init_to_median``,
    ``init_to_uniform``, ``init_to_value``, ...) applied to the latent sites of the
    original model; ``None`` (the default) draws them from the prior, which is what
    ``init_to_sample`` means. Values that ``init_to_value`` gives for θ sites (by
    their names in the conditioned model, ``plan.theta_sites``) replace the θ the
    PGF computes.
    """

    def __init__(self, strategy=None):
        self.description = "prior draws mapped through the PGF"
        self.strategy = None
        self.values = None  # init_to_value's values, split by bind()
        if strategy is None:
            return
        strategy = strategy if isinstance(strategy, partial) else strategy()
        func, kw = strategy.func, dict(strategy.keywords or {})
        if func is init_to_median and kw.get("num_samples") == 1:
            return  # init_to_sample: a prior draw, the default
        self.description = f"{func.__name__}({', '.join(f'{k}=...' for k in kw)}) mapped through the PGF"
        self.strategy = strategy
        if func is init_to_value:
            self.values = dict(kw.get("values", {}))

    def bind(self, plan):
        """Split ``init_to_value``'s values into θ values and latent values (once per plan)."""
        values = self.values
        if values is None:
            return self.strategy, {}
        theta_of_site = {site: n for n, site in plan.theta_sites.items()}
        theta = {theta_of_site[k]: jnp.asarray(v) for k, v in values.items() if k in theta_of_site}
        latent_values = {k: v for k, v in values.items() if k not in theta_of_site}
        return init_to_value(values=latent_values), theta
