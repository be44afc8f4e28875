"""The rule table: layers of rules, images and slots keyed by JAX primitives, and the helpers
that fill them (``register_rule``, ``overlay``, ``deflinear``, ``defmonotone``). The rule modules
register into :data:`DEFAULT_RULES`; see the package docstring."""

from __future__ import annotations

import contextlib
import contextvars

from .._compat import call_name
from .._monotone import default_jets, monotone_bounds, unary_jet
from .._poly import Rational, default_rationals
from ._base import (
    Linearity,
)


class RuleTable:
    """One layer of rules, with an optional parent layer to fall back to.

    Examples
    --------
    >>> from jax import lax
    >>> table = RuleTable()
    >>> @table.register(lax.exp_p)
    ... def my_exp_rule(pattern):
    ...     return None            # decline: fall back to the layer below
    """

    def __init__(self, parent: "RuleTable | None" = None, name: str = ""):
        self.parent = parent
        self.name = name
        self._rules: dict = {}
        self._functions: dict = {}
        self._images: dict = {}
        self._slots: dict = {}  # slot name -> {primitive: value}

    def register(self, primitive, rule=None, *, image=None):
        """Add ``rule`` for ``primitive`` (usable as a decorator). Newer rules are tried first."""

        def add(r):
            self._rules.setdefault(primitive, []).insert(0, r)
            img = image or getattr(r, "image", None)
            if img is not None:
                self._images[primitive] = img
            return r

        return add(rule) if rule is not None else add

    def unregister(self, primitive, rule) -> None:
        """Remove ``rule`` from this layer's rules for ``primitive`` (a ``ValueError`` if it is not there)."""
        rules = self._rules.get(primitive, [])
        if rule not in rules:
            raise ValueError(f"{rule!r} is not registered for {primitive} in the {self.name or 'unnamed'} layer")
        rules.remove(rule)
        if not rules:
            del self._rules[primitive]
            self._images.pop(primitive, None)

    def register_function(self, name: str, rule):
        """Add a rule for calls to the ``jit``/``custom_jvp`` function called ``name``."""
        self._functions[name] = rule
        return rule

    def define(self, slot: str, primitive, value):
        """Fill ``slot`` (one of :data:`SLOTS`) of ``primitive`` in this layer; returns ``value``."""
        self._slots.setdefault(_slot_name(slot), {})[primitive] = value
        return value

    def undefine(self, slot: str, primitive) -> None:
        """Empty ``slot`` of ``primitive`` in this layer (a ``ValueError`` if it is empty here)."""
        own = self._slots.get(_slot_name(slot), {})
        if primitive not in own:
            raise ValueError(f"no {slot} slot for {primitive} in the {self.name or 'unnamed'} layer")
        del own[primitive]

    def slot(self, slot: str, primitive):
        """What ``slot`` holds for ``primitive``, innermost layer first (``None``: empty everywhere)."""
        own = self._slots.get(_slot_name(slot), {})
        if primitive in own:
            return own[primitive]
        return self.parent.slot(slot, primitive) if self.parent else None

    def rules_for(self, primitive) -> list:
        own = self._rules.get(primitive, [])
        return own + (self.parent.rules_for(primitive) if self.parent else [])

    def function_rule(self, name):
        if name in self._functions:
            return self._functions[name]
        return self.parent.function_rule(name) if self.parent else None

    def image_rule(self, primitive):
        """``image(eqn, input_supports) -> constraint | None``: a superset of where the
        primitive's output lies (``None``: unknown), innermost layer first."""
        if primitive in self._images:
            return self._images[primitive]
        return self.parent.image_rule(primitive) if self.parent else None

    def image_rules(self) -> dict:
        """Every primitive with an image rule here or below, with the rule in effect."""
        below = self.parent.image_rules() if self.parent else {}
        return {**below, **self._images}

    def has_rules(self, primitive) -> bool:
        return bool(self.rules_for(primitive))

    def layered(self, name="overlay") -> "RuleTable":
        """A new empty layer on top of this one."""
        return RuleTable(parent=self, name=name)


#: the named per-primitive slots a table holds besides inverse rules and images
SLOTS = ("linearity", "monotone", "rational", "solve_cost")


def _slot_name(slot):
    if slot not in SLOTS:
        raise ValueError(f"unknown slot {slot!r}; a rule table has the slots {', '.join(SLOTS)}")
    return slot


