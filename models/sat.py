"""A small CNF formula over Bernoulli latents, observed to be satisfied — NOT invertible by ppinv.

Model::

    v_i ~ Bernoulli(0.5),  i = 1..5      (one vector site "v")
    sat = ∧_clauses ∨_literals ℓ          (as 0/1, a deterministic site)
    sat observed = 1

Formula (DIMACS-style literals, ``−i`` negates variable ``i``)::

    (v1 ∨ ¬v2 ∨ v3) ∧ (¬v1 ∨ v4) ∧ (v2 ∨ ¬v5) ∧ (¬v3 ∨ ¬v4 ∨ v5) ∧ (v1 ∨ v5)

What it shows: the boundary of what parametric inversion does.
``ppinv.condition(model, DATA)`` raises ``ppinv.ConditionError`` because
discrete latent sites lie upstream of the exact observation. This is a
limitation in kind, not a missing rule: the preimage of ``True`` under a
Boolean formula is a finite set of assignments (here :func:`satisfying`
enumerates them). A parametric inverse ``g(y, θ)`` with a density is the wrong
object for it — there is no continuous θ and no Jacobian, and the discrete θ
that would index the solutions is the solution set itself, which for CNF
formulas in general takes solving SAT (NP-hard) to enumerate. The posterior is
the prior restricted to the satisfying set (computed exactly by enumeration
in :func:`reference_posterior` for this small formula); a sampler would need
enumeration or a discrete MCMC over assignments with the constraint as an
indicator, not an inverse.

Kept as a documented expected failure (``tests/test_models.py`` marks its
conditioning test ``xfail(strict=True, raises=ppinv.ConditionError)``).
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import ppinv

N_VARS = 5
#: Clauses as tuples of DIMACS literals (1-based; negative = negated).
CLAUSES = ((1, -2, 3), (-1, 4), (2, -5), (-3, -4, 5), (1, 5))
DATA = {"sat": 1.0}
LATENT_DIM = N_VARS
OBSERVED_DIM = 1
#: ppinv cannot condition this model (see the module docstring).
CONDITIONABLE = False


def formula(v, clauses=CLAUSES):
    """The CNF formula on a 0/1 vector ``v``, as a boolean."""
    vb = jnp.asarray(v) > 0.5
    sat = jnp.asarray(True)
    for clause in clauses:
        lits = [vb[abs(lit) - 1] if lit > 0 else ~vb[abs(lit) - 1] for lit in clause]
        clause_ok = lits[0]
        for lit in lits[1:]:
            clause_ok = clause_ok | lit
        sat = sat & clause_ok
    return sat


def model():
    v = numpyro.sample("v", dist.Bernoulli(0.5).expand([N_VARS]).to_event(1))
    numpyro.deterministic("sat", formula(v).astype(jnp.result_type(float)))


def conditioned():
    """``ppinv.condition(model, DATA)`` — raises ``ppinv.ConditionError`` when planned or run."""
    cm = ppinv.condition(model, DATA)
    cm.plan()  # the error is raised here (tracing and scheduling happen on first use)
    return cm


def satisfying(clauses=CLAUSES, n_vars: int = N_VARS) -> np.ndarray:
    """Every satisfying assignment (rows of 0/1), by enumeration of all 2ⁿ."""
    rows = [bits for bits in itertools.product((0, 1), repeat=n_vars) if bool(formula(np.array(bits), clauses))]
    return np.array(rows, dtype=np.int64)


def reference_posterior():
    """The exact posterior: uniform over :func:`satisfying` (the prior is uniform)."""
    sols = satisfying()
    return {"v": sols, "weights": np.full(len(sols), 1.0 / len(sols))}
