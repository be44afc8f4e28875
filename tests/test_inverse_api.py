"""The public API of ppinv.inverse: composition with jit/vmap/grad, trace counts, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from numpyro.distributions import constraints

import ppinv
from ppinv.testing import check_inverse, dense_log_abs_det


def f(a, b, c):
    return a * b + jnp.sin(c)


@pytest.fixture(scope="module")
def inv():
    return ppinv.inverse(f, 1.0, 1.0, 1.0)


def test_round_trip_and_soundness(inv):
    x = (0.7, -1.3, 2.1)
    theta = inv.pgf(*x)
    np.testing.assert_allclose(inv(f(*x), theta), x, rtol=1e-12)
    theta2 = {k: v + 0.3 if v.dtype.kind == "f" else v for k, v in theta.items()}
    np.testing.assert_allclose(f(*inv(1.5, theta2)), 1.5, rtol=1e-12)


def test_theta_space(inv):
    assert inv.n_theta == 2
    assert set(inv.theta_support) == set(inv.theta_spec)
    theta = inv.sample_theta(jax.random.PRNGKey(1))
    assert set(theta) == set(inv.theta_spec)
    for name, spec in inv.theta_spec.items():
        assert theta[name].shape == spec.shape
        assert bool(jnp.all(spec.support.check(theta[name])))


def test_jit_vmap_grad(inv):
    theta = inv.pgf(0.7, -1.3, 2.1)
    ys = jnp.linspace(0.5, 2.0, 7)
    batched = jax.jit(jax.vmap(inv, in_axes=(0, None)))(ys, theta)
    np.testing.assert_allclose(jax.vmap(f)(*batched), ys, rtol=1e-12)
    ld = jax.vmap(inv.log_abs_det_jacobian, in_axes=(0, None))(ys, theta)
    assert ld.shape == (7,) and bool(jnp.all(jnp.isfinite(ld)))
    g = jax.grad(lambda y: inv(y, theta)[2])(1.2)
    assert bool(jnp.isfinite(g))
    gl = jax.grad(lambda y: inv.log_abs_det_jacobian(y, theta))(1.2)
    assert bool(jnp.isfinite(gl))
    xs = jax.vmap(lambda a: jnp.stack([a, -1.3, 2.1]))(jnp.linspace(0.1, 1.0, 4))
    thetas = jax.jit(jax.vmap(lambda x: inv.pgf(*x)))(xs)
    assert all(v.shape[0] == 4 for v in thetas.values())


def test_traced_once_per_shape():
    calls = []

    def g(a, b):
        calls.append(1)
        return a * jnp.exp(b)

    inv = ppinv.inverse(g, 1.0, 1.0)
    assert len(calls) == 1  # traced once, at construction
    theta = inv.pgf(1.0, 0.5)
    for y in (1.0, 2.0, 3.0):
        inv(y, theta)
        inv.log_abs_det_jacobian(y, theta)
    jax.jit(jax.vmap(inv, in_axes=(0, None)))(jnp.ones(3), theta)
    assert len(calls) == 1  # the program is never re-traced
    assert inv.trace_count <= 3  # the inverse: once eagerly, once per outer transform


def test_log_det_matches_dense_for_vector_program():
    def h(x):
        return jnp.array([x[0] * x[1] + x[2], jnp.exp(x[1]) - x[0]])

    inv = ppinv.inverse(h, jnp.ones(3))
    x = jnp.array([0.4, -0.3, 1.2])
    theta = inv.pgf(x)
    np.testing.assert_allclose(
        inv.log_abs_det_jacobian(h(x), theta), dense_log_abs_det(inv, h(x), theta), atol=1e-10
    )


def test_outside_domain_is_minus_inf_not_nan():
    inv = ppinv.inverse(lambda a: jnp.exp(a), 1.0)
    assert float(inv.log_abs_det_jacobian(-1.0, {})) == -np.inf
    with pytest.raises(ppinv.DomainError, match="no preimage"):
        inv(-1.0, {})
    x = jax.jit(inv)(-1.0, {})  # under jit: NaN marks "no preimage"
    assert bool(jnp.isnan(x[0]))
    g = jax.grad(lambda y: jnp.where(jnp.isfinite(inv.log_abs_det_jacobian(y, {})), inv.log_abs_det_jacobian(y, {}), 0.0))(-1.0)
    assert not bool(jnp.isnan(g))


def test_joint_linear_solve():
    """a + b and a − b both observed: solved jointly (no θ), not over-determined."""
    inv = ppinv.inverse(lambda a, b: (a + b, a - b), 1.0, 1.0)
    assert inv.n_theta == 0
    check_inverse(lambda a, b: (a + b, a - b), 1.0, 1.0, inv=inv, n_points=5, rtol=1e-12, log_det_atol=1e-12)


def test_support_preference():
    inv = ppinv.inverse(f, 1.0, 1.0, 1.0, support={"b": constraints.positive})
    assert inv.theta_support["b"] is constraints.positive


# --- bad input: each a clear error ---------------------------------------------------------
def test_no_rule_names_primitive_and_line():
    with pytest.raises(ppinv.NoRuleError) as err:
        ppinv.inverse(lambda x: jnp.floor(x) * 2.0, 1.0)
    msg = str(err.value)
    assert "'floor'" in msg and "test_inverse_api.py" in msg and "register_rule" in msg


def test_opaque_callback_is_an_error():
    def g(x):
        y = jax.pure_callback(lambda v: np.asarray(v * 2.0), jax.ShapeDtypeStruct((), jnp.float64), x)
        return y + 1.0

    with pytest.raises(ppinv.NoRuleError, match="pure_callback"):
        ppinv.inverse(g, 1.0)


def test_overdetermined_names_relation():
    """Two inputs, two outputs, but the second output is a function of the first."""
    with pytest.raises(ppinv.OverdeterminedError) as err:
        ppinv.inverse(lambda a, b: (a + b, jnp.exp(a + b)), 1.0, 1.0)
    msg = str(err.value)
    assert "over-determined" in msg and "exp" in msg and "test_inverse_api.py" in msg


def test_more_outputs_than_inputs():
    with pytest.raises(ppinv.OverdeterminedError, match="observed output"):
        ppinv.inverse(lambda a: jnp.stack([a, a * 2.0, a + 1.0]), 1.0)


def test_constant_output():
    with pytest.raises(ppinv.InversionError, match="constant"):
        ppinv.inverse(lambda a: (a * 2.0, 3.0), 1.0)


def test_integer_input_rejected():
    with pytest.raises(ppinv.InputError, match="floating"):
        ppinv.inverse(lambda a: a * 2, 1)
    with pytest.raises(ppinv.InputError, match="floating"):
        ppinv.inverse(lambda a: jnp.where(a, 1.0, 2.0), True)


def test_wrong_y_and_theta(inv):
    theta = inv.pgf(0.7, -1.3, 2.1)
    with pytest.raises(ppinv.InputError, match="shape"):
        inv(jnp.ones(3), theta)
    with pytest.raises(ppinv.InputError, match="structure"):
        inv((1.0, 2.0), theta)
    with pytest.raises(ppinv.InputError, match="keys"):
        inv(1.0, {})
    bad = dict(theta)
    name = next(iter(bad))
    bad[name] = jnp.ones(2)
    with pytest.raises(ppinv.InputError, match="shape"):
        inv(1.0, bad)
    disc = ppinv.inverse(lambda x: x * x, 1.0)
    (dname,) = disc.theta_spec
    with pytest.raises(ppinv.InputError, match="integer"):
        disc(1.0, {dname: 0.5})
    with pytest.raises(ppinv.InputError, match="shape"):
        inv.pgf(jnp.ones(2), 1.0, 1.0)


def test_while_loop_is_an_error():
    def g(x):
        return lax.while_loop(lambda c: c[1] < 3, lambda c: (c[0] * 2.0, c[1] + 1), (x, 0))[0]

    with pytest.raises(ppinv.NoRuleError, match="while_loop"):
        ppinv.inverse(g, 1.0)


def test_rank_deficient_linear_map():
    A = jnp.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]])
    with pytest.raises(ppinv.InversionError, match="rank 1 < 2"):
        ppinv.inverse(lambda x: A @ x, jnp.ones(3))
    with pytest.raises(ppinv.InversionError, match="have rank 1"):  # the message says the true rank
        ppinv.inverse(lambda a, b: (a + b, 2 * a + 2 * b), 1.0, 1.0)


def test_no_freedom_means_empty_theta():
    inv = ppinv.inverse(lambda a: jnp.exp(a) + 1.0, 1.0)
    assert inv.theta_spec == {} and inv.n_theta == 0
    np.testing.assert_allclose(inv(jnp.exp(0.3) + 1.0)[0], 0.3, rtol=1e-12)
