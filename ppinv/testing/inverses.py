"""Random inputs and :func:`check_inverse`: soundness, the PGF round trip, log|det|, derivatives, batching."""

from __future__ import annotations

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import tree_flatten, tree_map, tree_unflatten
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to

from ..arguments import arg_names_of, normalize_support
from ..inverse import Inverse, inverse
from .flat import _FlatInverse, _slogdet
from .gradients import check_gradient, default_step, finite_difference_rows



def sample_inputs(key, example_args, support=None, scale=1.0):
    """Random inputs shaped like ``example_args``, inside each argument's support."""
    leaves, tree = tree_flatten(tuple(example_args))
    if support is None:
        sups = [None] * len(example_args)
    elif isinstance(support, (list, tuple)):
        sups = list(support)
    else:
        sups = [support]
    leaf_sups = []
    for arg, sup in zip(example_args, sups):
        leaf_sups += [sup] * len(tree_flatten(arg)[0])
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf, sup in zip(keys, leaves, leaf_sups):
        shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
        t = biject_to(sup if sup is not None else constraints.real)
        base_shape = t.inverse_shape(shape) if shape else ()
        out.append(t(scale * jax.random.normal(k, base_shape, dtype)).astype(dtype))
    return tuple(tree_unflatten(tree, out))


# -- check_inverse ----------------------------------------------------------------------------


@dataclass
class InverseReport:
    """What :func:`check_inverse` measured.

    ``max_grad_error`` is the largest relative disagreement between automatic
    derivatives (``jacfwd``/``jacrev`` of ``x``, ``grad``/``jacfwd`` of
    ``log|det|``) and central differences over the entries checked;
    ``n_grad_checked``/``n_grad_skipped`` count the entries checked and those
    skipped at domain edges and kinks.
    """

    n_points: int = 0
    n_in_domain: int = 0
    max_roundtrip_error: float = 0.0
    max_soundness_error: float = 0.0
    max_log_det_error: float = 0.0
    max_grad_error: float = 0.0
    n_grad_checked: int = 0
    n_grad_skipped: int = 0
    failures: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def _max_err(a, b):
    fa = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in tree_flatten(a)[0]] or [np.zeros(0)])
    fb = np.concatenate([np.ravel(np.asarray(v, np.float64)) for v in tree_flatten(b)[0]] or [np.zeros(0)])
    if fa.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        return float(np.max(np.abs(fa - fb) / (1.0 + np.abs(fb))))


def check_inverse(
    f,
    *example_args,
    support=None,
    context=None,
    inv: Inverse | None = None,
    key=None,
    n_points: int = 20,
    points=None,
    rtol: float = 1e-6,
    log_det_atol: float = 1e-6,
    raise_on_failure: bool = True,
    dense_points: int | None = None,
    gradients: bool = True,
    grad_points: int | None = None,
    grad_rtol: float | None = None,
    grad_step: float | None = None,
) -> InverseReport:
    """Verify soundness, PGF round trip, log|det| and derivatives of ``ppinv.inverse(f, ...)``.

    Parameters
    ----------
    f, example_args, support, context:
        As for :func:`ppinv.inverse` (``context``: known keyword arguments of ``f``,
        held at these values).
    inv:
        An inverse already built (otherwise one is built here).
    key:
        PRNG key for the random points (default ``PRNGKey(0)``).
    n_points:
        How many random inputs ``x`` to draw (inside ``support``).
    points:
        Optional list of argument tuples to check instead of random ones.
    rtol, log_det_atol:
        Tolerances (relative for values, absolute for log|det|). Use float64
        (``jax_enable_x64``) for tight tolerances.
    dense_points:
        Check log|det| against the dense Jacobian at only the first this many
        points (default: all); the dense Jacobian is the expensive part.
    gradients:
        Check ``jax.jacfwd``/``jax.jacrev`` of ``x`` and ``jax.grad``/``jax.jacfwd``
        of ``log|det|`` over ``(y, θ_continuous)`` against central differences,
        at the PGF's θ and at the perturbed θ (default ``True``).
    grad_points:
        Check gradients at only the first this many points (default: as
        ``dense_points``).
    grad_rtol, grad_step:
        Relative tolerance and relative step of the finite differences
        (default 1e-5 and 1e-5 in float64; see :func:`check_gradient`).
    raise_on_failure:
        Raise ``AssertionError`` listing the failures (default) or just report.

    Examples
    --------
    >>> import jax
    >>> import ppinv
    >>> from ppinv.testing import check_inverse
    >>> report = check_inverse(lambda a, b: a * b + a, 1.0, 1.0, n_points=3, rtol=1e-4, log_det_atol=1e-3)
    >>> report.ok
    True
    """
    inv = inv or inverse(f, *example_args, support=support, context=context)
    key = jax.random.PRNGKey(0) if key is None else key
    report = InverseReport()
    if points is None:
        keys = jax.random.split(key, n_points)
        if isinstance(support, dict):  # by argument name, as ppinv.inverse takes it
            support = normalize_support(support, arg_names_of(f, len(example_args)))
        points = [sample_inputs(k, example_args, support) for k in keys]
    grad_points = dense_points if grad_points is None else grad_points
    tkeys = jax.random.split(jax.random.fold_in(key, 1), len(points))
    flat = None
    # compiled once per check: op by op, every primitive at every new shape is a program of its own
    forward = jax.jit(lambda *x: f(*x, **(context or {})))
    perturb = jax.jit(lambda theta, k, scale: _perturb(inv, theta, k, scale))
    for i, x in enumerate(points):
        report.n_points += 1
        y = forward(*x)
        theta = inv.pgf(*x)
        x_back, ld = inv.with_log_det(y, theta)
        err = _max_err(x_back, x)
        report.max_roundtrip_error = max(report.max_roundtrip_error, err)
        if not err <= rtol:
            report.failures.append(f"point {i}: PGF round trip error {err:.3g} (x={x}, got {x_back})")
            continue
        report.n_in_domain += 1
        serr = _max_err(forward(*x_back), y)
        report.max_soundness_error = max(report.max_soundness_error, serr)
        if not serr <= rtol * 10:
            report.failures.append(f"point {i}: soundness error {serr:.3g} at the PGF's theta={theta}")
        flat = flat or _FlatInverse(inv, y)
        want_grad = gradients and (grad_points is None or i < grad_points)
        want_dense = dense_points is None or i < dense_points
        jac = None
        if want_grad:
            jac = _check_point_gradients(flat, y, theta, f"point {i}", report, grad_rtol, grad_step)
        if want_dense:
            if jac is None:
                z, disc = flat.flatten(y, theta)
                jac = flat._jit_x_jacobian(z, disc)
            if jac.shape[0] != jac.shape[1]:
                report.failures.append(
                    f"point {i}: θ dimension: the Jacobian of x over (y, θ) is {tuple(jac.shape)}, not square "
                    f"({inv.n_theta} continuous θ dims, dim X − dim Y = {jac.shape[0] - flat.ny})"
                )
                continue
            dense = _slogdet(jac)
        else:
            dense = ld
        lerr = abs(float(ld) - float(dense))
        if np.isfinite(float(ld)) or np.isfinite(float(dense)):
            report.max_log_det_error = max(report.max_log_det_error, lerr)
            if not lerr <= log_det_atol * (1 + abs(float(dense))):
                report.failures.append(f"point {i}: log|det| {float(ld):.10g} vs dense {float(dense):.10g}")
        # soundness at θ away from the PGF's: perturb the continuous leaves a little and a lot
        for scale, k in zip((0.1, 1.0), jax.random.split(tkeys[i])):
            theta2 = perturb(theta, k, scale)
            if not bool(inv.in_domain(y, theta2)):
                continue
            x2 = inv(y, theta2)
            serr = _max_err(forward(*x2), y)
            report.max_soundness_error = max(report.max_soundness_error, serr)
            if not serr <= rtol * 10:
                report.failures.append(f"point {i}: soundness error {serr:.3g} at theta={theta2}")
            elif want_grad and scale == 0.1:
                _check_point_gradients(flat, y, theta2, f"point {i} (perturbed θ)", report, grad_rtol, grad_step)
    if raise_on_failure and report.failures:
        raise AssertionError("check_inverse failed:\n  " + "\n  ".join(report.failures[:10]))
    return report


