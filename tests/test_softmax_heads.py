"""Softmax and log-softmax heads observed: the logits in closed form (``ppinv/joint/softmax.py``).

TFP's SoftmaxCentered pads a 0 logit (``softmax(concat(z, 0))[:-1]``, inverse
``z = log p − log(1 − Σp)``); with every logit unknown the shift is θ; with some logits known
the observed shares of the others fix them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import logsumexp
from scipy import integrate, stats

import ppinv
from ppinv.testing import check_inverse, dense_log_abs_det

Z = jnp.asarray([0.1, -0.3, 0.2])
W = jnp.asarray([0.4, -1.1])  # known logits


def _check(f, *args):
    return check_inverse(f, *args, n_points=2, dense_points=1, rtol=1e-9, log_det_atol=1e-8)


def softmax_centered_head(z):
    return jax.nn.softmax(jnp.pad(z, [(0, 1)]))[:-1]


def test_softmax_centered_head_is_the_closed_form():
    inv = ppinv.inverse(softmax_centered_head, Z)
    assert inv.theta_spec == {}
    p = softmax_centered_head(Z)
    (z,) = inv(p)
    np.testing.assert_allclose(z, jnp.log(p) - jnp.log1p(-jnp.sum(p)), rtol=1e-12)
    np.testing.assert_allclose(z, Z, rtol=1e-12)
    # log|det ∂z/∂p| = −Σ log p − log(1 − Σp), and the dense Jacobian agrees
    want = float(-jnp.sum(jnp.log(p)) - jnp.log1p(-jnp.sum(p)))
    assert np.isclose(float(inv.log_abs_det_jacobian(p)), want, atol=1e-12)
    assert np.isclose(float(dense_log_abs_det(inv, p, {})), want, atol=1e-10)
    _check(softmax_centered_head, Z)


@pytest.mark.parametrize("build", [
    lambda z: jnp.concatenate([z, jnp.zeros(1)]),     # concat(z, 0)
    lambda z: jnp.pad(z, [(1, 0)]),                   # the known logit first, the shares after it observed
    lambda z: jnp.concatenate([z, jnp.full(1, 0.7)]),  # a known logit that is not 0
], ids=["concat", "pad_front", "known_nonzero"])
def test_softmax_head_with_one_known_logit(build):
    f = lambda z: jax.nn.softmax(build(z))[:-1]  # noqa: E731
    _check(f, Z)


def test_tail_observed_with_the_known_logit_among_them():
    # pad at the end, observe the last three: the known logit's own share is observed, the first is not
    f = lambda z: jax.nn.softmax(jnp.pad(z, [(0, 1)]))[1:]  # noqa: E731
    _check(f, Z)


def test_written_out_softmax_with_known_logits():
    def f(z):  # exp(b) / Σ exp(b), no shift; two logits known
        e = jnp.exp(jnp.concatenate([z, W]))
        return (e / jnp.sum(e))[:3]

    inv = ppinv.inverse(f, Z)
    assert inv.theta_spec == {}
    _check(f, Z)


def test_every_logit_unknown_takes_the_shift_as_theta():
    f = lambda b: jax.nn.softmax(b)[:-1]  # noqa: E731
    inv = ppinv.inverse(f, jnp.zeros(4))
    (spec,) = inv.theta_spec.values()
    assert inv.n_theta == 1 and not spec.discrete
    b = jnp.asarray([0.3, -0.2, 1.1, 0.0])
    theta = inv.pgf(b)
    np.testing.assert_allclose(list(theta.values())[0], logsumexp(b), rtol=1e-12)
    _check(f, jnp.zeros(4))


def test_log_softmax_head():
    f = lambda z: jax.nn.log_softmax(jnp.pad(z, [(0, 1)]))[:-1]  # noqa: E731
    inv = ppinv.inverse(f, Z)
    ell = f(Z)
    want = float(-jnp.log1p(-jnp.sum(jnp.exp(ell))))  # −log(rest): dℓ = dc / c
    assert np.isclose(float(inv.log_abs_det_jacobian(ell)), want, atol=1e-12)
    _check(f, Z)


def test_log_softmax_first_outputs_with_the_rest_of_x_known():
    f = lambda z: jax.nn.log_softmax(jnp.concatenate([z, W]))[:3]  # noqa: E731
    _check(f, Z)


def test_log_softmax_of_unknown_logits_takes_the_shift():
    f = lambda b: jax.nn.log_softmax(b)[1:]  # noqa: E731
    inv = ppinv.inverse(f, jnp.zeros(4))
    assert inv.n_theta == 1
    _check(f, jnp.zeros(4))


def test_shares_summing_past_one_are_outside_the_domain():
    inv = ppinv.inverse(softmax_centered_head, Z)
    p = jnp.asarray([0.5, 0.4, 0.2])
    assert not bool(inv.in_domain(p))
    assert float(inv.log_abs_det_jacobian(p)) == -np.inf
    ell_inv = ppinv.inverse(lambda z: jax.nn.log_softmax(jnp.pad(z, [(0, 1)]))[:-1], Z)
    assert not bool(ell_inv.in_domain(jnp.log(p)))


def test_shift_posterior_of_gaussian_logits():
    # b ~ N(0, I_K), softmax(b)[:-1] observed: b = log c̃ + t, so t | y ~ N(−mean(log c̃), 1/K)
    f = lambda b: jax.nn.softmax(b)[:-1]  # noqa: E731
    inv = ppinv.inverse(f, jnp.zeros(4))
    (name,) = inv.theta_spec
    y = f(jnp.asarray([0.3, -0.2, 1.1, 0.0]))

    @jax.jit
    def log_density(t):
        theta = {name: t}
        (b,) = inv(y, theta)
        return jnp.sum(jax.scipy.stats.norm.logpdf(b)) + inv.log_abs_det_jacobian(y, theta)

    dens = lambda t: float(jnp.exp(log_density(t)))  # noqa: E731
    norm = integrate.quad(dens, -20, 20)[0]
    mean = integrate.quad(lambda t: t * dens(t), -20, 20)[0] / norm
    var = integrate.quad(lambda t: (t - mean) ** 2 * dens(t), -20, 20)[0] / norm
    log_c = jnp.log(jnp.append(y, 1 - jnp.sum(y)))
    assert np.isclose(mean, float(-jnp.mean(log_c)), atol=1e-7)
    assert np.isclose(var, 1 / 4, atol=1e-7)
    assert stats.norm(mean, np.sqrt(var)).pdf(mean) > 0


def test_logits_minus_their_logsumexp():
    from jax.scipy.special import logsumexp as lse

    def f(z):  # log_softmax written out: b − logsumexp(b), the last logit 0
        b = jnp.concatenate([z, jnp.zeros(1)])
        return (b - lse(b))[:-1]

    inv = ppinv.inverse(f, Z)
    assert inv.theta_spec == {}
    _check(f, Z)


def test_a_shift_that_differs_is_not_taken_for_logsumexp():
    def f(z):  # b − (log Σ exp(b − m) + 2m) is not b − logsumexp(b): the softmax block must not claim it
        b = jnp.concatenate([z, jnp.zeros(1)])
        m = jax.lax.stop_gradient(jnp.max(b))
        return (b - (jnp.log(jnp.sum(jnp.exp(b - m))) + 2.0 * m))[:-1]

    with pytest.raises(ppinv.errors.InversionError):
        ppinv.inverse(f, Z)
