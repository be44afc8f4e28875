"""Statistical assertions with Monte-Carlo-error-aware tolerances."""

import jax
import numpy as np
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import MCMC

Z_MAX = 4.5  # |z| above this fails: a false alarm about once in 150,000 checks


def ess(x, chains=None):
    """Effective sample size of draws ``x`` (shape (n,) + event or (chains, n) + event)."""
    x = np.asarray(x)
    if chains is None:
        x = x[None]
    return effective_sample_size(x)


def assert_mean(samples, expected, sd=None, chains=None, z_max=Z_MAX, what="mean"):
    """``mean(samples) == expected`` within ``z_max`` Monte Carlo standard errors.

    ``sd`` is the posterior standard deviation (closed form when known, else
    estimated); the MCSE uses the effective sample size, so autocorrelated
    chains get the wider tolerance they deserve.
    """
    s = np.asarray(samples)
    flat = s.reshape((-1,) + s.shape[(2 if chains else 1):])
    n_eff = np.maximum(ess(s, chains), 10.0)
    sd = np.std(flat, axis=0) if sd is None else np.asarray(sd)
    mcse = sd / np.sqrt(n_eff)
    z = (np.mean(flat, axis=0) - np.asarray(expected)) / np.maximum(mcse, 1e-12)
    assert np.all(np.abs(z) < z_max), (
        f"{what}: got {np.mean(flat, axis=0)}, expected {expected} (z={z}, ess={n_eff})"
    )


def assert_var(samples, expected_var, chains=None, z_max=Z_MAX):
    """Variance check through the mean of squared deviations (MCSE of the second moment)."""
    s = np.asarray(samples)
    flat = s.reshape((-1,) + s.shape[(2 if chains else 1):])
    mu = np.mean(flat, axis=0)
    dev2 = (s - mu) ** 2
    sd2 = np.std(dev2.reshape(flat.shape), axis=0)
    assert_mean(dev2, expected_var, sd=sd2, chains=chains, z_max=z_max, what="variance")


def run_mcmc(kernel, key=0, num_warmup=500, num_samples=2000, num_chains=1, chain_method="sequential", args=(),
             **run_kwargs):
    mcmc = MCMC(
        kernel,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    mcmc.run(jax.random.PRNGKey(key), *args, **run_kwargs)
    return mcmc