DEFAULT_RULES = RuleTable(name="defaults")
for _prim, _jet in default_jets().items():  # interval bounds of the analytic elementwise primitives
    DEFAULT_RULES.define("monotone", _prim, _jet)
for _prim, _rational in default_rationals().items():  # sums, products, quotients, powers as ratios P/Q
    DEFAULT_RULES.define("rational", _prim, _rational)
_USER_RULES = DEFAULT_RULES.layered("user")
_active: contextvars.ContextVar = contextvars.ContextVar("ppinv_rules", default=_USER_RULES)


def current_table() -> RuleTable:
    """The table in effect here (innermost :func:`overlay`, else user rules over defaults)."""
    return _active.get()


def keep_call(table):
    """``keep(eqn)`` for :func:`~ppinv.ir.import_jaxpr`: a call (a nested ``jit``, a custom
    derivative) with a function rule in ``table`` stays one relation instead of being inlined."""

    def keep(eqn):
        name = call_name(eqn.primitive, eqn.params)
        return name is not None and table.function_rule(name) is not None

    return keep


def register_rule(primitive, rule=None, *, image=None):
    """Register a rule for ``primitive`` globally (above the defaults); returns the rule.

    The rule stays in effect for every inverse built afterwards until
    :func:`unregister_rule` removes it (use :func:`overlay` for a block of code).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> import ppinv
    >>> exp_rule = ppinv.rules.UnaryRule(lambda z: jnp.log(z), lambda z, x: -jnp.log(z),
    ...                                  domain=lambda z: z > 0)
    >>> _ = ppinv.register_rule(lax.exp_p, exp_rule)
    >>> ppinv.inverse(jnp.exp, 1.0)(2.0)[0]                # doctest: +ELLIPSIS
    Array(0.693..., dtype=float...)
    >>> ppinv.unregister_rule(lax.exp_p, exp_rule)
    """
    return _USER_RULES.register(primitive, rule, image=image)


def unregister_rule(primitive, rule) -> None:
    """Remove a rule :func:`register_rule` added."""
    _USER_RULES.unregister(primitive, rule)


def register_function_rule(name, rule):
    """Register a rule for calls to the function called ``name`` globally."""
    return _USER_RULES.register_function(name, rule)


def deflinear(primitive, operands=None, *, multilinear=False, when=None, table=None):
    """Fill ``primitive``'s ``linearity`` slot: its relations may join joint linear solves.

    By default the output is affine in all its inputs jointly (``add``, ``reshape``);
    ``operands`` restricts that to some inputs, the others known (``div``'s numerator);
    ``multilinear=True`` makes it affine in any one input when the others are known
    (``mul``, ``dot_general``); ``when(eqn, known) -> bool`` adds a condition on the
    parameters or constant operands (``integer_pow`` with ``y == 1``). See :class:`Linearity`.

    The slot goes into ``table`` (default: the user layer, for every inverse built afterwards,
    until :meth:`RuleTable.undefine` empties it; pass the layer an :func:`overlay` yields to
    fill it for a block of code). The primitive must be differentiable by JAX (a JVP rule):
    the block's matrix is its Jacobian. Returns the :class:`Linearity`.
    """
    linearity = Linearity(operands, multilinear=multilinear, when=when)
    (table or _USER_RULES).define("linearity", primitive, linearity)
    return linearity


def defmonotone(primitive, fn=None, *, derivative=None, decreasing=False, bounds=None, jet=None, table=None):
    """Fill ``primitive``'s ``monotone`` slot: its relations may join numeric monotone solves.

    The slot holds interval bounds from which ppinv proves, before solving, that a function
    of one unknown is strictly monotone (``x + myprim(x)``). Give one of

    * ``fn``: the elementwise map on Python floats, strictly increasing (or strictly
      decreasing with ``decreasing=True``), its derivative bounded over ``[lo, hi]`` by
      ``derivative(lo, hi) -> (lo′, hi′)`` (default ``[0, ∞]``, or ``[−∞, 0]``);
    * ``bounds(interval, params) -> (range of f, range of f′) | None`` for any elementwise
      analytic map of one input (``sin``: ``(−1, 1), (−1, 1)``);
    * ``jet(args, params) -> (range of the output, range of its derivative) | None``, where
      ``args`` holds each input's (range, range of its derivative in the unknown): the
      general form, for several inputs (``mul``: the product rule on intervals).

    ``table`` as for :func:`deflinear`. The primitive must be differentiable by JAX (Newton's
    method and the implicit derivatives use its JVP). Returns the jet.
    """
    given = [a for a in (fn, bounds, jet) if a is not None]
    if len(given) != 1:
        raise TypeError("defmonotone takes exactly one of fn, bounds or jet")
    if fn is not None:
        bounds = monotone_bounds(fn, derivative, decreasing)
    if bounds is not None:
        jet = unary_jet(bounds)
    (table or _USER_RULES).define("monotone", primitive, jet)
    return jet


