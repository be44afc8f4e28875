"""Starting points of ppinv's kernels: the best of many PGF starts, spread over the branches.

A start is made in three moves: an initialisation strategy gives values of the
*original* model's latents (by default a draw from its prior), the PGF turns
them into θ (``θ = φ(x₀)``), and the inverse maps θ back onto the constraint
set (``x = g(y_obs, θ)``) — a valid point whenever ``(y_obs, θ)`` is in the
inverse's domain. Of ``num_tries`` such points, a chain starts at the one of
highest log density; where θ has discrete parts (signs, roots, periods), the
chains are dealt out over the branches found among the tries, best branch
first, so that several chains start on different branches and none starts on
a branch of negligible mass.

Everything here is a pure function of a key and the model arguments, so one
compiled program serves all chains (``vmap`` over keys and chain indices).

One job per module: ``rule.py`` (:class:`StartRule`), ``prior.py`` (the latent values a start is
made from, prior draws batched over sites), ``tries.py`` (the tries and which one a chain starts
from), ``failure.py`` (why no try was valid), ``initial.py`` (:func:`pgf_initial_values`).
"""

from __future__ import annotations

from .failure import raise_if_no_valid_start, raise_no_valid_start  # noqa: F401
from .initial import pgf_initial_values
from .prior import _latent_start, _prior_plan  # noqa: F401  (tests of batched prior draws)
from .rule import StartRule
from .tries import BRANCH_LOG_DENSITY_GAP, discrete_theta_sites, pick_start, start_point  # noqa: F401

__all__ = ["pgf_initial_values", "StartRule", "start_point", "pick_start", "raise_if_no_valid_start",
           "BRANCH_LOG_DENSITY_GAP"]
