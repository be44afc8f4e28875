"""Placements with known indices and triangular systems, as users write them.

* Placements (``rules/structural/placements.py``): group totals and means with ``.at[groups].add`` and
  ``jax.ops.segment_sum``, products with ``.at[].mul``, ``jnp.take`` / ``take_along_axis``, an
  unknown put into a constant vector with ``.at[i].set``. An entry holding one unknown is copied
  back; an entry holding several is a sum split by the ``reduce_sum`` rule (θ: all but one
  summand, or a simplex for positive summands).
* Triangular systems (the entry-by-entry split): ``cumprod(1 − z)`` on the unit interval, the
  stick-breaking map onto the simplex, ``a + b · data.at[idx].set(u)``.

Each inverse is checked by :func:`ppinv.testing.check_inverse` (soundness at the PGF's θ and
away from it, PGF round trip, log|det| against ``slogdet`` of the dense Jacobian over (y, θ),
``jacfwd``/``jacrev`` against central differences). The conditioned NumPyro model of observed
group totals is checked against the closed-form Gaussian conditional.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from numpyro.distributions import constraints

import ppinv
from ppinv.errors import InversionError
from ppinv.infer import InverseNUTS
from ppinv.testing import check_inverse
from tests.helpers import assert_mean, assert_var, run_mcmc

GROUPS = jnp.asarray([0, 1, 0, 2, 1, 0])  # unsorted ids; group 2 has one member
N_GROUPS = 3
COUNTS = np.bincount(np.asarray(GROUPS), minlength=N_GROUPS).astype(float)
X6 = jnp.asarray([0.3, -1.2, 0.8, 2.0, 0.5, -0.4])
POS6 = jnp.asarray([0.3, 1.2, 0.8, 2.0, 0.5, 0.4])
OPEN_UNIT = constraints.interval(0.0, 1.0)


def _exact(f, *args, support=None, n_points=2, **kw):
    inv = ppinv.inverse(f, *args, support=support)
    report = check_inverse(f, *args, inv=inv, support=support, n_points=n_points, rtol=1e-8, log_det_atol=1e-8,
                           dense_points=1, grad_points=1, **kw)
    assert report.n_in_domain > 0
    return inv


def _descriptions(inv):
    return "\n".join(s.describe() for s in inv.schedule.steps)


# --- placements ---------------------------------------------------------------------------------
def group_totals(x):
    return jnp.zeros(N_GROUPS, x.dtype).at[GROUPS].add(x)


def group_means(x):
    return jnp.zeros(N_GROUPS, x.dtype).at[GROUPS].add(x) / COUNTS


@pytest.mark.slow  # several inverses checked in full (compilation: 5-15 s)
def test_group_means_with_at_add():
    inv = _exact(group_means, X6)
    # six unknowns, three totals: the free directions are all but one member of each group
    assert inv.n_theta == 6 - N_GROUPS
    assert "scatter-add" in _descriptions(inv)


def test_group_totals_of_positive_values_take_a_simplex_per_group():
    inv = _exact(group_totals, POS6, support=constraints.positive)
    # one simplex per size of group: the group of two (1, 4) and the group of three (0, 2, 5)
    specs = sorted(inv.theta_spec.items(), key=lambda kv: kv[1].shape)
    assert [s.shape for _, s in specs] == [(1, 2), (1, 3)]
    assert all(s.support is constraints.simplex for _, s in specs)
    # the split reaches every split of each total: x = total · θ
    theta = {specs[0][0]: jnp.asarray([[0.4, 0.6]]), specs[1][0]: jnp.asarray([[0.2, 0.5, 0.3]])}
    x = np.asarray(inv(jnp.asarray([1.0, 4.0, 2.0]), theta)[0])
    np.testing.assert_allclose(x[[0, 2, 5]], [0.2, 0.5, 0.3], rtol=1e-12)
    np.testing.assert_allclose(x[[1, 4]], [1.6, 2.4], rtol=1e-12)


def test_segment_sum_with_constant_segment_ids():
    def f(x):
        return jax.ops.segment_sum(x, GROUPS, num_segments=N_GROUPS)

    inv = _exact(f, X6)
    assert inv.n_theta == 3
    y = f(X6)
    np.testing.assert_allclose(f(inv(y, inv.pgf(X6))[0]), y, rtol=1e-12)


def test_products_with_at_mul():
    def f(x):
        return jnp.ones(N_GROUPS, x.dtype).at[GROUPS].mul(x)

    inv = _exact(f, POS6, support=constraints.positive)
    assert inv.n_theta == 3


@pytest.mark.slow  # several inverses checked in full (compilation: 5-15 s)
def test_take_and_take_along_axis_are_copied_back():
    perm = jnp.asarray([3, 0, 2, 1])
    inv = _exact(lambda x: jnp.take(x, perm) * 2.0, jnp.arange(4.0))
    assert "copy entries back" in _descriptions(inv)
    order = jnp.asarray([[2, 0, 1], [1, 2, 0]])
    inv = _exact(lambda x: jnp.exp(jnp.take_along_axis(x, order, axis=1)), jnp.ones((2, 3)))
    assert "copy entries back" in _descriptions(inv) and inv.n_theta == 0


@pytest.mark.slow  # several inverses checked in full (compilation: 5-15 s)
def test_known_operand_of_an_update_is_taken_out():
    # x.at[idx].add(c) and c.at[idx].add(x) with the other side known at run time
    idx = jnp.asarray([1, 1, 3])
    _exact(lambda x, c: (x.at[idx].add(c), c), jnp.arange(4.0), jnp.ones(3))
    _exact(lambda u, c: (c.at[jnp.asarray([0, 2])].add(u)[jnp.asarray([0, 2])], c), jnp.ones(2), jnp.ones(4))


@pytest.mark.slow  # several inverses checked in full (compilation: 5-15 s)
def test_unknown_set_into_a_constant_vector():
    data = jnp.asarray([30.0, 0.0, 25.0, 0.0, 41.0])
    idx = jnp.asarray([1, 3])

    def f(u, scale):
        placed = data.at[idx].set(u)  # the entries at 0, 2, 4 are constants
        return jnp.log(scale) + placed[jnp.asarray([1, 3])] * scale, placed[0] * scale

    _exact(f, jnp.asarray([1.0, 2.0]), 1.5, support=[None, constraints.positive])


def test_structural_constants_of_an_observed_output_are_refused():
    # the constant entry (index 1) cannot be observed: three outputs carry two coordinates
    with pytest.raises(InversionError):
        ppinv.inverse(lambda u: jnp.zeros(3).at[jnp.asarray([2, 0])].set(u), jnp.ones(2))


def test_indices_known_only_at_run_time_are_refused_with_the_reason():
    # a model argument is known only when the model runs: which entries are constants cannot be
    # decided when the inverse is built, and the triangular solve needs it
    data = jnp.asarray([30.0, 0.0, 25.0, 0.0])

    def model(idx):
        u = numpyro.sample("u", dist.Normal(0, 1).expand([2]).to_event(1))
        a = numpyro.sample("a", dist.Normal(0, 1))
        b = numpyro.sample("b", dist.LogNormal(0, 1))
        numpyro.deterministic("y", a + b * data.at[idx].set(u))

    cm = ppinv.condition(model, {"y": jnp.asarray([1.0, 2.0, 0.5, 3.0])})
    with pytest.raises(InversionError, match="indices of 'scatter'.*not constants"):
        numpyro.handlers.trace(numpyro.handlers.seed(cm, 0)).get_trace(jnp.asarray([1, 3]))


# --- triangular systems -----------------------------------------------------------------------------
@pytest.mark.slow  # several inverses checked in full (compilation: 5-15 s)
def test_cumprod_of_one_minus_z_on_the_unit_interval():
    z = jnp.asarray([0.2, 0.5, 0.7, 0.1])
    _exact(lambda z: jnp.cumprod(1.0 - z), z, support=OPEN_UNIT)
    # the exclusive product: entry k is fixed once the entries before it are
    inv = _exact(lambda z: z * jnp.concatenate([jnp.ones(1), jnp.cumprod(1.0 - z)[:-1]]), z, support=OPEN_UNIT)
    assert inv.n_theta == 0 and "entry by entry" in _descriptions(inv)


def stick_breaking_head(x):
    """NumPyro's StickBreakingTransform, the first K entries of the simplex point."""
    x = x - jnp.log(x.shape[-1] - jnp.arange(x.shape[-1]))
    z = jax.nn.sigmoid(x)
    z1m_cumprod = jnp.cumprod(1 - z, axis=-1)
    pad = jnp.pad(z1m_cumprod, [(1, 0)], constant_values=1.0)
    return z * pad[:-1]


