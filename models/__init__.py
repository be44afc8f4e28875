"""Example NumPyro models for ppinv (see ``models/README.md``).

Every module defines a NumPyro model (``model``; ``make_model(...)`` where the
model has sizes), its observed data (``DATA`` or ``data(...)``), a
``conditioned(...)`` helper returning ``ppinv.condition(model, data)``,
``LATENT_DIM`` / ``OBSERVED_DIM``, and — where one exists — a closed-form
``reference_posterior(...)`` / ``reference_moments(...)``. The module docstring
says what the model shows.

``ALL_MODELS`` maps a name to its module, for experiment scripts::

    from models import ALL_MODELS, INVERTIBLE_MODELS
    for name, mod in INVERTIBLE_MODELS.items():
        cm = mod.conditioned()
        ...

``sat`` is in ``ALL_MODELS`` but not in ``INVERTIBLE_MODELS``: ppinv cannot
condition it (discrete latents; see its docstring).
"""

from __future__ import annotations

import importlib

__all__ = ["ALL_MODELS", "INVERTIBLE_MODELS", "NAMES", "pgf_init"]

NAMES = (
    "product_lognormal",
    "linear_gaussian",
    "gamma_sum",
    "arithmetic_tree",
    "arm",
    "logistic_map",
    "sat",
    "lotka_volterra",
    "network_tomography",
    "manifold_toy",
    "sine",
    "kepler",
    "enzyme_assay",
    "isotope_mixing",
    "village_totals",
    "stick_breaking_abundance",
    "binding_equilibrium",
    "vote_shares",
    "drifter_currents",
)

#: name -> module, in the order of ``models/README.md``.
ALL_MODELS = {name: importlib.import_module(f"{__name__}.{name}") for name in NAMES}
#: The models ``ppinv.condition`` can invert (all but ``sat``).
INVERTIBLE_MODELS = {n: m for n, m in ALL_MODELS.items() if getattr(m, "CONDITIONABLE", True)}


def pgf_init(cm, latents, *args, **kwargs):
    """θ site values (for ``MCMC.run(..., init_params=...)``) reproducing given latent values.

    ``latents`` maps latent site names to values on the constraint set (e.g. the
    values that generated the data); returns ``{θ site name: value}`` computed
    with the inverse's parameter generating function.
    """
    import jax.numpy as jnp

    plan = cm.plan(*args, **kwargs)
    ctx = plan.ctx_of(args, kwargs)
    theta = plan.pgf(ctx, {n: jnp.asarray(v) for n, v in latents.items()})
    values = {plan.theta_sites[n]: theta[n] for n in theta}
    values.update({n: jnp.asarray(latents[n]) for n in plan.untouched})
    return values
