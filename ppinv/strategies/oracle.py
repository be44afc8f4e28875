"""The property a random program must have (:func:`check_program`, :func:`check_model_program`):
a clear refusal, or an inverse that passes every check; failures classified (:class:`FuzzOutcome`)."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import FuzzFailure
from .program import RandomProgram


@dataclass
class FuzzOutcome:
    """``status`` is ``"inverted"`` (all checks passed), ``"refused"`` (a clear InversionError),
    ``"skipped"`` (no random point inside the program's own domain) or ``"failed"``;
    ``failure`` then names the class (``"unsound"``, ``"round trip"``, ``"log|det|"``,
    ``"gradient"``, ``"θ dimension"``, ``"vmap"``, ``"crash while building: TypeError"``, ...)."""

    status: str
    detail: str = ""
    failure: str = ""


def _classify(failures) -> str:
    text = failures[0]
    if "θ dimension" in text:
        return "θ dimension"
    if "under jax.vmap" in text:
        return "vmap"
    if "finite differences" in text or "differentiating" in text:
        return "gradient"
    if "soundness" in text:
        return "unsound"
    if "round trip" in text:
        return "round trip"
    if "log|det|" in text:
        return "log|det|"
    return "other"


def _crash(where, err):
    tb = traceback.extract_tb(err.__traceback__)
    inside = [f for f in tb if "/ppinv/" in f.filename and "/ppinv/testing/" not in f.filename]
    site = f" at {inside[-1].filename.rsplit('/ppinv/', 1)[1]}:{inside[-1].lineno} ({inside[-1].name})" if inside else ""
    return f"crash {where}: {type(err).__name__}", f"{type(err).__name__}: {str(err)[:300]}{site}"


def _point_probe(prog, inv):
    """``(x, θ) ↦ (y, ∂y/∂x, inv(y, θ), ∂inv(y, θ)/∂y)`` compiled once per program."""
    from jax.flatten_util import ravel_pytree

    def probe(x, theta):
        x_flat, x_unravel = ravel_pytree(tuple(x))
        y_of = lambda v: ravel_pytree(tuple(prog.fn(*x_unravel(v))))[0]  # noqa: E731
        y_flat = y_of(x_flat)
        y_unravel = ravel_pytree(tuple(prog.fn(*x)))[1]
        x_of = lambda v: ravel_pytree(inv(y_unravel(v), theta))[0]  # noqa: E731
        return y_flat, jax.jacfwd(y_of)(x_flat), x_of(y_flat), jax.jacfwd(x_of)(y_flat)

    return jax.jit(probe)


def _usable(probe, x, theta, rtol):
    """Whether ``x`` tests the inverse: ``f`` has full rank there, and recovering ``x``
    from ``y`` is well posed in floating point.

    Where ``∂f/∂x`` has rank below ``dim Y`` (a clip that is flat over the input's
    whole support, so an output is constant), ``y`` is a critical value: the
    parametric inverse of a full-rank map need not reach it, and observed data
    never lands there. The relative condition number ``κ = ‖∂x/∂y‖ ‖y‖ / ‖x‖``
    bounds how much any method loses: ``tanh`` of 16 is 1 − 3e-14, and no inverse
    recovers 16 from it to better than ``κ · eps ≈ 1e-2``; points where ``κ · eps``
    exceeds the tolerance test the arithmetic, not the inverse. Returns ``None``
    where ``y`` is outside the inverse's domain (for the round trip check to judge).
    """
    from jax.flatten_util import ravel_pytree

    y_flat, jac_f, x_back, jac = probe(tuple(x), theta)
    sv = np.linalg.svd(np.asarray(jac_f, np.float64), compute_uv=False)
    if sv.size and not sv[min(jac_f.shape) - 1] > 1e-9 * max(sv[0], 1e-300) or jac_f.shape[0] > jac_f.shape[1]:
        return False
    if not (bool(jnp.all(jnp.isfinite(x_back))) and bool(jnp.all(jnp.isfinite(jac)))):
        return None
    x_flat = ravel_pytree(tuple(x))[0]
    kappa = float(jnp.linalg.norm(jac, 2) * jnp.linalg.norm(y_flat) / jnp.maximum(jnp.linalg.norm(x_flat), 1e-300))
    return bool(jnp.isfinite(kappa)) and kappa * float(jnp.finfo(y_flat.dtype).eps) < rtol / 10


def _saturated(fn, x, y):
    """``y = f(x)`` unchanged when ``x`` is nudged: ``f`` has saturated in floating point (tanh(25) == 1.0)."""
    nudged = fn(*[xi * (1 + 1e-6) + 1e-9 for xi in x])
    return all(bool(jnp.all(a == b)) for a, b in zip(nudged, y))


def _points(prog, inv, seed, n_points, rtol):
    """Random inputs inside the supports where f is finite and the inversion is well posed."""
    from ppinv.testing import sample_inputs

    points = []
    probe = _point_probe(prog, inv)
    for k in jax.random.split(jax.random.PRNGKey(seed), n_points * 4):
        x = sample_inputs(k, prog.example_args, prog.support)
        y = prog.forward(*x)
        if not all(bool(jnp.all(jnp.isfinite(o))) and float(jnp.max(jnp.abs(o))) < 1e6 for o in y):
            continue
        theta = inv.pgf(*x)
        good = _usable(probe, x, theta, rtol)
        if good or (good is None and not _saturated(prog.forward, x, y)):
            points.append(x)
        if len(points) == n_points:
            break
    return points


def check_program(prog: RandomProgram, seed: int = 0, n_points: int = 2, rtol=1e-7, log_det_atol=1e-6,
                  gradients: bool = True, raise_on_failure: bool = True) -> FuzzOutcome:
    """Invert ``prog`` and verify it, or accept a clear refusal.

    Anything else is a failure: raised as :class:`FuzzFailure` (the default, so
    hypothesis shrinks it) or returned with ``status="failed"`` and its class.
    """
    import ppinv
    from ppinv.testing import check_inverse

    outcome = _check(prog, seed, n_points, rtol, log_det_atol, gradients, ppinv, check_inverse)
    if outcome.status == "failed" and raise_on_failure:
        raise FuzzFailure(f"{outcome.failure}: {outcome.detail}\n{prog}")
    return outcome


def _check(prog, seed, n_points, rtol, log_det_atol, gradients, ppinv, check_inverse):
    try:
        inv = ppinv.inverse(prog.fn, *prog.example_args, support=prog.support)
    except ppinv.InversionError as err:
        msg = str(err)
        if len(msg) <= 40:
            return FuzzOutcome("failed", msg, "refusal without an explanation")
        return FuzzOutcome("refused", type(err).__name__)
    except Exception as err:  # noqa: BLE001 - any other exception is what the fuzzer looks for
        return FuzzOutcome("failed", *reversed(_crash("while building", err)))
    try:
        points = _points(prog, inv, seed, n_points, rtol)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("in the PGF or the inverse", err)))
    if not points:
        return FuzzOutcome("skipped", "no finite points")
    try:
        report = check_inverse(prog.forward, *prog.example_args, inv=inv, points=points, rtol=rtol,
                               log_det_atol=log_det_atol, raise_on_failure=False, dense_points=1,
                               gradients=gradients)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while checking", err)))
    if report.failures:
        return FuzzOutcome("failed", f"{report.failures[:3]}\n{inv.describe()}", _classify(report.failures))
    return FuzzOutcome("inverted")


def check_model_program(prog: RandomProgram, seed: int = 0, rtol=1e-6, raise_on_failure: bool = True) -> FuzzOutcome:
    """``prog`` as a NumPyro model (:meth:`RandomProgram.model_source`), conditioned exactly
    on its outputs simulated at a random point inside the supports.

    Either :func:`ppinv.condition` refuses (an ``InversionError`` or
    ``ConditionError``), or the conditioned model is sound (the original model,
    run on the latents the conditioned model reports, reproduces the data), the
    point the data came from is a valid start (its θ from the PGF has a finite
    potential), and the potential's gradient agrees with finite differences
    (:func:`ppinv.testing.check_conditioned`). Constants of kind ``argument``
    are passed as model arguments, so traced known operands are exercised.
    Programs that ``ppinv.inverse`` refuses are counted as refused.
    """
    import ppinv
    from ppinv.testing import check_conditioned

    outcome, data = _check_model(prog, seed, rtol, ppinv, check_conditioned)
    if outcome.status == "failed" and raise_on_failure:
        raise FuzzFailure(f"{outcome.failure}: {outcome.detail}\n{prog.model_source(data)}")
    return outcome


def _check_model(prog, seed, rtol, ppinv, check_conditioned):
    try:
        inv = ppinv.inverse(prog.fn, *prog.example_args, support=prog.support)
    except ppinv.InversionError as err:
        return FuzzOutcome("refused", type(err).__name__), None
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while building", err))), None
    try:
        points = _points(prog, inv, seed, 1, 1e-7)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("in the PGF or the inverse", err))), None
    if not points:
        return FuzzOutcome("skipped", "no finite points"), None
    x = points[0]
    data = {f"y{k}": v for k, v in enumerate(prog.forward(*x))}
    latents = {f"v{i}": v for i, v in enumerate(x)}
    margs = prog.model_arguments
    try:
        cm = ppinv.condition(prog.model, data)
        cm.plan(*margs)
    except (ppinv.InversionError, ppinv.ConditionError) as err:
        return FuzzOutcome("refused", f"condition: {type(err).__name__}: {str(err)[:200]}"), data
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("while conditioning", err))), data
    try:
        report = check_conditioned(cm, args=margs, latents=[latents], n_points=2, rtol=rtol, raise_on_failure=False)
    except Exception as err:  # noqa: BLE001
        return FuzzOutcome("failed", *reversed(_crash("checking the conditioned model", err))), data
    if report.failures:
        text = report.failures[0]
        cls = ("model: unsound" if "unsound" in text else "model: no valid start" if "no start" in text
               else "model: gradient")
        return FuzzOutcome("failed", f"{report.failures[:3]}", cls), data
    return FuzzOutcome("inverted"), data