def test_stick_breaking_onto_the_simplex():
    x = jnp.asarray([0.4, -0.3, 1.1, 0.2])
    inv = _exact(stick_breaking_head, x)
    # the same map as NumPyro's transform, and its inverse recovers x from a simplex point
    t = dist.transforms.StickBreakingTransform()
    np.testing.assert_allclose(stick_breaking_head(x), t(x)[:-1], rtol=1e-12)
    p = jnp.asarray([0.1, 0.3, 0.2, 0.15, 0.25])
    np.testing.assert_allclose(inv(p[:-1], {})[0], t.inv(p), rtol=1e-9, atol=1e-12)


def test_autoregressive_update_with_known_weights():
    w = jnp.asarray([[0.0, 0.0, 0.0], [0.8, 0.0, 0.0], [-0.4, 0.6, 0.0]])

    def f(x):  # y_i = x_i · exp(tanh(w_i · y)) + w_i · y, the y_<i earlier outputs
        y = jnp.zeros_like(x)
        for _ in range(3):
            y = x * jnp.exp(jnp.tanh(w @ y)) + w @ y
        return y

    _exact(f, jnp.asarray([0.1, -0.2, 0.3]))


# --- a conditioned NumPyro model ---------------------------------------------------------------------------
MU = np.asarray([0.5, -1.0, 0.0, 2.0, 1.0, -0.5])
SIGMA = np.asarray([1.0, 0.5, 2.0, 1.5, 1.0, 0.7])
TOTALS = np.asarray([1.0, -0.5, 3.0])


