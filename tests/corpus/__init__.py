"""A corpus of invertible programs written by other projects, and how ppinv fares on each.

:mod:`tests.corpus.programs` holds the programs; :func:`check_program` runs
ppinv on one and classifies the outcome, shared by ``tests/test_corpus.py``
and ``experiments/corpus_report.py``:

* ``"inverted"`` — ppinv built an inverse and it passed every check:
  :func:`ppinv.testing.check_inverse` (soundness at the PGF's θ and away from
  it, PGF round trip, log|det| against the dense Jacobian, ``jacfwd``/``jacrev``
  against central differences) and :func:`grad_of_inverse_error` (``jax.grad``
  of a scalar of the inverse against central differences, computed here);
* ``"refused"`` — ppinv raised :class:`ppinv.errors.InversionError`;
* ``"wrong"`` — ppinv built an inverse that failed a check (a silent wrong answer);
* ``"error"`` — ppinv raised anything else (a crash, or another error type).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from numpyro.distributions import constraints

import ppinv
from ppinv.errors import InversionError
from ppinv.testing import check_inverse, sample_inputs

__all__ = ["Outcome", "check_program", "grad_of_inverse_error", "draw_points"]


@dataclass
class Outcome:
    status: str  # "inverted" | "refused" | "wrong" | "error"
    message: str = ""
    error_type: str = ""
    n_theta: int | None = None
    failures: list = field(default_factory=list)
    seconds: float = 0.0


def _supports(program):
    support = program.support
    if support is None:
        return [None] * len(program.args)
    if not isinstance(support, (list, tuple)):
        return [support]
    return list(support)


def _jittered(program, key):
    """The example args moved multiplicatively (additively where an entry is 0): physical scales kept."""
    leaves, tree = jax.tree_util.tree_flatten(tuple(program.args))
    out = []
    for k, leaf in zip(jax.random.split(key, len(leaves)), leaves):
        a = jnp.asarray(leaf, jnp.float64)
        z = program.jitter * jax.random.normal(k, a.shape, a.dtype)
        out.append(jnp.where(a == 0, z, a * jnp.exp(z)))
    return jax.tree_util.tree_unflatten(tree, out)


def _inside(x, supports):
    for arg, sup in zip(x, supports):
        if sup is not None and not bool(jnp.all(sup.check(jnp.asarray(arg)))):
            return False
    return True


def draw_points(program, n_points, key):
    """The points to check at: the program's own, or draws inside its supports where ``f`` is finite."""
    if program.points is not None:
        dtypes = [np.dtype(jnp.result_type(a)) for a in program.args]  # strong dtypes, not Python's weak ones
        return [tuple(jnp.asarray(a, d) for a, d in zip(pt, dtypes)) for pt in program.points[:n_points]]
    supports = _supports(program)
    fn = jax.jit(program.fn)
    points = []
    for k in jax.random.split(key, 8 * n_points):
        if program.jitter is None:
            x = sample_inputs(k, program.args, supports, scale=program.scale)
        else:
            x = _jittered(program, k)
        y, _ = ravel_pytree(fn(*x))
        if _inside(x, supports) and bool(jnp.all(jnp.isfinite(y))):
            points.append(x)
        if len(points) == n_points:
            break
    return points


def _continuous_leaves(inv, theta):
    """θ leaves that central differences may move: continuous and not simplex-valued."""
    return [n for n, s in inv.theta_spec.items() if not s.discrete and s.support is not constraints.simplex]


