"""Rules for elementwise unary primitives: ``z = p(x)`` solved for ``x``.

Each rule states its domain (where ``z`` has a preimage), its local
``log|dx/dz|``, and the discrete choices that pick one preimage when there are
several (a sign for even powers, ``cosh`` and ``abs``; a period for ``sin``,
``cos`` and ``tan``).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erf, erfinv
from numpyro.distributions import constraints

from ..theta import integer, sign
from . import DEFAULT_RULES
from ._base import Choice, UnaryRule

_PI = math.pi
SIGN = Choice("sign", sign)
PERIOD = Choice("period", integer)


def _signed(s):
    """θ sign choice (0 → +1, 1 → −1) as a float multiplier."""
    return 1.0 - 2.0 * s


def _image(c):
    return lambda eqn, sup: c


def _same_support(eqn, sup):
    return sup[0]


def _reg(prim, **kw):
    DEFAULT_RULES.register(prim, UnaryRule(**kw))


def _sign_of(x):
    return (x < 0).astype(_int())


def _int():
    from ..theta import int_dtype

    return int_dtype()


def _log_one_minus_square(z):
    return jnp.log1p(-z) + jnp.log1p(z)


def _in_unit(z):
    # open: at z = ±1 the preimage exists but |dx/dz| = ∞, so log|det| is ∞ there and
    # would be computed at z itself, leaking 0·∞ = NaN into jax.grad; outside the
    # domain the safe value is used instead (same −∞ density, finite gradients)
    return (z > -1) & (z < 1)


# --- exponentials and logarithms -------------------------------------------
_reg(lax.exp_p, inverse=jnp.log, log_det=lambda z, x: -jnp.log(z), domain=lambda z: z > 0,
     image=_image(constraints.positive))
_reg(lax.exp2_p, inverse=jnp.log2, log_det=lambda z, x: -jnp.log(z) - math.log(math.log(2.0)),
     domain=lambda z: z > 0, image=_image(constraints.positive))
_reg(lax.log_p, inverse=jnp.exp, log_det=lambda z, x: z, image=_image(constraints.real))
_reg(lax.log1p_p, inverse=jnp.expm1, log_det=lambda z, x: z, image=_image(constraints.real))
_reg(lax.expm1_p, inverse=jnp.log1p, log_det=lambda z, x: -jnp.log1p(z), domain=lambda z: z > -1,
     safe=0.0, image=_image(constraints.greater_than(-1.0)))
if hasattr(lax, "log2_p"):
    _reg(lax.log2_p, inverse=jnp.exp2, log_det=lambda z, x: z * math.log(2.0) + math.log(math.log(2.0)),
         image=_image(constraints.real))

# --- roots and powers -------------------------------------------------------
# Domains exclude the points where log|dx/dz| is ±inf (sqrt and even roots at 0,
# odd roots at 0, cosh at 1, acos at 0 and π, acosh at 0): the density there is
# degenerate either way, and computing log|det| at them leaks NaN into jax.grad.
_reg(lax.sqrt_p, inverse=jnp.square, log_det=lambda z, x: math.log(2.0) + jnp.log(z),
     domain=lambda z: z > 0, image=_image(constraints.positive))
_reg(lax.rsqrt_p, inverse=lambda z: 1.0 / jnp.square(z), log_det=lambda z, x: math.log(2.0) - 3.0 * jnp.log(z),
     domain=lambda z: z > 0, image=_image(constraints.positive))
_reg(lax.cbrt_p, inverse=lambda z: z * z * z, log_det=lambda z, x: math.log(3.0) + 2.0 * jnp.log(jnp.abs(z)),
     domain=lambda z: z != 0, image=_same_support)


def _root_rule(k: int):
    """Inverse of ``z = x**k`` for a nonzero integer ``k``."""
    inv_k = 1.0 / k

    def log_det(z, x, *s):
        return -math.log(abs(k)) + (inv_k - 1.0) * jnp.log(jnp.abs(z))

    if k == 1:
        return UnaryRule(lambda z: z, lambda z, x: jnp.zeros_like(z), image=_same_support)
    if k % 2:  # odd: a bijection of the reals (z = 0 left out: |dx/dz| is 0 or ∞ there)
        return UnaryRule(
            lambda z: jnp.sign(z) * jnp.abs(z) ** inv_k,
            log_det,
            domain=lambda z: z != 0,
            image=_same_support,
        )
    return UnaryRule(
        lambda z, s: _signed(s) * z**inv_k,
        lambda z, x, s: log_det(z, x),
        domain=lambda z: z > 0,
        choices=(SIGN,),
        pgf=lambda x, z: (_sign_of(x),),
        image=_image(constraints.positive),
    )


_ROOTS = {}


def _integer_pow_rule(pat):
    k = pat.params["y"]
    if k == 0:
        return None
    if k not in _ROOTS:
        _ROOTS[k] = _root_rule(k)
    return _ROOTS[k](pat)


def _integer_pow_image(eqn, sup):
    k = eqn.params["y"]
    if k % 2 == 0:
        return constraints.positive
    return sup[0] if sup[0] is constraints.positive else None


_integer_pow_rule.image = _integer_pow_image
DEFAULT_RULES.register(lax.integer_pow_p, _integer_pow_rule)
SQUARE_RULE = _root_rule(2)
if hasattr(lax, "square_p"):
    DEFAULT_RULES.register(lax.square_p, SQUARE_RULE)

# --- trigonometric ----------------------------------------------------------
_reg(
    lax.sin_p,
    inverse=lambda z, k: _PI * k + _signed(k % 2) * jnp.arcsin(z),
    log_det=lambda z, x, k: -0.5 * _log_one_minus_square(z),
    domain=_in_unit,
    safe=0.0,
    choices=(PERIOD,),
    pgf=lambda x, z: (jnp.round(x / _PI).astype(_int()),),
    image=_image(constraints.interval(-1.0, 1.0)),
)


def _cos_pgf(x, z):
    k = jnp.round(x / (2 * _PI))
    return (k.astype(_int()), (x - 2 * _PI * k < 0).astype(_int()))


_reg(
    lax.cos_p,
    inverse=lambda z, k, s: 2 * _PI * k + _signed(s) * jnp.arccos(z),
    log_det=lambda z, x, k, s: -0.5 * _log_one_minus_square(z),
    domain=_in_unit,
    safe=0.0,
    choices=(PERIOD, SIGN),
    pgf=_cos_pgf,
    image=_image(constraints.interval(-1.0, 1.0)),
)
_reg(
    lax.tan_p,
    inverse=lambda z, k: jnp.arctan(z) + _PI * k,
    log_det=lambda z, x, k: -jnp.log1p(jnp.square(z)),
    choices=(PERIOD,),
    pgf=lambda x, z: (jnp.round(x / _PI).astype(_int()),),
)
_reg(lax.asin_p, inverse=jnp.sin, log_det=lambda z, x: jnp.log(jnp.cos(z)),
     domain=lambda z: jnp.abs(z) <= _PI / 2, safe=0.0, image=_image(constraints.interval(-_PI / 2, _PI / 2)))
_reg(lax.acos_p, inverse=jnp.cos, log_det=lambda z, x: jnp.log(jnp.sin(z)),
     domain=lambda z: (z > 0) & (z < _PI), image=_image(constraints.interval(0.0, _PI)))
_reg(lax.atan_p, inverse=jnp.tan, log_det=lambda z, x: -2.0 * jnp.log(jnp.cos(z)),
     domain=lambda z: jnp.abs(z) < _PI / 2, safe=0.0, image=_image(constraints.interval(-_PI / 2, _PI / 2)))

# --- hyperbolic -------------------------------------------------------------
_reg(lax.sinh_p, inverse=jnp.arcsinh, log_det=lambda z, x: -0.5 * jnp.log1p(jnp.square(z)),
     image=_same_support)
_reg(
    lax.cosh_p,
    inverse=lambda z, s: _signed(s) * jnp.arccosh(z),
    log_det=lambda z, x, s: -0.5 * (jnp.log(z - 1.0) + jnp.log(z + 1.0)),
    domain=lambda z: z > 1,
    safe=2.0,
    choices=(SIGN,),
    pgf=lambda x, z: (_sign_of(x),),
    image=_image(constraints.greater_than(1.0)),
)
_reg(lax.tanh_p, inverse=jnp.arctanh, log_det=lambda z, x: -_log_one_minus_square(z),
     domain=lambda z: jnp.abs(z) < 1, safe=0.0, image=_image(constraints.interval(-1.0, 1.0)))
_reg(lax.asinh_p, inverse=jnp.sinh, log_det=lambda z, x: jnp.log(jnp.cosh(z)), image=_same_support)
_reg(lax.acosh_p, inverse=jnp.cosh, log_det=lambda z, x: jnp.log(jnp.sinh(z)),
     domain=lambda z: z > 0, image=_image(constraints.positive))


def _log_sech_square(z):
    """``log(1 − tanh²z) = −2·log cosh z``, stably: ``1 − tanh²z`` cancels to 0
    in floating point for |z| ≳ 10 (z = 19 was off by 2.5, z = 30 gave −inf)."""
    a = jnp.abs(z)
    return 2.0 * (math.log(2.0) - a - jnp.log1p(jnp.exp(-2.0 * a)))


_reg(lax.atanh_p, inverse=jnp.tanh, log_det=lambda z, x: _log_sech_square(z), image=_same_support)

# --- sigmoid, erf, sign-like --------------------------------------------------
_reg(
    lax.logistic_p,
    inverse=lambda z: jnp.log(z) - jnp.log1p(-z),
    log_det=lambda z, x: -jnp.log(z) - jnp.log1p(-z),
    domain=lambda z: (z > 0) & (z < 1),
    safe=0.5,
    image=_image(constraints.unit_interval),
)
_reg(lax.erf_p, inverse=erfinv, log_det=lambda z, x: 0.5 * math.log(_PI) - math.log(2.0) + jnp.square(x),
     domain=lambda z: jnp.abs(z) < 1, safe=0.0, image=_image(constraints.interval(-1.0, 1.0)))
_reg(lax.erf_inv_p, inverse=erf, log_det=lambda z, x: math.log(2.0) - 0.5 * math.log(_PI) - jnp.square(z),
     image=_image(constraints.real))
_reg(lax.neg_p, inverse=jnp.negative, log_det=lambda z, x: jnp.zeros_like(z))
_reg(
    lax.abs_p,
    inverse=lambda z, s: _signed(s) * z,
    log_det=lambda z, x, s: jnp.zeros_like(z),
    domain=lambda z: z >= 0,
    choices=(SIGN,),
    pgf=lambda x, z: (_sign_of(x),),
    image=_image(constraints.positive),
)


# --- identities and dtype changes ---------------------------------------------
def _identity_rule():
    return UnaryRule(lambda z: z, lambda z, x: jnp.zeros(jnp.shape(z), jnp.result_type(z)),
                     image=_same_support)


for _name in ("copy_p", "reduce_precision_p", "optimization_barrier_p"):
    if hasattr(lax, _name):
        DEFAULT_RULES.register(getattr(lax, _name), _identity_rule())


def _convert_rule(pat):
    src, dst = pat.eqn.ins[0], pat.eqn.outs[0]
    if not (np.issubdtype(src.dtype, np.floating) and np.issubdtype(dst.dtype, np.floating)):
        return None  # integer/bool conversions lose information
    dtype = src.dtype
    rule = UnaryRule(
        lambda z: z.astype(dtype),
        lambda z, x: jnp.zeros(jnp.shape(z), dtype),
    )
    return rule(pat)


_convert_rule.image = _same_support
DEFAULT_RULES.register(lax.convert_element_type_p, _convert_rule)


# --- erfc (for the normal CDF and survival function) -----------------------------------------
# jax.scipy.special.ndtr (hence numpyro's Normal.cdf) is a where over an erf piece near 0 and
# erfc pieces in the tails. erfc(x) = 2·Φ(−x√2), so x = −ndtri(z/2)/√2: ndtri keeps full relative
# precision for small probabilities, where 1 − z (through erfinv) would cancel to 0. For z > 1
# the complement 2 − z = erfc(−x) is exact (Sterbenz), so that branch is precise too.
def _erfc_inverse(z):
    from jax.scipy.special import ndtri

    upper = z > 1.0
    p = jnp.where(upper, (2.0 - z) / 2.0, z / 2.0)
    q = ndtri(p) / math.sqrt(2.0)
    return jnp.where(upper, q, -q)


_reg(lax.erfc_p, inverse=_erfc_inverse,
     log_det=lambda z, x: 0.5 * math.log(_PI) - math.log(2.0) + jnp.square(x),  # −log|erfc'(x)|
     domain=lambda z: (z > 0) & (z < 2), safe=1.0, image=_image(constraints.interval(0.0, 2.0)))
