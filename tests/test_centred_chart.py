"""The null-space chart of a linear solve whose matrix moves with θ, centred and scaled by the prior.

``y = f · s`` with ``f`` freed and ``s`` solved: ``s = c + σ ⊙ (K̃⁺ r + Q θ)`` with ``c``/``σ``
the prior mean/spread of ``s`` (from the plan's prior draws) and ``Q`` orthonormal. For a Gaussian
prior, θ given ``f`` is then standard normal whatever ``f`` is: NUTS meets no shear between θ and
``f`` (an uncentred chart moves θ's conditional mean by |c| per unit change of ``f``). Exactness
(soundness, PGF, log|det| against the dense Jacobian, gradients against finite differences) is
checked for the chart with and without a centre and scale, and the posterior against quadrature.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppinv
from ppinv._block import KnownStructure, MatrixSolve, TypicalDraws
from ppinv.testing import check_conditioned, check_inverse

MU = np.array([-24.0, -18.0, -12.0])  # far from 0: an uncentred chart is sheared by |MU|
SD = np.array([1.0, 0.8, 1.3])
ALPHA = 2.0
Y = -17.5


def mixing():
    f = numpyro.sample("f", dist.Dirichlet(jnp.full(3, ALPHA)))
    s = numpyro.sample("s", dist.Normal(jnp.asarray(MU), jnp.asarray(SD)).to_event(1))
    numpyro.deterministic("y", f @ s)


def conditioned():
    return ppinv.condition(mixing, {"y": Y})


def test_default_theta_frees_the_fractions_and_charts_the_signatures():
    plan = conditioned().plan()
    assert list(plan.theta_sites)[0] == "f", plan.theta_sites
    assert "null space projected from a reference basis" in plan.schedule.describe()


def test_chart_coordinates_are_standard_normal_and_independent_of_f_under_the_prior():
    """θ = PGF of prior draws: mean 0, sd 1 and no correlation with f (within MC error of the
    64-draw centre and scale: ±0.13 sd in the mean, ±9 % in the spread)."""
    cm = conditioned()
    rng = np.random.RandomState(1)
    n = 4000
    f = rng.dirichlet(np.full(3, ALPHA), n)
    s = MU + SD * rng.normal(size=(n, 3))
    theta = cm.theta_of({"f": f, "s": s})
    chart = next(k for k in theta if k != "f")
    t = np.asarray(theta[chart]).reshape(n, -1)
    assert t.shape == (n, 2)
    assert np.all(np.abs(t.mean(0)) < 0.35), t.mean(0)
    assert np.all((t.std(0) > 0.75) & (t.std(0) < 1.3)), t.std(0)
    corr = np.corrcoef(np.concatenate([t, f[:, :2]], axis=1).T)[:2, 2:]
    assert np.all(np.abs(corr) < 0.15), corr


@pytest.mark.slow  # check_conditioned compiles the potential and its gradient at every point
def test_conditioned_mixing_is_sound_with_exact_gradients():
    report = check_conditioned(mixing, {"y": Y}, n_points=4)
    assert report.n_points >= 4 and report.n_grad_checked > 0, report


@pytest.mark.parametrize("centred", [False, True])
def test_matrix_solve_chart_is_exact_with_and_without_centre_and_scale(centred):
    """MatrixSolve's moving-K chart: u solves K u = rhs, the PGF inverts it, log|det| is the dense value."""
    rng = np.random.RandomState(0)
    m, n, q = 2, 4, 3
    k0 = rng.normal(size=(m, n))
    centre = rng.normal(size=(n, q)) * 5 if centred else None
    scale = rng.uniform(0.5, 2.0, size=(n, q)) if centred else None
    solver = MatrixSolve((), m, n, generic=k0, typical=k0, columns=q, centre=centre, scale=scale)
    k = jnp.asarray(k0 + 0.3 * rng.normal(size=(m, n)))
    rhs = jnp.asarray(rng.normal(size=(m, q)))
    free = jnp.asarray(rng.normal(size=(n - m, q)))
    u, log_det, ok = solver.solve(k, rhs, free)
    assert bool(ok)
    np.testing.assert_allclose(k @ u, rhs, atol=1e-12)
    np.testing.assert_allclose(solver.free_coords(k, u), free, atol=1e-12)

    def flat(z):
        r, t = z[: m * q].reshape(m, q), z[m * q:].reshape(n - m, q)
        return solver.solve(k, r, t)[0].ravel()

    z = jnp.concatenate([rhs.ravel(), free.ravel()])
    dense = np.linalg.slogdet(np.asarray(jax.jacfwd(flat)(z)))[1]
    np.testing.assert_allclose(log_det, dense, atol=1e-10)