def grad_of_inverse_error(inv, x, key, *, step=1e-5):
    """Largest relative gap between ``jax.grad`` and central differences of ``w·x + log|det|``.

    ``x = inv(y, θ)`` as a function of ``(y, θ_continuous)`` at ``y = f(x)``,
    ``θ = pgf(x)``; ``w`` is a fixed random vector, so every entry of ``x`` and
    the density term contribute. The step is relative to each coordinate; a
    coordinate is skipped where a difference is not finite (the step left the
    domain). Returns ``(error, n_checked)``.
    """
    y = inv.forward(*x)
    theta = inv.pgf(*x)
    names = _continuous_leaves(inv, theta)
    y_flat, y_unravel = ravel_pytree(y)
    dtype = np.dtype(y_flat.dtype)  # a strong dtype: an empty θ would otherwise promote weak float64 to float32
    t_flat, t_unravel = ravel_pytree({n: jnp.asarray(theta[n], dtype) for n in names})
    z0 = jnp.concatenate([y_flat.astype(dtype), t_flat.astype(dtype)])
    ny = y_flat.size
    x_flat0 = ravel_pytree(x)[0]
    w = jax.random.normal(key, x_flat0.shape, z0.dtype)

    def scalar(z):
        th = dict(theta)
        th.update({n: v.astype(inv.theta_spec[n].dtype) for n, v in t_unravel(z[ny:]).items()})
        xs, ld = inv.with_log_det(y_unravel(z[:ny]), th)
        return jnp.dot(w, ravel_pytree(xs)[0].astype(z.dtype)) + ld

    value_and_grad = jax.jit(jax.value_and_grad(scalar))  # one compilation serves both
    grad = np.asarray(value_and_grad(z0)[1])
    z_np = np.asarray(z0)
    worst, checked = 0.0, 0
    for j in range(z_np.size):
        h = step * (abs(z_np[j]) if abs(z_np[j]) > 1e-8 else 1.0)
        gaps = []
        for hh in (h, h / 8):  # the smaller step rescues strongly curved directions
            e = np.zeros_like(z_np)
            e[j] = hh
            fp = float(value_and_grad(jnp.asarray(z_np + e))[0])
            fm = float(value_and_grad(jnp.asarray(z_np - e))[0])
            if np.isfinite(fp) and np.isfinite(fm):
                fd = (fp - fm) / (2 * hh)
                gaps.append(abs(grad[j] - fd) / (1.0 + abs(fd)))
        if gaps:
            checked += 1
            worst = max(worst, min(gaps))
    if not np.all(np.isfinite(grad)):
        worst = float("inf")
    return worst, checked


def check_program(program, *, n_points=3, dense_points=1, grad_points=1, key=None, grad_rtol=1e-5) -> Outcome:
    """Run ppinv on ``program`` and classify what happened (see the module docstring)."""
    key = jax.random.PRNGKey(0) if key is None else key
    start = time.perf_counter()
    out = Outcome("error")
    try:
        inv = ppinv.inverse(program.fn, *program.args, support=program.support)
    except InversionError as err:
        out.status, out.message, out.error_type = "refused", str(err), type(err).__name__
    except Exception as err:  # noqa: BLE001 - any other exception is what the corpus records as a crash
        out.message, out.error_type = f"{type(err).__name__}: {err}", type(err).__name__
    else:
        out.n_theta = inv.n_theta
        _check_built(program, inv, out, n_points, dense_points, grad_points, key, grad_rtol)
    out.seconds = time.perf_counter() - start
    return out


def _check_built(program, inv, out, n_points, dense_points, grad_points, key, grad_rtol):
    try:
        points = draw_points(program, n_points, key)
        if not points:
            out.status, out.failures = "wrong", ["no draw inside the supports gave a finite output"]
            return
        report = check_inverse(
            program.fn, *program.args, inv=inv, points=points, rtol=program.rtol,
            log_det_atol=program.log_det_atol, dense_points=dense_points, grad_points=grad_points,
            raise_on_failure=False,
        )
        out.failures = list(report.failures)
        if report.n_in_domain == 0:
            out.failures.append("no point survived the PGF round trip")
        err, _ = grad_of_inverse_error(inv, points[0], jax.random.fold_in(key, 7))
        if not err <= grad_rtol:
            out.failures.append(f"jax.grad of w·x + log|det| differs from central differences by {err:.3g}")
    except Exception as err:  # noqa: BLE001 - a crash while checking a built inverse is a wrong answer
        out.failures.append(f"checking raised {type(err).__name__}: {err}")
    out.status = "wrong" if out.failures else "inverted"
    out.message = "; ".join(out.failures[:3])
