"""Kernels for models conditioned with :func:`ppinv.condition`.

* :class:`InverseNUTS` / :class:`InverseHMC` — NUTS/HMC over θ, started from
  the PGF, with exact Gibbs updates of discrete θ and optional independence
  jumps;
* :class:`InverseMH` — Metropolis–Hastings with proposals from the inverse.

All work with ``numpyro.infer.MCMC`` for every ``chain_method``.
"""

from ._target import pgf_initial_values
from .hmc import InverseHMC, InverseHMCState, InverseNUTS
from .mh import InverseMH, InverseMHState

__all__ = ["InverseNUTS", "InverseHMC", "InverseMH", "InverseHMCState", "InverseMHState", "pgf_initial_values"]
