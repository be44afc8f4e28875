"""``jnp.where`` with a known mask: the mask picks, entry by entry, which case feeds the output.

* Cases that are elementwise functions of one unknown (``jnp.where(eye, softplus(x), x)``,
  TensorFlow Probability's ``TransformDiagonal``): the piecewise solve with the mask as the
  predicate (``_piecewise/``): each entry is inverted through the case its mask entry picks,
  no θ chooses it (θ holds only a case's own discrete choices, a sign of ``x²``).
* Cases that mix entries (distrax's ``MaskedCoupling``: the unmasked entries are an affine map
  whose coefficients depend on the masked ones): the entry-by-entry split, in which each
  entry's select is the case it picks (``rules/structural/entries.py``).
* ``jnp.eye``, ``jnp.arange`` masks are computed by ``iota``: folded to constants on import.

Each inverse is checked by :func:`ppinv.testing.check_inverse` (soundness, PGF round trip,
log|det| against the dense Jacobian, derivatives against central differences, vmap).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse

TOL = dict(rtol=1e-8, log_det_atol=1e-8, dense_points=1, grad_points=1)
X22 = jnp.asarray([[0.3, -0.7], [1.1, -0.2]])
MASK3 = np.asarray([True, False, True])


def _exact(f, *args, n_points=3):
    inv = ppinv.inverse(f, *args)
    report = check_inverse(f, *args, inv=inv, n_points=n_points, **TOL)
    assert report.n_in_domain > 0, report
    return inv


def _steps(inv):
    return "\n".join(s.describe() for s in inv.schedule.steps)


def diagonal_softplus(x):
    return jnp.where(jnp.eye(x.shape[-1], dtype=bool), jax.nn.softplus(x), x)


def numpy_mask_exp(x):
    return jnp.where(MASK3, jnp.exp(x), 2.0 * x - 1.0)


def jnp_mask_sinh(x):
    return jnp.where(jnp.asarray(MASK3), x, jnp.sinh(x))


def arange_mask(x):
    return jnp.where(jnp.arange(4) % 2 == 0, jnp.tanh(x), x**3)


@pytest.mark.parametrize("f, arg", [
    (diagonal_softplus, X22),
    (numpy_mask_exp, jnp.asarray([0.3, -0.5, 1.2])),
    pytest.param(jnp_mask_sinh, jnp.asarray([0.3, -0.5, 1.2]), marks=pytest.mark.slow),
    pytest.param(arange_mask, jnp.asarray([0.3, -0.5, 1.2, 0.4]), marks=pytest.mark.slow),
])
def test_a_known_mask_picks_each_entrys_case(f, arg):
    inv = _exact(f, arg)
    assert inv.n_theta == 0 and not inv.theta_spec  # the mask chooses: no θ
    assert "the known predicate picks the piece" in _steps(inv)


def test_a_case_with_its_own_choices_keeps_them_in_theta():
    """x² on the masked entries: a sign per entry is θ; the mask still picks the case."""

    def f(x):
        return jnp.where(MASK3, x**2, jnp.exp(x))

    inv = _exact(f, jnp.asarray([0.3, -0.5, -1.2]))
    (spec,) = inv.theta_spec.values()
    assert spec.discrete and int(spec.support.upper_bound) == 1  # two roots of x², not three codes
    x = jnp.asarray([-0.3, 0.5, 1.2])
    np.testing.assert_allclose(inv(f(x), inv.pgf(x))[0], x, rtol=1e-12)


def masked_coupling(x):
    """distrax MaskedCoupling with an affine inner bijector whose parameters read the masked entries."""
    masked = jnp.where(MASK3, x, 0.0)
    shift = jnp.tanh(masked.sum())
    log_scale = 0.5 * jnp.tanh(masked.sum())
    return jnp.where(MASK3, x, x * jnp.exp(log_scale) + shift)


def test_a_masked_coupling_is_solved_entry_by_entry():
    inv = _exact(masked_coupling, jnp.asarray([0.3, -0.5, 1.2]))
    assert inv.n_theta == 0
    assert "entry by entry" in _steps(inv)


def test_a_mask_known_only_at_run_time():
    """A mask closed over from an enclosing jit is a tracer when the inverse is built."""

    def solved(mask, y):
        inv = ppinv.inverse(lambda x: jnp.where(mask, jnp.exp(x), x), jnp.ones(3))
        (x,), ld = inv.with_log_det(y, {})
        return x, ld

    x = jnp.asarray([0.3, -0.5, 1.2])
    for mask in (MASK3, ~MASK3):
        y = jnp.where(mask, jnp.exp(x), x)
        got, ld = jax.jit(solved)(jnp.asarray(mask), y)
        np.testing.assert_allclose(got, x, rtol=1e-12)
        np.testing.assert_allclose(ld, -np.sum(np.where(mask, np.asarray(x), 0.0)), rtol=1e-12)


def test_under_vmap_over_observations():
    inv = ppinv.inverse(diagonal_softplus, X22)
    xs = jnp.stack([X22, -X22, 2 * X22])
    out = jax.jit(jax.vmap(lambda y: inv(y, {})[0]))(jax.vmap(diagonal_softplus)(xs))
    np.testing.assert_allclose(out, xs, rtol=1e-12)


def test_a_mask_selecting_a_constant_is_refused():
    """Entry 0 is the constant 0 whatever x is: observing it constrains nothing, x₀ stays free."""

    def f(x):
        return jnp.where(MASK3, 0.0, jnp.exp(x))

    with pytest.raises(InversionError):
        ppinv.inverse(f, jnp.ones(3))


def test_a_mask_picking_one_case_everywhere_leaves_the_other_free():
    """An all-True mask: the output is the first case; the unpicked input is free (θ)."""

    def f(a, b):
        return jnp.where(np.ones(3, bool), a, b)

    inv = _exact(f, jnp.ones(3), jnp.ones(3))
    assert inv.n_theta == 3
