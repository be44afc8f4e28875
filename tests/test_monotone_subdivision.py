"""Monotonicity proved piece by piece (``_monotone.derivative_sign``, interval subdivision).

Interval bounds over the whole support forget that two factors are the same variable: the
derivative of ``u·exp(δu²/2)`` (TensorFlow Probability's LambertW transform) is
``e + u·(δu·e)``, whose bounds over the real line include negative values although it is
``(1 + δu²)·e > 0``. Cut at 0, each half shows it. A function that is not monotone is still
refused however finely the support is cut.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions import constraints
from scipy import optimize

import ppinv
from ppinv._monotone import _subdivisions
from ppinv.errors import InversionError
from ppinv.testing import check_inverse


def lambertw_forward(u, delta=0.4):
    return u * jnp.exp(0.5 * delta * u**2)


def test_lambertw_transform_is_inverted_exactly():
    points = [(jnp.asarray(v),) for v in (-2.0, -0.3, 0.5, 1.7)]
    inv = ppinv.inverse(lambertw_forward, 0.5)
    report = check_inverse(lambertw_forward, 0.5, inv=inv, points=points, rtol=1e-8, log_det_atol=1e-8,
                           dense_points=2, grad_points=1)
    assert report.n_in_domain == len(points)
    for y in (-3.0, 0.2, 5.0):
        ref = optimize.brentq(lambda t: t * np.exp(0.2 * t * t) - y, -10.0, 10.0, xtol=1e-14)
        np.testing.assert_allclose(float(inv(y)[0]), ref, rtol=1e-12)


def test_a_vector_of_them():
    inv = ppinv.inverse(lambertw_forward, jnp.ones(3))
    x = jnp.asarray([-1.0, 0.2, 2.5])
    np.testing.assert_allclose(inv(lambertw_forward(x))[0], x, rtol=1e-12)


def test_a_function_with_a_maximum_is_still_refused():
    """u·exp(−u²/2) rises to u = 1 and falls after: two preimages below its maximum."""
    with pytest.raises(InversionError, match="monotone"):
        ppinv.inverse(lambda u: u * jnp.exp(-0.5 * u**2), 0.5)


def test_on_a_support_where_it_is_monotone_it_is_solved():
    f = lambda u: u * jnp.exp(-0.5 * u**2)  # noqa: E731
    inv = ppinv.inverse(f, 0.5, support=constraints.interval(-0.9, 0.9))
    x = jnp.asarray(0.6)
    np.testing.assert_allclose(inv(f(x))[0], x, rtol=1e-12)


def test_the_covers_refine_and_keep_the_interval():
    covers = list(_subdivisions(-np.inf, np.inf))
    assert covers[0] == [(-np.inf, np.inf)] and covers[1] == [(-np.inf, 0.0), (0.0, np.inf)]
    for pieces in covers + list(_subdivisions(2.0, 3.0)):
        assert all(a < b for a, b in pieces)
        assert all(b == c for (_, b), (c, _) in zip(pieces, pieces[1:]))  # contiguous, in order
    assert len(covers[-1]) <= 32
