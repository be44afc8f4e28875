"""The reference distribution of periods (θ on ℤ) samples the law its log_prob states.

Independence jumps (InverseMH, ``InverseNUTS(jump_every=k)``) propose θ from these
references and accept with a ratio that reads ``log_prob``: a sampler that drew from
another law would bias the chain (it once drew 0 with probability 1/2 instead of 1/3).
"""

import jax
import numpy as np
from scipy import stats

from ppinv.theta import IntegerReference


def test_integer_reference_draws_match_its_log_prob():
    ref = IntegerReference(0.5)
    draws = np.asarray(ref.sample(jax.random.PRNGKey(0), (20000,)))
    ks = np.arange(-4, 5)
    p = np.exp(np.asarray(ref.log_prob(ks)))
    assert abs(np.exp(np.asarray(ref.log_prob(np.arange(-200, 201)))).sum() - 1.0) < 1e-12
    observed = np.array([np.sum(draws == k) for k in ks] + [np.sum(np.abs(draws) > 4)])
    expected = len(draws) * np.append(p, 1.0 - p.sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-4, (observed, expected)
