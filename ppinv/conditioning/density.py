"""The densities a conditioned model carries: θ sites, the guarded total, replayed latents."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.primitives import Messenger

from ..errors import ConditionError
from .sites import _unwrap


class ConditionalDensity(dist.Distribution):
    """The distribution of a θ site of a conditioned model.

    Draws come from ``reference``, a proper distribution on θ's support (for
    prior predictive draws and initialisation). The log density is ``share``:
    this site's part of the exact conditional ``log p_X(g(y, θ)) + log|det|``.
    That part needs every θ, so the conditioned model sets it once all θ sites
    have their values; NumPyro reads log densities off the finished trace.
    """

    pytree_data_fields = ("reference", "share")
    pytree_aux_fields = ("_support",)

    def __init__(self, reference=None, share=None, *, event_shape=None, support=None):
        self.reference = reference
        self.share = share
        self._support = support if support is not None else reference.support
        if event_shape is None:
            event_shape = tuple(reference.batch_shape) + tuple(reference.event_shape)
        super().__init__(batch_shape=(), event_shape=tuple(event_shape), validate_args=False)

    @property
    def support(self):
        return self._support

    @property
    def has_enumerate_support(self):
        return self.reference is not None and self.reference.has_enumerate_support

    def enumerate_support(self, expand=True):
        return self.reference.enumerate_support(expand)

    def sample(self, key, sample_shape=()):
        if self.reference is None:
            raise ConditionError("an exact observation's density has no draws; it is always observed.")
        return self.reference.sample(key, sample_shape)

    def log_prob(self, value):
        if self.share is None:
            raise ConditionError(
                "the log density of a θ site of a ppinv-conditioned model was read before the model finished "
                "running; read it from a complete trace (numpyro.infer.util.log_density does)."
            )
        return self.share


@jax.custom_jvp
def _inside_or_minus_inf(total, inside):
    """``total`` where the point is ``inside`` the domain and ``total`` is finite, else −∞.

    At singular edge points (a branch point, √ at 0) log|det| is ±∞: −∞ too. The
    tangent is ``total``'s own: the gradient is exact wherever the density is finite,
    and where it is −∞ (no sampler follows it there) it is not masked, so that the
    gradient does not need the value's validity and XLA need not compute the value
    again inside the gradient's fused loops.
    """
    return jnp.where(jnp.logical_and(inside, jnp.isfinite(total)), total, -jnp.inf)


@_inside_or_minus_inf.defjvp
def _inside_or_minus_inf_jvp(primals, tangents):
    total, inside = primals
    return _inside_or_minus_inf(total, inside), tangents[0]


class _ReplayLatents(Messenger):
    """Run the original model with the solved latents; hide them and the exact observations.

    Each latent named in ``check`` is replaced by a safe point of its support where
    it lies outside (so no NaN reaches log densities or gradients); ``valid``
    records whether every such value was inside, and ``log_prob`` accumulates the
    densities of all of them. The others are in their supports by construction,
    or checked by the inverse (``Plan.support_unsure``).
    """

    def __init__(self, values, hidden, check=None):
        super().__init__()
        self.x = values
        self.hidden = hidden
        self.check = set(values) if check is None else set(check)
        self.values = {}
        self.log_prob = jnp.zeros(())
        self.valid = jnp.asarray(True)

    def process_message(self, msg):
        name = msg.get("name")
        if msg["type"] == "sample" and name in self.x:
            fn = msg["fn"]
            value = jnp.asarray(self.x[name], jnp.result_type(msg["value"]) if msg["value"] is not None else None)
            if name in self.check:
                value = self._inside_support(fn, value)
            lp = fn.log_prob(value)
            if msg.get("mask") is not None:
                lp = jnp.where(msg["mask"], lp, 0.0)
            if msg.get("scale") is not None:
                lp = msg["scale"] * lp
            self.log_prob = self.log_prob + jnp.sum(lp)
            self.values[name] = value
            msg["value"] = value
            msg["stop"] = True
        elif name in self.hidden and msg["type"] in ("sample", "deterministic"):
            msg["stop"] = True
            if msg["type"] == "sample" and msg["value"] is None:
                msg["value"] = _unwrap(msg["fn"]).v

    def _inside_support(self, fn, value):
        """``value`` where it lies in ``fn``'s support, else a safe point of it (noted in ``valid``)."""
        ok = jnp.asarray(fn.support(value))
        event_dim = getattr(fn, "event_dim", 0)
        if event_dim and ok.ndim >= event_dim and ok.ndim == jnp.ndim(value):
            ok = jnp.all(ok, axis=tuple(range(-event_dim, 0)))
        self.valid = jnp.logical_and(self.valid, jnp.all(ok))
        safe = jnp.broadcast_to(jnp.asarray(fn.support.feasible_like(value), value.dtype), value.shape)
        okb = jnp.reshape(ok, ok.shape + (1,) * (value.ndim - ok.ndim)) if ok.ndim < value.ndim else ok
        return jnp.where(okb, value, safe)
