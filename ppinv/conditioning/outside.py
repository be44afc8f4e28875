"""What the handlers around a conditioned model do to it: conditions and substitutions set
from outside (``handlers.condition`` / ``substitute`` wrapping ``cm``) are read here."""

from __future__ import annotations

from contextlib import contextmanager

from numpyro import handlers
from numpyro import primitives as _primitives


@contextmanager
def _outside_handlers():
    """Run with an empty NumPyro handler stack (restored afterwards)."""
    stack = _primitives._PYRO_STACK
    saved = list(stack)
    del stack[:]
    try:
        yield
    finally:
        stack[:] = saved


def _conditioned_from_outside(names):
    """Values that ``handlers.condition`` messengers around the call give for ``names``.

    Those names are sites of the original model that the conditioned model does not
    sample (solved latents, exact observations) or samples as θ: NumPyro would ignore
    the condition or fix θ instead of the latent, so the model reads it itself.
    Innermost first, so the outermost value wins, as in NumPyro.
    """
    found = {}
    for handler in _primitives._PYRO_STACK:
        if isinstance(handler, handlers.condition) and isinstance(getattr(handler, "data", None), dict):
            found.update({n: v for n, v in handler.data.items() if n in names and v is not None})
    return found


def _substituted_from_outside(name):
    """The value a ``substitute`` around the call gives for the model's site ``name`` (or ``None``).

    A ``substitute_fn`` is asked about a sample site of that name; one that cannot
    answer for a site it has not seen (an init strategy reading the site's
    distribution) is taken to give nothing.
    """
    probe = {"type": "sample", "name": name, "fn": None, "args": (), "kwargs": {}, "value": None,
             "is_observed": False, "infer": {}, "scale": None, "mask": None, "cond_indep_stack": []}
    value = None
    for handler in _primitives._PYRO_STACK:
        if not isinstance(handler, handlers.substitute):
            continue
        data, fn = getattr(handler, "data", None), getattr(handler, "substitute_fn", None)
        if data is not None and name in data:
            value = data[name]
        elif fn is not None:
            try:
                got = fn(dict(probe))
            except Exception:
                got = None
            value = got if got is not None else value
    return value
