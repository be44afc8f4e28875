"""Softmax heads: ``softmax(b)`` or ``log_softmax(b)`` observed on some entries, solved for the logits.

``c = softmax(b)`` (``jax.nn.softmax``, with its shift by ``stop_gradient(max b)``, or written
out as ``exp(b) / Σ exp(b)``; ``jax.nn.log_softmax`` or ``b − logsumexp(b)``) does not change when a constant is added to every logit, and its
entries sum to one. So no relation can be solved alone: ``exp`` is under a division by its own
sum, and the shift depends on the logits it shifts. As a whole the block has a closed form in
the log shares ``log c`` (``ℓ`` itself for ``log_softmax``): with ``O`` the observed entries,
``rest = 1 − Σ_O c`` the share of the others,

* every share but one observed (``|O| = K − 1``): the missing share is ``rest`` and
  ``b = log c̃ + t``, the logits up to the shift ``t``; ``t`` is θ when no logit is known, or
  ``t = b_r − log c̃_r`` when one logit ``b_r`` is known (TFP's SoftmaxCentered pads a 0);
* the observed entries are exactly the unknown logits, the others known (``concat(z, w)``
  with ``w`` known): ``log Σ exp b = logsumexp(b_known) − log rest``, so
  ``b_O = log c_O + logsumexp(b_known) − log rest``.

Known logits are the known operands of a ``pad`` or a ``concatenate`` that builds ``b``. The
map from the observed shares (and ``t``) to the unknown logits has

    log|det| = −Σ_O log c_i − log rest      (softmax; −log rest for log_softmax: dc = c dℓ)

in every case (the dropped share and the reference logit only shear the coordinates).
Domain: every share positive (``Σ_O c < 1``).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax
from jax.scipy.special import logsumexp
from numpyro.distributions import constraints

from ..rules._base import safe_where
from ..theta import ThetaSpec
from .base import Strategy, block_solve
from .cones import observed_range, pending_definer, through_broadcast


class SoftmaxHeads(Strategy):
    name = "softmax"

    def candidates(self, state):
        for anchor in state.stalled():
            found = _softmax_head(state, anchor)
            if found is not None:
                yield block_solve(SoftmaxHeadBlock(anchor, *found, state.names), hints=("softmax_shift",))


# -- matching ------------------------------------------------------------------------------------
def _sum_of_exp(state, s):
    """``i`` when ``s = Σ exp(i)`` (pending relations)."""
    total = pending_definer(state, s, lax.reduce_sum_p)
    if total is None or tuple(total.params["axes"]) != (0,):
        return None
    e = pending_definer(state, total.ins[0], lax.exp_p)
    return e.ins[0] if e is not None else None


def _normalised(state, c):
    """``(kind, i)``: ``c = exp(i) / Σ exp(i)`` (``"softmax"``) or ``c = i − log Σ exp(i)`` (``"log_softmax"``)."""
    d = state.definer.get(c)
    if d is None or d not in state.pending or len(d.ins) != 2 or d.ins[0].shape != c.shape:
        return None
    if d.prim is lax.div_p:
        e = pending_definer(state, d.ins[0], lax.exp_p)
        i = _sum_of_exp(state, through_broadcast(state, d.ins[1]))
        return ("softmax", i) if e is not None and i is e.ins[0] else None
    if d.prim is lax.sub_p:
        log, shift = _log_and_shift(state, through_broadcast(state, d.ins[1]))
        log_eqn = pending_definer(state, log, lax.log_p)
        if log_eqn is None:
            return None
        total = through_broadcast(state, log_eqn.ins[0])
        magnitude = pending_definer(state, total, lax.abs_p)  # logsumexp's log|Σ|: the sum is positive
        i = _sum_of_exp(state, magnitude.ins[0] if magnitude is not None else total)
        if shift is None:  # jax.nn.log_softmax: (b − m) − log Σ exp(b − m)
            return ("log_softmax", i) if i is d.ins[0] else None
        # b − logsumexp(b), with logsumexp(b) = log Σ exp(b − m) + m
        same_shift = i is not None and _shift_of(state, i) is through_broadcast(state, shift)
        return ("log_softmax", i) if same_shift and _unshifted(state, i) is d.ins[0] else None
    return None


def _log_and_shift(state, v):
    """``(log term, m)`` of ``v = log(…) + m`` (logsumexp adds its shift back), else ``(v, None)``."""
    d = pending_definer(state, v, lax.add_p)
    if d is None:
        return v, None
    for k in (0, 1):
        if pending_definer(state, d.ins[k], lax.log_p) is not None and d.ins[1 - k].size == 1:
            return d.ins[k], d.ins[1 - k]
    return v, None


def _shift_of(state, i):
    """The scalar ``m`` of ``i = b − m`` (through its broadcasts), else ``None``."""
    d = pending_definer(state, i, lax.sub_p)
    return through_broadcast(state, d.ins[1]) if d is not None and d.ins[1].size == 1 else None


def _unshifted(state, i):
    """The logits ``b`` of ``i = b − shift`` with a shift common to every entry (``max b``), else ``i``."""
    d = pending_definer(state, i, lax.sub_p)
    if d is not None and d.ins[0].shape == i.shape and d.ins[1].size == 1 and not state.is_known(d.ins[0]):
        return d.ins[0]
    return i


def _split_logits(state, b):
    """``(leaf, (lo, hi), known)``: the unknown logits ``b[lo:hi]`` as the variable ``leaf``, and the
    known ones as ``[(lo, hi, V)]`` (a ``pad`` value fills its range, a ``concatenate`` piece is its range)."""
    size = b.shape[0]
    pad = pending_definer(state, b, lax.pad_p)
    if pad is not None and state.is_known(pad.ins[1]) and not state.is_known(pad.ins[0]):
        ((lo, hi, interior),) = pad.params["padding_config"]
        lo, hi = int(lo), int(hi)
        if interior == 0 and lo >= 0 and hi >= 0:
            known = [(0, lo, pad.ins[1]), (size - hi, size, pad.ins[1])]
            return pad.ins[0], (lo, size - hi), [k for k in known if k[1] > k[0]]
    cat = pending_definer(state, b, lax.concatenate_p)
    if cat is not None and cat.params["dimension"] == 0:
        unknown = [k for k, v in enumerate(cat.ins) if not state.is_known(v)]
        if len(unknown) == 1:
            ends, at = [], 0
            for v in cat.ins:
                ends.append((at, at + v.shape[0], v))
                at += v.shape[0]
            lo, hi, leaf = ends[unknown[0]]
            return leaf, (lo, hi), [e for k, e in enumerate(ends) if k != unknown[0]]
    return b, (0, size), []


def _softmax_head(state, anchor):
    """``(kind, leaf, unknown range, known logits, observed range)`` of a solvable softmax head."""
    observed = observed_range(state, anchor)
    if observed is None:
        return None
    c, start, stop = observed
    if any(e is not anchor and e in state.pending and state.is_known(e.outs[0]) for e in state.users.get(c, ())):
        return None  # the shares are observed elsewhere too: this block would not settle them alone
    found = _normalised(state, c)
    if found is None or found[1] is None:
        return None
    kind, i = found
    b = _unshifted(state, i)
    if state.is_known(b) or b.shape != c.shape:
        return None
    leaf, unknown, known = _split_logits(state, b)
    n_known = sum(hi - lo for lo, hi, _ in known)
    every_share_but_one = stop - start == c.shape[0] - 1
    if (start, stop) == unknown and n_known:
        return kind, leaf, unknown, known, (start, stop)
    if every_share_but_one and n_known <= 1:
        return kind, leaf, unknown, known, (start, stop)
    return None  # a θ count that does not match (several known logits, few shares observed)


# -- the block -----------------------------------------------------------------------------------
class SoftmaxHeadBlock:
    """The unknown logits from the observed shares of their softmax (see the module)."""

    def __init__(self, anchor, kind, leaf, unknown, known, observed, names):
        self.anchors, self.leaves = [anchor], [leaf]
        self.kind, self.unknown, self.known, self.observed = kind, unknown, known, observed
        self.size = anchor.ins[0].shape[0]
        self.known_inputs = list(dict.fromkeys(v for _, _, v in known))
        self.theta = ()
        if not known:
            self.theta = (ThetaSpec((), leaf.dtype, constraints.real, "value", f"shift of the logits {names.get(leaf, repr(leaf))}"),)
        self.description = (f"{kind} head: logits {names.get(leaf, repr(leaf))} from {observed[1] - observed[0]} of "
                            f"{self.size} shares" + ("" if known else " and their shift (θ)"))

    def _log_shares(self, o):
        """``(log c_O, log rest, ok)`` of the observed entries, safe outside the domain."""
        if self.kind == "log_softmax":
            lse = logsumexp(o)
            ok = lse < 0
            log_rest = jnp.log(-jnp.expm1(safe_where(ok, lse, -1.0)))
            return o, log_rest, ok & jnp.all(jnp.isfinite(o))
        total = jnp.sum(o)
        ok = jnp.all(o > 0) & (total < 1)
        return jnp.log(safe_where(ok, o, 0.5 / o.size)), jnp.log1p(-safe_where(ok, total, 0.5)), ok

    def _known_logits(self, known_env):
        return [(lo, hi, jnp.broadcast_to(_read(known_env, v), (hi - lo,))) for lo, hi, v in self.known]

    def solve(self, known_env, observed, theta):
        (o,) = observed
        log_c, log_rest, ok = self._log_shares(o)
        start, stop = self.observed
        known = self._known_logits(known_env)
        if (start, stop) == self.unknown and known:
            # log Σ exp b from the known logits and the share they hold together
            log_normaliser = logsumexp(jnp.concatenate([k for _, _, k in known])) - log_rest
            logits = log_c + log_normaliser
        else:
            # every share known: the logits up to their shift, fixed by θ or by the one known logit
            full = jnp.concatenate([log_rest[None], log_c]) if start == 1 else jnp.concatenate([log_c, log_rest[None]])
            if known:
                ((r, _, b_r),) = known
                shift = b_r[0] - full[r]
            else:
                (shift,) = theta
            lo, hi = self.unknown
            logits = (full + shift)[lo:hi]
        log_det = -log_rest if self.kind == "log_softmax" else -jnp.sum(log_c) - log_rest
        return [logits], log_det, ok

    def pgf(self, known_env, leaves):
        (b,) = leaves  # θ only when every logit is unknown: b = log softmax(b) + logsumexp(b)
        return (logsumexp(b),)


def _read(known_env, v):
    return v.value if v.is_const else known_env[v]
