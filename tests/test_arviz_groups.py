"""What NumPyro's and ArviZ's summaries show of a ppinv run.

* ``MCMC.print_summary`` lists every latent of the model, solved or θ, and
  nothing else (not θ under other names, not the exact observations), also
  when every latent is solved and θ is empty of continuous coordinates.
* ``ppinv.diagnostics.to_inference_data`` carries the exact observations in
  ``observed_data`` and ``constant_data`` (no ``log_likelihood`` for them),
  the per-draw constraint violation and discrete-θ moves in ``sample_stats``,
  and θ in its own group, equal to the PGF of the draws.
"""

import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppinv
from ppinv.diagnostics import constraint_violations, to_inference_data
from ppinv.infer import InverseMH, InverseNUTS

from .helpers import run_mcmc


def product():
    """a·b = 2 exactly: θ is one coordinate (named after the latent it frees)."""
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("prod", a * b)


def signed_root(z):
    """x²·b = 1 exactly, z ~ N(x, 1) noisy: θ is b and the sign of x (discrete)."""
    x = numpyro.sample("x", dist.Normal(0.5, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 0.5))
    numpyro.deterministic("y", x * x * b)
    with numpyro.plate("n", z.shape[0]):
        numpyro.sample("z", dist.Normal(x, 1.0), obs=z)


def all_solved():
    """Every latent is fixed by the observations: nothing is left to sample but the model's sites."""
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    c = numpyro.sample("c", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.stack([2.0 * a + 1.0, a - c]))


Z = jnp.array([-0.3, 0.2, -0.1])  # both signs of x are probable


def _summary_rows(capsys, mcmc):
    mcmc.print_summary()
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.splitlines() if line.strip() and line.split()[0] not in ("mean", "Number")]
    return rows


@pytest.mark.parametrize("kernel", [InverseNUTS, InverseMH])
def test_print_summary_lists_every_latent(kernel, capsys):
    mcmc = run_mcmc(kernel(ppinv.condition(product, {"prod": 2.0})), num_warmup=100, num_samples=100,
                    num_chains=2, chain_method="vectorized")
    assert sorted(_summary_rows(capsys, mcmc)) == ["a", "b"]
    assert mcmc.last_state.z.keys() == {"a"}  # the sampler's own coordinates stay where NumPyro keeps them


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # n_eff of a constant
def test_print_summary_when_every_latent_is_solved(capsys):
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(all_solved, {"y": jnp.array([2.0, -1.0])})), num_warmup=10,
                    num_samples=10)
    assert sorted(_summary_rows(capsys, mcmc)) == ["a", "c"]
    s = mcmc.get_samples()
    np.testing.assert_allclose(s["a"], 0.5, rtol=1e-14)
    np.testing.assert_allclose(s["c"], 1.5, rtol=1e-14)


@pytest.fixture(scope="module")
def signed_run():
    cm = ppinv.condition(signed_root, {"y": 1.0})
    return cm, run_mcmc(InverseNUTS(cm), key=1, num_warmup=100, num_samples=100, num_chains=2,
                        chain_method="vectorized", args=(Z,))


def test_inference_data_groups(signed_run):
    cm, mcmc = signed_run
    idata = to_inference_data(mcmc)
    # the posterior is the model's latents; the noisy site alone is the likelihood
    assert set(idata.posterior.data_vars) == {"x", "b"}
    assert list(idata.log_likelihood.data_vars) == ["z"]
    # the exact observation is data (observed and constant), never a likelihood term
    assert float(idata.observed_data["y"]) == 1.0
    np.testing.assert_array_equal(idata.observed_data["z"].values, np.asarray(Z))
    assert float(idata.constant_data["y"]) == 1.0
    assert idata.constant_data.attrs["ppinv_exact_observations"] == ["y"]
    # per-draw violation: recomputed from the original model, round-off only
    violation = idata.sample_stats["constraint_violation"].values
    assert violation.shape == (2, 100) and np.all(violation < 1e-12)
    s = mcmc.get_samples(group_by_chain=True)
    np.testing.assert_allclose(violation, np.abs(s["x"] ** 2 * s["b"] - 1.0), atol=1e-15)
    # θ: the PGF of the draws, shaped (chain, draw, ...); its continuous part is b itself
    theta = idata.theta
    expected = cm.theta_of(s, Z, batch_ndims=2)
    assert set(theta.data_vars) == set(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(theta[name].values, np.asarray(value))
    # discrete θ moves: a draw moved iff its discrete θ (the sign of x) differs from the draw before
    moved = idata.sample_stats["discrete_theta_moved"].values
    sign = np.sign(np.asarray(s["x"]))
    np.testing.assert_array_equal(moved[:, 1:], sign[:, 1:] != sign[:, :-1])
    assert not moved[:, 0].any()
    assert moved.any(), "both signs of x are probable; the chain should switch"


def test_arviz_tools_read_it(signed_run):
    _, mcmc = signed_run
    idata = to_inference_data(mcmc)
    summary = az.summary(idata)
    assert set(summary.index) == {"x", "b"}
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo)
    # the extra groups change nothing ArviZ computes from the plain conversion
    plain = to_inference_data(mcmc, exact_groups=False)
    assert "theta" not in plain.groups()
    np.testing.assert_allclose(az.loo(plain).elpd_loo, loo.elpd_loo)


def test_constraint_violations_per_draw_flags_a_bad_draw():
    cm = ppinv.condition(product, {"prod": 2.0})
    draws = {"a": jnp.array([[1.0, 4.0], [0.5, 2.0]]), "b": jnp.array([[2.0, 0.5], [4.0, 1.5]])}
    v = constraint_violations(cm, draws, batch_ndims=2)
    np.testing.assert_allclose(v, [[0.0, 0.0], [0.0, 1.0]], atol=1e-15)