def defrational(primitive, degree, combine, *, divisor=None, kink=False, table=None):
    """Fill ``primitive``'s ``rational`` slot: its relations may join closed-form polynomial solves.

    ``degree(eqn, d)`` gives the output's degrees ``(deg P, deg Q)`` as a ratio ``P/Q`` in the
    unknown from its inputs' (``d``; ``(0, 0)`` for a known input), ``combine(eqn, args,
    one, magnitude, sign)`` its coefficient lists from theirs (see :class:`ppinv._poly.Rational`;
    ``ppinv._poly.padd``, ``pmul`` and ``ppow`` do the arithmetic), ``divisor(eqn)`` the index of
    an input that must not be zero, and ``kink=True`` marks an ``|u|``-like primitive. ``table``
    as for :func:`deflinear`. Returns the :class:`~ppinv._poly.Rational`.

    Examples
    --------
    A primitive computing ``x·(1 − x)`` solved as the quadratic it is:

    >>> import jax, jax.numpy as jnp
    >>> from jax.extend.core import Primitive
    >>> from jax.interpreters import ad, batching, mlir
    >>> import ppinv
    >>> from ppinv._poly import padd, pmul
    >>> logistic_step_p = Primitive("logistic_step")
    >>> impl = lambda x: x * (1.0 - x)
    >>> _ = logistic_step_p.def_impl(impl)
    >>> _ = logistic_step_p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
    >>> mlir.register_lowering(logistic_step_p, mlir.lower_fun(impl, multiple_results=False))
    >>> ad.primitive_jvps[logistic_step_p] = lambda p, t: (logistic_step_p.bind(*p), (1.0 - 2.0 * p[0]) * t[0])
    >>> batching.primitive_batchers[logistic_step_p] = lambda a, d: (logistic_step_p.bind(*a), d[0])
    >>> def combine(eqn, args, one, magnitude, sign):
    ...     (num, den), = args                     # a polynomial input: den is None
    ...     minus = num if magnitude else [-c for c in num]
    ...     return pmul(num, padd([one], minus)), None
    >>> with ppinv.overlay() as layer:
    ...     _ = ppinv.rules.defrational(logistic_step_p, lambda e, d: (2 * d[0][0], 0) if d[0][1] == 0 else None,
    ...                                 combine, table=layer)
    ...     inv = ppinv.inverse(lambda x: logistic_step_p.bind(x), 0.3)
    >>> sorted(round(float(inv(0.21, {"poly_root": jnp.asarray(k)})[0]), 6) for k in (0, 1))
    [0.3, 0.7]
    """
    rational = Rational(degree, combine, divisor=divisor, kink=kink)
    (table or _USER_RULES).define("rational", primitive, rational)
    return rational


def undefine_slot(slot: str, primitive) -> None:
    """Empty a slot :func:`deflinear`, :func:`defmonotone` or :func:`defrational` filled in the user layer."""
    _USER_RULES.undefine(slot, primitive)


@contextlib.contextmanager
def overlay(rules=None, functions=None):
    """Layer rules over the current table for the duration of a ``with`` block.

    ``rules`` maps primitives to rules, ``functions`` maps function names to
    rules; a :class:`RuleTable` may be passed instead (its rules are copied onto
    the new layer). Inverses built inside the block use the layer; inverses
    built before keep what they were built with.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from jax import lax
    >>> import ppinv
    >>> def decline(pattern):
    ...     return None
    >>> with ppinv.overlay({lax.exp_p: decline}):
    ...     pass
    """
    layer = current_table().layered()
    if isinstance(rules, RuleTable):
        for prim, rs in rules._rules.items():
            for r in reversed(rs):
                layer.register(prim, r)
        layer._functions.update(rules._functions)
        layer._images.update(rules._images)
        for slot, values in rules._slots.items():
            layer._slots.setdefault(slot, {}).update(values)
    else:
        for prim, r in (rules or {}).items():
            layer.register(prim, r)
    for name, r in (functions or {}).items():
        layer.register_function(name, r)
    token = _active.set(layer)
    try:
        yield layer
    finally:
        _active.reset(token)