def group_model():
    x = numpyro.sample("x", dist.Normal(MU, SIGMA).to_event(1))
    numpyro.deterministic("totals", jnp.zeros(N_GROUPS).at[GROUPS].add(x))


def _gaussian_conditional():
    a = np.zeros((N_GROUPS, 6))
    a[np.asarray(GROUPS), np.arange(6)] = 1.0
    cov = np.diag(SIGMA**2)
    gain = cov @ a.T @ np.linalg.inv(a @ cov @ a.T)
    return MU + gain @ (TOTALS - a @ MU), cov - gain @ a @ cov


@pytest.mark.slow
def test_group_totals_posterior_is_the_gaussian_conditional():
    mcmc = run_mcmc(InverseNUTS(ppinv.condition(group_model, {"totals": TOTALS})), num_warmup=300, num_samples=1500)
    x = np.asarray(mcmc.get_samples()["x"])
    np.testing.assert_allclose(np.stack([np.bincount(GROUPS, r, N_GROUPS) for r in x]), np.tile(TOTALS, (len(x), 1)),
                               atol=1e-10)
    mean, cov = _gaussian_conditional()
    sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    free = sd > 1e-12  # the lone member of group 2 is its total
    np.testing.assert_allclose(x[:, ~free], np.broadcast_to(mean[~free], x[:, ~free].shape), atol=1e-10)
    assert_mean(x[:, free], mean[free], sd=sd[free])
    assert_var(x[:, free], np.diag(cov)[free])
