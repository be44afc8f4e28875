"""Household incomes known only through exact village totals (group sums with ``.at[].add``).

Model::

    rate ~ Gamma(a₀, b₀)                                  (shared income scale, 1 / k$)
    income[i] ~ Gamma(shape · size[i], rate)   i = 1..12  (household incomes, plate)
    village_total = zeros(4).at[village].add(income)      (observed exactly: a census of totals)

Twelve households in four villages (``village[i]``, unsorted, groups of 2, 3, 3
and 4); a household's shape grows with its number of members ``size[i]``. The
census publishes each village's total income exactly, not the households'.

What it shows: a placement with known indices. ppinv undoes the scatter-add by
splitting each village total among its members: positive summands give one
simplex-valued θ per village (grouped by village size), ``income = total · θ``,
and the hyperparameter ``rate`` — upstream of the incomes, untouched by the
observation — stays an ordinary sample site.

Closed form (Gamma–Dirichlet): within village ``g`` with total ``T_g`` and
shapes ``α_i``, ``income / T_g ~ Dirichlet(α_g)`` independently of ``rate``, so
``E[income_i] = T_g α_i / A_g`` and ``Var = T_g² α_i (A_g − α_i) / (A_g² (A_g + 1))``
with ``A_g = Σ_{i∈g} α_i``; and, as each ``T_g ~ Gamma(A_g, rate)``,
``rate | totals ~ Gamma(a₀ + Σ_i α_i, b₀ + Σ_g T_g)``.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

#: which village each household lives in, and its number of members
VILLAGE = np.array([0, 1, 2, 1, 3, 0, 2, 3, 1, 3, 2, 3])
SIZE = np.array([2, 4, 3, 1, 5, 3, 2, 4, 2, 6, 1, 3])
N_VILLAGES = 4
SHAPE_PER_MEMBER = 1.5
RATE_PRIOR = (2.0, 10.0)  # Gamma(concentration, rate)
#: the census: each village's total income (k$)
TOTALS = np.array([21.0, 30.0, 17.0, 55.0])


def model():
    rate = numpyro.sample("rate", dist.Gamma(*RATE_PRIOR))
    with numpyro.plate("households", len(VILLAGE)):
        income = numpyro.sample("income", dist.Gamma(SHAPE_PER_MEMBER * jnp.asarray(SIZE), rate))
    numpyro.deterministic("village_total", jnp.zeros(N_VILLAGES).at[jnp.asarray(VILLAGE)].add(income))


DATA = {"village_total": TOTALS}
LATENT_DIM = len(VILLAGE)  # the incomes; rate (1 more) is untouched by the inverse
OBSERVED_DIM = N_VILLAGES


def conditioned():
    """``ppinv.condition(model, DATA)``."""
    return ppinv.condition(model, DATA)


def reference_moments(totals=TOTALS):
    """Closed-form posterior means and variances of ``income`` (12,) and ``rate``."""
    alpha = SHAPE_PER_MEMBER * SIZE
    group_alpha = np.bincount(VILLAGE, alpha, N_VILLAGES)[VILLAGE]
    total = np.asarray(totals, float)[VILLAGE]
    share = alpha / group_alpha
    income = {"mean": total * share, "var": total**2 * share * (1 - share) / (group_alpha + 1)}
    a = RATE_PRIOR[0] + alpha.sum()
    b = RATE_PRIOR[1] + np.sum(totals)
    return {"income": income, "rate": {"mean": a / b, "var": a / b**2}}


def reference_posterior(rng_key=0, num_samples: int = 1000, totals=TOTALS):
    """Exact posterior draws ``{"income", "rate"}``: a Dirichlet split of each total, a Gamma rate."""
    rng = np.random.default_rng(rng_key)
    alpha = SHAPE_PER_MEMBER * SIZE
    income = np.zeros((num_samples, len(VILLAGE)))
    for g in range(N_VILLAGES):
        members = np.flatnonzero(VILLAGE == g)
        income[:, members] = totals[g] * rng.dirichlet(alpha[members], size=num_samples)
    rate = rng.gamma(RATE_PRIOR[0] + alpha.sum(), 1.0 / (RATE_PRIOR[1] + np.sum(totals)), size=num_samples)
    return {"income": income, "rate": rate}