def _check_point_gradients(flat: _FlatInverse, y, theta, where, report, rtol, step):
    """Gradient checks at one point, recorded in ``report``; returns ``∂x/∂z`` (jacfwd)."""
    z, disc = flat.flatten(y, theta)
    step = default_step(flat.precision) if step is None else step
    rows, _ = finite_difference_rows(z, step)
    rows = np.concatenate([rows, np.asarray(z)[None]])  # the point itself rides along under vmap
    try:
        f0, jac_fwd, jac_rev, vals = flat.probe(z, disc, jnp.asarray(rows, z.dtype))
    except Exception as err:  # an inverse jax cannot differentiate is a defect, not a crash of the check
        report.failures.append(f"{where}: differentiating the inverse raised {type(err).__name__}: {err}")
        return None
    f0 = np.asarray(f0)
    if not np.all(np.isfinite(f0)):
        return jac_fwd[:-1]
    names = {"jacfwd": jac_fwd, "jacrev": jac_rev}
    vals = np.asarray(vals)
    res = check_gradient(lambda _rows: vals[:-1], z, f0, names, step=step, rtol=rtol, precision=flat.precision)
    if not np.allclose(vals[-1], f0, rtol=1e-9, atol=1e-12, equal_nan=True):  # vmap must give what one call gives
        report.failures.append(f"{where}: under jax.vmap (x, log|det|) = {vals[-1]}, one point at a time {f0}")
    report.n_grad_checked += res.checked
    report.n_grad_skipped += res.skipped
    report.max_grad_error = max(report.max_grad_error, res.max_error)
    nx = f0.size - 1
    for name, i, j, ad, fd in res.mismatches[:4]:
        what = "log|det|" if i == nx else f"x[{i}]"
        wrt = f"y[{j}]" if j < flat.ny else f"θ[{j - flat.ny}]"
        kind = {"jacfwd": "jax.jacfwd", "jacrev": "jax.grad" if i == nx else "jax.jacrev"}[name]
        report.failures.append(f"{where}: {kind} of {what} w.r.t. {wrt} is {ad:.10g}, finite differences {fd:.10g}")
    return jac_fwd[:-1]


def _perturb(inv, theta, key, scale=0.1):
    out = dict(theta)
    for (n, s), k in zip(inv.theta_spec.items(), jax.random.split(key, max(len(theta), 1))):
        if s.discrete:
            continue
        t = biject_to(s.support)
        u = t.inv(jnp.asarray(theta[n]))
        out[n] = t(u + scale * jax.random.normal(k, jnp.shape(u), u.dtype)).astype(s.dtype)
    return tree_map(jnp.asarray, out)
