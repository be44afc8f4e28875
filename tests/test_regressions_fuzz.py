"""Regressions from fuzzing and hand-written edge programs (the newest mechanisms).

Each test states a property against an independent reference: soundness and the PGF round
trip through :func:`ppinv.testing.check_inverse` (log|det| against the dense Jacobian,
derivatives against central differences), a conditioned model's log density against one
built by hand, and the domain of a run under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from jax import lax
from numpyro.infer.util import log_density

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse

# a full matrix whose two triangles differ: a triangular solve must read only its own triangle
FULL = np.array([[2.0, 0.7, -0.4], [0.5, 1.5, 0.9], [-0.3, 0.2, 0.8]])
B32 = jnp.array([[0.3, -0.5], [1.2, 0.1], [-0.7, 0.4]])


def _exact(f, *args):
    inv = ppinv.inverse(f, *args)
    report = check_inverse(f, *args, inv=inv, n_points=2, rtol=1e-8, log_det_atol=1e-8, dense_points=1,
                           grad_points=1)
    assert report.n_in_domain == 2
    return inv


@pytest.mark.parametrize(
    "left_side, lower, transpose_a, unit_diagonal",
    [(True, True, True, False), (True, False, True, False), (False, False, True, True), (False, True, False, False)],
    ids=["left-lower-T", "left-upper-T", "right-upper-T-unit", "right-lower"],
)
def test_triangular_solve_of_a_full_matrix_reads_only_its_triangle(left_side, lower, transpose_a, unit_diagonal):
    b = B32 if left_side else B32.T

    def f(b):
        return lax.linalg.triangular_solve(FULL, b, left_side=left_side, lower=lower, transpose_a=transpose_a,
                                           unit_diagonal=unit_diagonal)

    inv = _exact(f, b)
    assert inv.n_theta == 0


def test_a_nan_from_a_forward_step_under_jit_is_outside_the_domain():
    """a from θ, √a evaluated forwards: θ < 0 makes NaN there, which the final guard must see."""
    inv = ppinv.inverse(lambda a, b: b + jnp.sqrt(a), 0.7, 0.3)
    theta = {"a": jnp.array([-1.0, 1.0])}
    y = jnp.ones(2)
    assert list(jax.jit(jax.vmap(inv.in_domain))(y, theta)) == [False, True]
    x, log_det = jax.jit(jax.vmap(inv.with_log_det))(y, theta)
    assert float(log_det[0]) == -np.inf and np.isfinite(float(log_det[1]))
    assert np.isnan(float(x[1][0])) and float(x[1][1]) == pytest.approx(0.0)


def test_a_matrix_passed_as_a_model_argument_is_read_at_every_call():
    """y = A⁻¹ z with A a model argument: z = A y and log|det A| follow the A of the call."""

    def model(A):
        z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
        numpyro.deterministic("y", jnp.linalg.solve(A, z))

    y = jnp.array([0.1, -0.2, 0.3])
    conditioned = ppinv.condition(model, {"y": y})
    for A in (FULL, np.array([[0.9, 0.2, 0.1], [0.3, 0.8, -0.2], [0.1, 0.4, 0.7]])):
        ld, trace = log_density(conditioned, (jnp.asarray(A),), {}, {})
        z = A @ np.asarray(y)
        np.testing.assert_allclose(trace["z"]["value"], z, rtol=1e-12)
        reference = float(dist.Normal(0.0, 1.0).log_prob(z).sum()) + float(np.linalg.slogdet(A)[1])
        assert float(ld) == pytest.approx(reference, rel=1e-12)


def test_a_product_with_a_constant_vector_holding_a_zero_is_refused_or_complete():
    """y = b ⊙ [1, 0] + c: b₂ is the free direction (c = y₂). Freeing c and solving b ⊙ [1, 0] = y − c
    reaches no preimage unless c = y₂ exactly; ppinv must refuse or be complete."""

    def f(b, c):
        return b * jnp.array([1.0, 0.0]) + c

    x = (jnp.array([0.3, -0.5]), jnp.array(0.2))
    try:
        inv = ppinv.inverse(f, *x)
    except InversionError:
        return
    report = check_inverse(f, *x, inv=inv, n_points=2, dense_points=1, grad_points=1, raise_on_failure=False)
    assert report.ok and report.n_in_domain == 2, report.failures[:1]
