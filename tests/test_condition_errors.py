"""Bad input to ``ppinv.condition`` and its kernels: a clear error, never a chain of NaNs.

Each test checks the error class, that the message names the offending site,
and that it says how to fix the problem. A model without arguments is traced
and checked by ``ppinv.condition`` itself, so its data errors are raised there.
"""

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC

import ppinv
from ppinv.errors import ConditionError
from ppinv.infer import InverseHMC, InverseMH, InverseNUTS


def _raises(cls, fn, *fragments):
    """``fn()`` raises ``cls`` whose message contains every fragment (case-insensitive)."""
    with pytest.raises(cls) as info:
        fn()
    msg = str(info.value).lower()
    missing = [f for f in fragments if f.lower() not in msg]
    assert not missing, f"message lacks {missing}:\n{info.value}"
    return str(info.value)


def _first_call(cm, *args):
    """The conditioned model's first call, as any NumPyro algorithm makes it."""
    return lambda: handlers.trace(handlers.seed(cm, 0)).get_trace(*args)


def _run(kernel, num_chains=1, chain_method="sequential"):
    mcmc = MCMC(kernel, num_warmup=5, num_samples=5, num_chains=num_chains, chain_method=chain_method,
                progress_bar=False)
    mcmc.run(jax.random.PRNGKey(0))
    return mcmc


def exp_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.exp(a))


def square_model():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a * a)


# --- data that names nothing / nothing to infer -----------------------------------------------
def test_unknown_data_key():
    # the message names the key, lists the sites, suggests the close match and the fix
    _raises(ConditionError, lambda: ppinv.condition(exp_model, {"yy": 1.0}), "'yy'", "sites of the model", "'y'",
            "did you mean")


def const_model(c):
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.exp(a))
    numpyro.deterministic("k", 3.0 * c + 1.0)


@pytest.mark.parametrize("c", [2.0, jnp.asarray(2.0)], ids=["constant", "array-argument"])
def test_observation_without_latent_ancestor(c):
    cm = ppinv.condition(const_model, {"k": 7.0})
    _raises(ConditionError, _first_call(cm, c), "'k'", "does not depend on any latent", "remove 'k' from the data")


# --- observations outside the range: fail at kernel init --------------------------------------
@pytest.mark.parametrize("kernel", [InverseNUTS, InverseMH])
@pytest.mark.parametrize("model,value", [(exp_model, -1.0), (square_model, -4.0)], ids=["exp", "square"])
def test_observation_outside_range_fails_at_init(kernel, model, value):
    cm = ppinv.condition(model, {"y": value})
    msg = _raises(ConditionError, lambda: _run(kernel(cm)), "'y'", "outside the range", "check the observed value")
    assert str(value) in msg


def test_observation_outside_range_vectorized_chains():
    cm = ppinv.condition(exp_model, {"y": -1.0})
    _raises(ConditionError, lambda: _run(InverseNUTS(cm), num_chains=2, chain_method="vectorized"),
            "'y'", "outside the range")


def positive_sum():
    a = numpyro.sample("a", dist.Exponential(1.0))
    b = numpyro.sample("b", dist.Exponential(1.0))
    numpyro.deterministic("y", a + b)


def test_observation_outside_range_given_supports():
    """a, b > 0 so a + b cannot be −1: the latents leave their supports, which is also 'outside the range'."""
    cm = ppinv.condition(positive_sum, {"y": -1.0})
    _raises(ConditionError, lambda: _run(InverseMH(cm)), "'y'", "outside the range", "support")


# --- malformed data ------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf, -jnp.inf, [1.0, jnp.nan]], ids=["nan", "inf", "-inf", "vector-nan"])
def test_non_finite_data(bad):
    _raises(ConditionError, lambda: ppinv.condition(exp_model, {"y": bad}), "data['y']", "nan or inf", "finite")


def test_wrong_shape_data():
    _raises(ConditionError, lambda: ppinv.condition(exp_model, {"y": jnp.ones(3)}),
            "data['y']", "shape (3,)", "site 'y' has shape ()", "pass an array")


def test_non_numeric_data():
    _raises(ConditionError, lambda: ppinv.condition(exp_model, {"y": "one"}), "data['y']", "numeric")


def test_data_not_a_dict():
    _raises(ConditionError, lambda: ppinv.condition(exp_model, [("y", 1.0)]), "dict")


# --- over-determined ----------------------------------------------------------------------------
def too_many_observed():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    numpyro.deterministic("y", jnp.concatenate([a, a[:1] * 2.0 + a[1:]]))


def test_more_observed_dimensions_than_latent():
    _raises(ConditionError, lambda: ppinv.condition(too_many_observed, {"y": jnp.ones(3)}),
            "'y'", "3 observed", "2 latent", "observe fewer")


def two_sums():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y1", a + b)
    numpyro.deterministic("y2", 2.0 * a + 2.0 * b)


def sum_and_its_exp():
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    b = numpyro.sample("b", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y1", a + b)
    numpyro.deterministic("y2", jnp.exp(a + b))


@pytest.mark.parametrize(
    "model,y2",
    [(two_sums, 3.0), (two_sums, 2.0), (sum_and_its_exp, 1.0)],
    ids=["linear-contradictory", "linear-redundant", "nonlinear"],
)
def test_dependent_observations(model, y2):
    """y2 is a function of y1: the observations contradict (or repeat) each other."""
    _raises(ConditionError, lambda: ppinv.condition(model, {"y1": 1.0, "y2": y2}),
            "'y2'", "'y1'", "determined by", "observe only", "drop 'y2'")


def same_expression_twice():
    a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
    b = numpyro.sample("b", dist.LogNormal(0.0, 1.0))
    numpyro.deterministic("y1", a * b)
    numpyro.deterministic("y2", a * b)


def test_same_deterministic_observed_twice():
    _raises(ConditionError, lambda: ppinv.condition(same_expression_twice, {"y1": 2.0, "y2": 2.0}),
            "'y2'", "'y1'", "observe only")


# --- unsupported models ---------------------------------------------------------------------------
def discrete_upstream():
    k = numpyro.sample("k", dist.Bernoulli(0.5))
    a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", a + k)


def test_discrete_latent_upstream():
    _raises(ConditionError, lambda: ppinv.condition(discrete_upstream, {"y": 1.0}),
            "'k'", "'y'", "not supported", "marginalise")


def subsampled():
    with numpyro.plate("N", 10, subsample_size=3):
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
    numpyro.deterministic("y", jnp.sum(a))


def test_subsampling_plate():
    _raises(ConditionError, lambda: ppinv.condition(subsampled, {"y": 1.0}),
            "plate 'n'", "subsample", "remove subsample_size")


@pytest.mark.parametrize("kernel", [InverseNUTS, InverseHMC, InverseMH])
def test_kernel_needs_conditioned_model(kernel):
    _raises(ConditionError, lambda: kernel(exp_model), kernel.__name__, "exp_model", "ppinv.condition(")


def test_no_exact_observation():
    """Conditioning only ordinary sample sites is numpyro.handlers.condition's job."""
    def model():
        a = numpyro.sample("a", dist.Normal(0.0, 1.0))
        numpyro.sample("z", dist.Normal(a, 1.0))

    _raises(ConditionError, lambda: ppinv.condition(model, {"z": 1.0}), "nothing to condition exactly",
            "numpyro.handlers.condition")
