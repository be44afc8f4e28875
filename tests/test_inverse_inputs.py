"""What ``ppinv.inverse`` accepts: finite observations, entrywise supports (issue 9, defect 10).

A NaN or infinite y has no preimage: an eager call refuses it naming the output, and
under ``jit`` it is outside the domain (in-domain False, log|det| −∞, x NaN). A support
that constrains whole vectors or matrices is refused by ``inverse()`` with the same
message ``condition()`` gives for a latent site with it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import ppinv


def add(a, b):
    return a + b


def sum_and_difference(a, b):
    return {"s": a + b, "d": a - b}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_y_is_refused_eagerly(bad):
    inv = ppinv.inverse(add, 1.0, 1.0)
    theta = inv.pgf(1.0, 2.0)
    for call in (inv, inv.log_abs_det_jacobian, inv.in_domain, inv.with_log_det):
        with pytest.raises(ppinv.InputError, match="NaN or inf"):
            call(bad, theta)
    pair = ppinv.inverse(sum_and_difference, 1.0, 1.0)
    with pytest.raises(ppinv.InputError, match=r"y\['d'\]"):  # names the output
        pair({"s": 1.0, "d": bad}, {})


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_y_is_outside_the_domain_under_jit(bad):
    inv = ppinv.inverse(add, 1.0, 1.0)
    theta = inv.pgf(1.0, 2.0)
    assert not bool(jax.jit(inv.in_domain)(bad, theta))
    assert float(jax.jit(inv.log_abs_det_jacobian)(bad, theta)) == -np.inf
    a, b = jax.jit(inv)(bad, theta)
    assert np.isnan(a) and np.isnan(b)
    # a finite y in the same batch is untouched
    ys = jnp.array([3.0, bad])
    ok = jax.vmap(inv.in_domain, in_axes=(0, None))(ys, theta)
    np.testing.assert_array_equal(ok, [True, False])
    np.testing.assert_allclose(jax.vmap(inv, in_axes=(0, None))(ys, theta)[1][0], 2.0)


def test_y_closed_over_inside_jit():
    """A concrete y captured by a jitted function is checked as the value it is (it was a
    TracerBoolConversionError: jnp.asarray of a constant is a tracer under jit)."""
    inv = ppinv.inverse(add, 1.0, 1.0)
    theta = inv.pgf(1.0, 2.0)
    for y in (3.0, np.array(3.0), jnp.array(3.0)):
        (a, b), log_det = jax.jit(lambda t, y=y: inv.with_log_det(y, t))(theta)
        np.testing.assert_allclose(a + b, 3.0, rtol=1e-15)
        assert np.isfinite(log_det)
    with pytest.raises(ppinv.InputError, match="NaN or inf"):
        jax.jit(lambda t: inv.with_log_det(np.nan, t))(theta)


WHOLE_ARRAY_SUPPORTS = [
    (constraints.simplex, (3,), "simplex"),
    (constraints.ordered_vector, (3,), "whole vectors"),
    (constraints.positive_ordered_vector, (3,), "whole vectors"),
    (constraints.sphere, (3,), "whole vectors"),
    (constraints.positive_definite, (2, 2), "whole matrices"),
    (constraints.corr_cholesky, (2, 2), "whole matrices"),
]


@pytest.mark.parametrize("support, shape, fragment", WHOLE_ARRAY_SUPPORTS, ids=lambda v: str(v)[:20])
def test_supports_on_whole_arrays_are_refused(support, shape, fragment):
    with pytest.raises(ppinv.InputError) as info:
        ppinv.inverse(lambda w: jnp.sum(w * w), jnp.ones(shape), support=support)
    msg = str(info.value)
    assert "argument 'w'" in msg and fragment in msg and "entrywise" in msg, msg


NEGATIVE, POSITIVE = jnp.array([-1.2, -1.5, -1.1]), jnp.array([0.3, 1.2, 2.0])


@pytest.mark.parametrize(
    "support, x",
    [(constraints.positive, POSITIVE), (constraints.interval(-2.0, -1.0), NEGATIVE),
     (constraints.independent(constraints.positive, 1), POSITIVE), (constraints.real_vector, NEGATIVE),
     (constraints.less_than(0.0), NEGATIVE)],
    ids=lambda v: str(v)[:24],
)
def test_entrywise_supports_are_accepted(support, x):
    inv = ppinv.inverse(lambda w: jnp.sum(w), jnp.ones(3), support=support)
    (back,) = inv(jnp.sum(x), inv.pgf(x))
    np.testing.assert_allclose(back, x, rtol=1e-12)


def ordered_sum():
    base = dist.Normal(0.0, 1.0).expand([3]).to_event(1)
    x = numpyro.sample("x", dist.TransformedDistribution(base, dist.transforms.OrderedTransform()))
    numpyro.deterministic("s", jnp.sum(x))


def test_condition_refuses_the_same_supports_with_the_same_message():
    with pytest.raises(ppinv.ConditionError) as cond:
        ppinv.condition(ordered_sum, {"s": 1.0})
    with pytest.raises(ppinv.InputError) as inv:
        ppinv.inverse(lambda x: jnp.sum(x), jnp.ones(3), support=constraints.ordered_vector)
    tail = "has support OrderedVector(), a constraint on whole vectors (event_dim 1) rather than on each entry"
    assert tail in str(cond.value) and tail in str(inv.value)
    assert "latent site 'x'" in str(cond.value)
