"""What the handlers around a conditioned model do to it: conditions and substitutions set
from outside (``handlers.condition`` / ``substitute`` wrapping ``cm``) are read here.

Only NumPyro's public effect protocol is used: the handlers are asked with a
``control_flow`` message, the one NumPyro's own ``scan`` and ``cond`` send to learn
the conditions and substitutions around them, and private runs are hidden from the
caller's handlers with ``handlers.block``.
"""

from __future__ import annotations

from contextlib import contextmanager

from numpyro import handlers
from numpyro.primitives import apply_stack


@contextmanager
def _outside_handlers():
    """Run hidden from the handlers around the call (their traces, substitutions, plates...).

    ``block`` stops every message at this point of the stack, so the handlers inside
    (ppinv's own trace and seed) see the sites and the caller's never do.
    """
    with handlers.block(hide_fn=lambda msg: True):
        yield


def _outside_stack():
    """The ``(kind, data_or_fn)`` pairs the surrounding handlers declare, innermost first.

    ``kind`` is ``"condition"`` or ``"substitute"``; the second item is a dict of
    values by site name or a function of a site message. The probe carries a value
    already, so no handler runs its function or draws a PRNG key for it, and it has no
    name, so no trace records it.
    """
    probe = {"type": "control_flow", "fn": lambda: None, "args": (), "value": (),
             "kwargs": {"rng_key": None, "substitute_stack": []}}
    return list(apply_stack(probe)["kwargs"]["substitute_stack"])


def _site_probe(name):
    return {"type": "sample", "name": name, "fn": None, "args": (), "kwargs": {}, "value": None,
            "is_observed": False, "infer": {}, "scale": None, "mask": None, "cond_indep_stack": []}


def _ask(data_or_fn, name):
    """The value a handler's data or function gives for the site ``name`` (``None`` if none).

    A function that cannot answer for a site it has not seen (an init strategy reading
    the site's distribution) is taken to give nothing.
    """
    if isinstance(data_or_fn, dict):
        return data_or_fn.get(name)
    try:
        return data_or_fn(_site_probe(name))
    except Exception:
        return None


def _conditioned_from_outside(names):
    """Values that ``handlers.condition`` messengers around the call give for ``names``.

    Those names are sites of the original model that the conditioned model does not
    sample (solved latents, exact observations) or samples as θ: NumPyro would ignore
    the condition or fix θ instead of the latent, so the model reads it itself.
    Innermost first, so the outermost value wins, as in NumPyro.
    """
    found = {}
    for kind, data_or_fn in _outside_stack():
        if kind != "condition" or not isinstance(data_or_fn, dict):
            continue
        found.update({n: v for n, v in data_or_fn.items() if n in names and v is not None})
    return found


def _substituted_from_outside(name):
    """The value a ``substitute`` around the call gives for the model's site ``name`` (or ``None``)."""
    value = None
    for kind, data_or_fn in _outside_stack():
        if kind == "substitute":
            got = _ask(data_or_fn, name)
            value = got if got is not None else value
    return value
