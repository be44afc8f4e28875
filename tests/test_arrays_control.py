"""Arrays, linear maps and control flow in the overlay (soundness, PGF, log|det| vs jacfwd)."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from numpyro.distributions import constraints

import ppinv
from ppinv.infer import InverseNUTS
from ppinv.testing import check_inverse
from tests.helpers import assert_mean, assert_var, run_mcmc

TOL = dict(rtol=1e-9, log_det_atol=1e-8)
RNG = np.random.RandomState(0)
A25 = jnp.asarray(RNG.normal(size=(2, 5)))
A35 = jnp.asarray(RNG.normal(size=(3, 5)))
B235 = jnp.asarray(RNG.normal(size=(2, 3, 5)))


def check(f, *args, n=6, support=None, **kw):
    tol = {**TOL, **kw}
    report = check_inverse(f, *args, support=support, n_points=n, **tol)
    assert report.n_in_domain == n, report.failures
    return report


# --- partly known arrays and joint linear solves -----------------------------------------------
@pytest.mark.parametrize(
    "f,args",
    [
        (lambda a: A25 @ jnp.concatenate([a, jnp.array([1.0, 2.0])]), (jnp.ones(3),)),  # latent ++ data
        (lambda a, b: jnp.sum(jnp.stack([a, b, 1.0])), (1.0, 1.0)),
        (lambda x: jnp.array([x[0] + x[1], x[1] - x[2], 2 * x[0]]), (jnp.ones(3),)),  # slices cover x
        (lambda x: x[jnp.array([2, 0, 1])] * jnp.array([1.0, 2.0, 3.0]), (jnp.ones(3),)),  # static gather
        (lambda x: lax.dynamic_slice(x, (1,), (2,)) + lax.dynamic_slice(x, (0,), (1,))[0], (jnp.ones(3),)),
        (lambda x: A35 @ jnp.pad(x, (1, 1), constant_values=0.5), (jnp.ones(3),)),
        (lambda a, b: (a + b, a - b), (1.0, 1.0)),
        (lambda x: jnp.cumsum(x)[::-1], (jnp.ones(4),)),
        (lambda x: jnp.transpose(x.reshape(2, 3)).ravel() + jnp.arange(6.0), (jnp.ones(6),)),
        # a freed element joins the block as a relation defined *after* the observed one
        (lambda x: x[0] + x[1] * x[2], (jnp.ones(3),)),
        (lambda x: (x[3] - x[0] * x[1], x[2] + x[1] * x[0]), (jnp.ones(4),)),
        (lambda x: x @ x, (jnp.ones(3),)),  # one dot_general, read as sum(x * x)
        (lambda x, w: (jnp.dot(x, x), w @ x), (jnp.ones(3), jnp.ones(3))),
    ],
    ids=["concat-data", "stack-const", "slices", "gather", "dynamic-slice", "pad", "sum-diff", "cumsum-rev", "reshape-T",
         "bilinear-vector", "two-bilinear-vector", "x-dot-x", "x-dot-x-and-w-dot-x"],
)
def test_partly_known_and_joint_linear(f, args):
    check(f, *args)


def test_dot_general_batched_and_transposed():
    check(lambda x: jnp.einsum("bij,bj->bi", B235, x), jnp.ones((2, 5)))
    check(lambda x: x @ A25.T, jnp.ones(5))  # unknown on the left
    check(lambda x: A25[:, :2] @ x, jnp.ones(2))  # square


# --- reductions ------------------------------------------------------------------------------------
def test_reduce_sum_plain_and_simplex():
    inv = ppinv.inverse(lambda x: jnp.sum(x, axis=1), jnp.ones((2, 4)))
    assert [s.kind for s in inv.theta_spec.values()] == ["value"]
    check(lambda x: jnp.sum(x, axis=1), jnp.ones((2, 4)))
    pos = ppinv.inverse(lambda x: jnp.sum(x, axis=0), jnp.ones((4, 2)), support=constraints.positive)
    (spec,) = pos.theta_spec.values()
    assert spec.kind == "simplex" and spec.shape == (2, 4)
    check(lambda x: jnp.sum(x, axis=0), jnp.ones((4, 2)), support=constraints.positive)


def test_reduce_prod_and_extremes():
    check(lambda x: jnp.prod(x), jnp.ones(3), support=constraints.positive)
    check(lambda x: jnp.max(x, axis=-1), jnp.ones((2, 3)))
    check(lambda x: jnp.min(x), jnp.ones(4))


# --- piecewise functions and cond ------------------------------------------------------------
@pytest.mark.parametrize(
    "f",
    [
        lambda x: jnp.where(x > 0, x, 0.1 * x),
        jax.nn.elu,
        lambda x: jax.nn.leaky_relu(x, 0.2) * 3.0,
        lambda x: jnp.where(x > 1.0, jnp.exp(x), 2 * x + jnp.e - 2),
    ],
    ids=["leaky", "elu", "leaky_relu", "exp-linear"],
)
def test_piecewise_where(f):
    check(f, jnp.ones(3))


def test_cond_index_from_unknowns_and_known():
    check(lambda x: lax.cond(x > 0, lambda v: 2 * v, lambda v: jnp.exp(v) - 1, x), 1.0, n=10)
    check(
        lambda x: lax.switch(jnp.clip(jnp.floor(x + 1).astype(jnp.int32), 0, 2), [lambda v: -v, lambda v: v**3, lambda v: v + 5], x),
        1.0,
        n=10,
    )
    # index known (a constant predicate on data): no θ for the branch
    check(lambda x: lax.cond(jnp.array(2.0) > 1, lambda v: v * 3.0, lambda v: v, x), 1.0)


# --- loops --------------------------------------------------------------------------------------
def random_walk(x0, u):
    def body(c, ut):
        n = 0.9 * c + ut
        return n, n

    return lax.scan(body, x0, u)[1]


def test_scan_forwards():
    inv = ppinv.inverse(random_walk, 1.0, jnp.ones(6))
    assert inv.n_theta == 1
    check(random_walk, 1.0, jnp.ones(6))


def two_species(u, reverse=False, z=(0.1, 0.05, 0.02)):
    """Two carries observed through one stacked output per step (as in Lotka–Volterra)."""

    def body(c, ut):
        r, f = c
        r2 = r + z[0] * r - z[1] * r * f + ut[0]
        f2 = f + z[2] * r2 * f - z[1] * f + ut[1]
        return (r2, f2), jnp.stack([r2, f2])

    return lax.scan(body, (1.0, 0.5), u, reverse=reverse)[1]


@pytest.mark.parametrize(
    "f,args",
    [
        (random_walk, (1.0, jnp.ones(6))),
        (lambda x0, u: lax.scan(lambda c, ut: (0.9 * c + ut, 0.9 * c + ut), x0, u, reverse=True)[1], (1.0, jnp.ones(6))),
        (lambda u: two_species(u), (jnp.ones((7, 2)),)),
        (lambda u: two_species(u, reverse=True), (jnp.ones((7, 2)),)),
    ],
    ids=["walk", "walk-reversed", "two-species", "two-species-reversed"],
)
def test_scan_with_observed_carries_runs_all_steps_at_once(f, args):
    """Each step's carry out is fixed by its observed output, so the inverse vmaps the
    steps instead of scanning them; values and log|det| as before."""
    inv = ppinv.inverse(f, *args)
    assert "all steps at once" in inv.describe()
    check(f, *args, n=4)


def test_scan_with_a_hidden_carry_stays_sequential():
    assert "all steps at once" not in ppinv.inverse(pair_sums, jnp.ones((5, 2))).describe()


def pair_sums(u):
    def body(c, ut):
        return c + 1.0, ut[0] * jnp.exp(ut[1]) + c

    return lax.scan(body, 0.0, u)[1]


def test_scan_with_per_step_theta():
    inv = ppinv.inverse(pair_sums, jnp.ones((5, 2)))
    (spec,) = inv.theta_spec.values()
    assert spec.shape[0] == 5 and inv.n_theta == 5  # one θ per step, stacked
    check(pair_sums, jnp.ones((5, 2)))


def growth(x0):
    return lax.fori_loop(0, 12, lambda i, x: jnp.exp(0.5 * x) - 1.0 + 0.01 * i, x0)


def test_scan_backwards_with_counter():
    check(growth, 0.3, n=4, rtol=1e-7, log_det_atol=1e-6)


def logistic(x0, b):
    return lax.fori_loop(0, 20, lambda i, x: b * x * (1 - x), x0)


def test_logistic_map_20_steps_every_branch():
    """Each step's quadratic root is a discrete θ; every branch choice that is in the
    domain maps back onto the observation."""
    inv = ppinv.inverse(logistic, 0.3, 3.2)
    roots = [n for n, s in inv.theta_spec.items() if s.discrete]
    assert len(roots) == 1 and inv.theta_spec[roots[0]].shape == (20,)
    # In the chaotic regime the forward map expands, so running it backwards is well
    # conditioned; near a stable fixed point (b < 3) it is not, for any method (errors grow
    # like |f'(x*)|^-20), so the round trip is checked where it is meaningful.
    points = [(0.3, 3.7), (0.81, 3.9), (0.05, 3.95), (0.6, 3.6)]
    report = check_inverse(logistic, 0.3, 3.2, inv=inv, points=points, rtol=1e-7, log_det_atol=1e-6)
    assert report.n_in_domain == len(points)
    y = logistic(0.3, 3.7)
    theta = inv.pgf(0.3, 3.7)
    name = roots[0]
    dtype = theta[name].dtype
    first_flipped = theta[name].at[0].set(1 - theta[name][0])  # the other root at the first step
    # (always the smaller root drives x0 to ~1e-12, where re-running the map forwards is
    # itself ill-conditioned; the larger root and single flips keep the check meaningful)
    choices = [theta[name], jnp.zeros(20, dtype), first_flipped]
    preimages = set()
    for choice in choices:
        t = {**theta, name: choice}
        assert bool(inv.in_domain(y, t))
        x0, b = inv(y, t)
        np.testing.assert_allclose(logistic(x0, b), y, rtol=1e-6)
        preimages.add(round(float(x0), 6))
    assert len(preimages) == len(choices)  # different branches, different preimages


@pytest.mark.parametrize("n", [1, 2, pytest.param(4, marks=pytest.mark.slow), pytest.param(8, marks=pytest.mark.slow)])
def test_logistic_map_unrolled_in_python(n):
    """A Python loop unrolls into n quadratics in a row: each is solved for the previous
    state (not expanded into one polynomial of degree 2ⁿ in x₀), including points where
    the textbook quadratic formula loses the small root to cancellation."""

    def f(x0, b):
        x = x0
        for _ in range(n):
            x = b * x * (1 - x)
        return x

    points = [(0.3, 3.7), (0.05, 3.95), (-0.0245, -0.037), (0.6, 2.5)]
    inv = ppinv.inverse(f, 0.3, 3.2)
    if n == 1:  # frees x₀ and solves for b (linear in b)
        assert not any(s.discrete for s in inv.theta_spec.values())
    else:  # each step's own quadratic, a root choice per step, with b freed
        stepwise = ppinv.inverse(f, 0.3, 3.2, free=["b"])
        assert sum(s.discrete for s in stepwise.theta_spec.values()) == n
        report = check_inverse(f, 0.3, 3.2, inv=stepwise, points=points, rtol=1e-7, log_det_atol=1e-6)
        assert report.n_in_domain == len(points)
    # ppinv's own choice: for two steps x₀ freed and one cubic in b, else as above; exact either way
    report = check_inverse(f, 0.3, 3.2, inv=inv, points=points, rtol=1e-7, log_det_atol=1e-6)
    assert report.n_in_domain == len(points)


def test_scan_compiles_once_regardless_of_length():
    def make(n):
        return lambda x0, u: lax.scan(lambda c, ut: (0.9 * c + ut, jnp.sin(c) + ut), x0, u)[1]

    invs = [ppinv.inverse(make(n), 1.0, jnp.ones(n)) for n in (10, 1000)]
    counts = [len(inv.schedule.steps) for inv in invs]
    assert counts[0] == counts[1]  # the schedule does not grow with the number of steps


# --- NumPyro: vector sites through condition -----------------------------------------------------
def gamma_sum_50():
    alpha = jnp.linspace(0.5, 3.0, 50)
    x = numpyro.sample("x", dist.Gamma(alpha, 1.0).to_event(1))
    numpyro.deterministic("total", jnp.sum(x))


@pytest.mark.slow
def test_gamma_sum_50_terms_dirichlet():
    y = 20.0
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(gamma_sum_50, {"total": y})), num_warmup=400, num_samples=1500)
    w = np.asarray(mcmc.get_samples()["x"]) / y
    alpha = np.linspace(0.5, 3.0, 50)
    mean = alpha / alpha.sum()
    var = mean * (1 - mean) / (alpha.sum() + 1)
    assert_mean(w, mean, sd=np.sqrt(var))
    assert_var(w, var)


N200, M50 = 200, 50
A_BIG = np.random.RandomState(7).normal(size=(M50, N200)) / np.sqrt(N200)
Y_BIG = np.random.RandomState(8).normal(size=M50)


def linear_gaussian_200():
    with numpyro.plate("n", N200):
        x = numpyro.sample("x", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.asarray(A_BIG) @ x)


@pytest.mark.slow
def test_linear_gaussian_200_by_50():
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(linear_gaussian_200, {"y": Y_BIG})), num_warmup=300, num_samples=800)
    x = np.asarray(mcmc.get_samples()["x"])
    pinv = np.linalg.pinv(A_BIG)
    cov = np.eye(N200) - pinv @ A_BIG
    np.testing.assert_allclose(x @ A_BIG.T, np.broadcast_to(Y_BIG, (len(x), M50)), atol=1e-9)
    assert_mean(x, pinv @ Y_BIG, sd=np.sqrt(np.diag(cov)))
    assert_var(x, np.diag(cov))


def test_coupled_slices_are_not_blamed_on_a_missing_rule():
    """Slices have no rule of their own (linear blocks solve them); when a program is
    stuck the error names the coupling, not a missing rule for ``slice``."""
    with pytest.raises(ppinv.UnderdeterminedError, match="coupled") as err:
        ppinv.inverse(lambda x: jnp.dot(x, x) + x[0], jnp.ones(3))
    assert "no inverse rule" not in str(err.value)
