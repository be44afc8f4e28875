"""Kernels for models conditioned with :func:`ppinv.condition`.

* :class:`InverseNUTS` / :class:`InverseHMC` — NUTS/HMC over θ (taking every
  argument of NumPyro's NUTS/HMC), started from the best of many PGF starts,
  with exact Gibbs updates of discrete θ and optional independence jumps;
* :class:`InverseMH` — Metropolis–Hastings with proposals from the inverse.

All work with ``numpyro.infer.MCMC`` for every ``chain_method``; each kernel
compiles its start-up and post-processing once (per argument shapes and
warm-up length), for all chains and repeated runs.
"""

from ._start import pgf_initial_values
from .hmc import InverseHMC, InverseHMCState, InverseNUTS
from .mh import InverseMH, InverseMHState

__all__ = ["InverseNUTS", "InverseHMC", "InverseMH", "InverseHMCState", "InverseMHState", "pgf_initial_values"]
