"""The state of :class:`~ppinv.infer.InverseHMC` and :class:`~ppinv.infer.InverseNUTS`: NumPyro's
HMC state over the continuous sites, and the discrete θ beside it (:class:`InverseHMCState`)."""

from __future__ import annotations

from typing import Any, NamedTuple

from ._base import Coordinates, SiteNames


class InverseHMCState(NamedTuple):
    """State of :class:`InverseHMC` / :class:`InverseNUTS`.

    - **z** — every sampled site: unconstrained continuous values and discrete θ.
    - **hmc_state** — NumPyro's ``HMCState`` over the continuous sites.
    - **discrete** — current discrete θ values.
    - **discrete_accept** — running mean acceptance of discrete moves.
    - **jump_accept** — running mean acceptance of independence jumps (if enabled).
    - **rng_key** — random key for the next step.
    - **model_sites** — the model's latent sample sites (static).
    """

    z: dict
    hmc_state: Any
    discrete: dict
    discrete_accept: Any
    jump_accept: Any
    rng_key: Any
    model_sites: Any = SiteNames(())

    @property
    def diverging(self):
        return self.hmc_state.diverging

    @property
    def num_steps(self):
        return self.hmc_state.num_steps

    @property
    def potential_energy(self):
        return self.hmc_state.potential_energy

    @property
    def accept_prob(self):
        return self.hmc_state.accept_prob

    @property
    def adapt_state(self):
        return self.hmc_state.adapt_state

    @property
    def coordinates(self):
        """``z`` as the sample field MCMC collects."""
        return Coordinates(self.z, self.model_sites.names)