@pytest.mark.slow  # check_inverse's dense Jacobians and finite differences of a 9-input program
def test_inverse_of_a_product_with_both_operands_unknown():
    """A plain inverse (no prior): the chart is centred at the example point; every check passes."""
    def f(w, s):
        return w @ (s + jnp.array([0.4, 3.4]))

    example = (jnp.array([0.3, 0.4, 0.3]), jnp.array([[-24.0, 4.0], [-18.0, 9.0], [-12.0, 6.0]]))
    report = check_inverse(f, *example, inv=ppinv.inverse(f, *example, free=[0]))
    assert report.n_in_domain == report.n_points


def test_reference_is_the_mean_and_spread_over_the_draws():
    jaxpr = jax.make_jaxpr(lambda a: 2.0 * a + 1.0)(jnp.zeros(3))
    from ppinv.ir import import_jaxpr

    program = import_jaxpr(jaxpr)
    a = program.invars[0]
    out = program.outvars[0]
    draws = np.random.RandomState(0).normal(size=(64, 3))
    structure = KnownStructure(program.eqns, typical=lambda: TypicalDraws({a: draws}))
    centre, scale = structure.reference(out)
    np.testing.assert_allclose(centre, 2 * draws.mean(0) + 1, rtol=1e-12)
    np.testing.assert_allclose(scale, 2 * draws.std(0), rtol=1e-12)
    np.testing.assert_allclose(structure.typical(a), draws[0])


def _simplex_rule(n):
    x, w = np.polynomial.legendre.leggauss(n)
    x, w = (x + 1) / 2, w / 2
    u, v = np.meshgrid(x, x, indexing="ij")
    wu, wv = np.meshgrid(w, w, indexing="ij")
    f1, f2 = u.ravel(), (v * (1 - u)).ravel()  # Duffy map of the square onto the triangle
    return np.stack([f1, f2, 1 - f1 - f2], -1), (wu * wv * (1 - u)).ravel()


def reference_mean_f():
    f, w = _simplex_rule(120)
    var = (f**2) @ SD**2
    log_p = (ALPHA - 1) * np.log(f).sum(-1) - 0.5 * ((Y - f @ MU) ** 2 / var + np.log(var))
    p = w * np.exp(log_p - log_p.max())
    p /= p.sum()
    mean = p @ f
    return mean, np.sqrt(p @ (f - mean) ** 2)


@pytest.mark.slow
def test_posterior_of_the_fractions_against_quadrature():
    from numpyro.diagnostics import effective_sample_size
    from numpyro.infer import MCMC

    from ppinv.infer import InverseNUTS

    mcmc = MCMC(InverseNUTS(conditioned()), num_warmup=400, num_samples=1000, num_chains=2,
                chain_method="sequential", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0), extra_fields=("diverging",))
    f = np.asarray(mcmc.get_samples(group_by_chain=True)["f"])
    mean, sd = reference_mean_f()
    ess = np.asarray(effective_sample_size(f))
    z = (f.reshape(-1, 3).mean(0) - mean) / (sd / np.sqrt(ess))
    assert np.all(np.abs(z) < 4), (z, ess)
    assert int(np.sum(mcmc.get_extra_fields()["diverging"])) <= 20
    s = mcmc.get_samples()["s"]
    np.testing.assert_allclose(np.sum(np.asarray(mcmc.get_samples()["f"]) * np.asarray(s), -1), Y, atol=1e-9)
