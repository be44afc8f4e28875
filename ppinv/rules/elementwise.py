"""Rules for elementwise unary primitives: ``z = p(x)`` solved for ``x``.

Each rule states its domain (where ``z`` has a preimage), its local
``log|dx/dz|``, and the discrete choices that pick one preimage when there are
several (a sign for even powers, ``cosh`` and ``abs``; a period for ``sin``,
``cos`` and ``tan``). A sign is no choice when the unknown's support has one
sign (:func:`support_aware`): ``x²`` of a positive ``x`` has one preimage.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erf, erfinv
from numpyro.distributions import constraints
from scipy import special as _special

from ..theta import integer, sign, support_bounds, support_from_bounds
from .table import DEFAULT_RULES
from ._base import Choice, UnaryRule

_PI = math.pi
SIGN = Choice("sign", sign)
PERIOD = Choice("period", integer)


def _signed(s):
    """θ sign choice (0 → +1, 1 → −1) as a float multiplier."""
    return 1.0 - 2.0 * s


# --- images: where the output lies, given where the input lies ------------------------------
# An image is a superset of p(S) for the input's support S (None: unknown, the real line).
# Freed outputs take it as their θ support and the monotone solve bounds derivatives with
# it, so an image too small loses preimages. Monotone maps send the input's end points
# through the function; only identities copy the input's support.
_REAL = (-math.inf, math.inf, False, False)


def _image(c):
    """A constant image (``sin`` lies in [−1, 1] whatever its input)."""
    return lambda eqn, sup: c


def _same_support(eqn, sup):
    """The image of an identity: the input's own support."""
    return sup[0]


def _input_bounds(sup):
    return support_bounds(sup) or _REAL  # an unknown input range: the whole line


def _intersect(a, b):
    """Intersection of two intervals ``(lo, hi, lo_closed, hi_closed)``; ``None`` if empty."""
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    lo_c = all(c for end, c in ((a[0], a[2]), (b[0], b[2])) if end == lo)
    hi_c = all(c for end, c in ((a[1], a[3]), (b[1], b[3])) if end == hi)
    if lo > hi or (lo == hi and not (lo_c and hi_c)):
        return None
    return (lo, hi, lo_c, hi_c)


def _pieces_without_zero(b):
    """``b`` split at 0 when 0 lies inside it, for maps monotone on each side of 0 (|x|, x²,
    1/x). The value at the one point 0 is left out (a null set no density sees: it keeps
    squares positive, as products and sums of positives need)."""
    lo, hi, lo_c, hi_c = b
    if lo < 0.0 < hi:
        return [(lo, -0.0, lo_c, False), (0.0, hi, False, hi_c)]
    if hi == 0.0:
        return [(lo, -0.0, lo_c, hi_c)]  # −0: the left-hand value of 1/x at 0 is −∞
    return [b]


def _map_piece(fn, b, eps):
    """Image of ``[lo, hi]`` under ``fn``, monotone there: the end points mapped (swapped
    when ``fn`` decreases). Ends computed at a finite point are widened by a few units of
    round-off, since the program's own evaluation may round the other way; limits at ±∞
    and exact zeros stay as they are."""
    lo, hi, lo_c, hi_c = b
    with np.errstate(all="ignore"):
        a, z = float(fn(np.float64(lo))), float(fn(np.float64(hi)))
    if math.isnan(a) or math.isnan(z):
        return None
    ends = [(a, lo_c, math.isfinite(lo)), (z, hi_c, math.isfinite(hi))]
    ends.sort(key=lambda e: e[0])
    (a, a_c, a_fin), (z, z_c, z_fin) = ends
    if a_fin and math.isfinite(a) and a != 0.0:
        a -= 4 * eps * abs(a)
    if z_fin and math.isfinite(z) and z != 0.0:
        z += 4 * eps * abs(z)
    return (a, z, a_c, z_c)


def _hull(parts):
    lo, hi = min(p[0] for p in parts), max(p[1] for p in parts)
    return (lo, hi, any(p[2] for p in parts if p[0] == lo), any(p[3] for p in parts if p[1] == hi))


def _eps(eqn):
    dtype = eqn.outs[0].dtype if eqn.outs else np.float64
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else float(np.finfo(np.float64).eps)


def _monotone_image(fn, domain=_REAL, split_at_zero=False):
    """Image rule of ``fn``, monotone on ``domain`` (on each side of 0 with ``split_at_zero``)."""

    def image(eqn, sup):
        b = _intersect(_input_bounds(sup[0]), domain)
        if b is None:
            return None
        parts = [_map_piece(fn, p, _eps(eqn)) for p in (_pieces_without_zero(b) if split_at_zero else [b])]
        if any(p is None for p in parts):
            return None
        return support_from_bounds(*_hull(parts))

    return image


def _power_image(k):
    """Image of ``x**k`` for a nonzero integer ``k``: monotone on each side of 0."""
    return _monotone_image(lambda t: t**k, split_at_zero=True)


def _logistic(t):
    return 1.0 / (1.0 + np.exp(-t))


_NONNEGATIVE = (0.0, math.inf, True, False)
_UNIT_CLOSED = (-1.0, 1.0, True, True)
_UNIT_OPEN = (-1.0, 1.0, False, False)


def _reg(prim, **kw):
    DEFAULT_RULES.register(prim, UnaryRule(**kw))


def _one_branch(rule, s):
    """``rule`` (whose one choice is a sign) with the sign fixed: 0 → +, 1 → −."""
    return UnaryRule(lambda z: rule.inverse(z, s), lambda z, x: rule.log_det(z, x, s), domain=rule.domain,
                     safe=rule.safe, image=rule.image)


def support_aware(rule):
    """A two-branch rule (``x = ±…``, one sign choice) that takes no sign θ when the unknown's
    support has one sign: the branch there is the only preimage (``x²`` of a positive ``x``)."""
    plus, minus = _one_branch(rule, 0), _one_branch(rule, 1)

    def choose(pat):
        s = sign_from_support(pat.in_support[0]) if pat.in_support else None
        return (rule if s is None else plus if s > 0 else minus)(pat)

    choose.image = rule.image
    return choose


def _sign_of(x):
    return (x < 0).astype(_int())


def sign_from_support(sup):
    """The sign every element of ``sup`` has (``+1.0`` on ``[0, ∞)``, ``−1.0`` on ``(−∞, 0]``), else
    ``None``: a two-branch solve (``x = ±√…``) of an unknown with such a support needs no sign θ."""
    b = support_bounds(sup) if sup is not None else None
    if b is None:
        return None
    if b[0] >= 0.0:
        return 1.0
    if b[1] <= 0.0:
        return -1.0
    return None


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
     image=_monotone_image(np.exp))
_reg(lax.exp2_p, inverse=jnp.log2, log_det=lambda z, x: -jnp.log(z) - math.log(math.log(2.0)),
     domain=lambda z: z > 0, image=_monotone_image(np.exp2))
_reg(lax.log_p, inverse=jnp.exp, log_det=lambda z, x: z, image=_monotone_image(np.log, _NONNEGATIVE))
_reg(lax.log1p_p, inverse=jnp.expm1, log_det=lambda z, x: z,
     image=_monotone_image(np.log1p, (-1.0, math.inf, True, False)))
_reg(lax.expm1_p, inverse=jnp.log1p, log_det=lambda z, x: -jnp.log1p(z), domain=lambda z: z > -1,
     safe=0.0, image=_monotone_image(np.expm1))
if hasattr(lax, "log2_p"):
    _reg(lax.log2_p, inverse=jnp.exp2, log_det=lambda z, x: z * math.log(2.0) + math.log(math.log(2.0)),
         image=_monotone_image(np.log2, _NONNEGATIVE))

# --- roots and powers -------------------------------------------------------
# Domains exclude the points where log|dx/dz| is ±inf (sqrt and even roots at 0,
# odd roots at 0, cosh at 1, acos at 0 and π, acosh at 0): the density there is
# degenerate either way, and computing log|det| at them leaks NaN into jax.grad.
_reg(lax.sqrt_p, inverse=jnp.square, log_det=lambda z, x: math.log(2.0) + jnp.log(z),
     domain=lambda z: z > 0, image=_monotone_image(np.sqrt, _NONNEGATIVE))
_reg(lax.rsqrt_p, inverse=lambda z: 1.0 / jnp.square(z), log_det=lambda z, x: math.log(2.0) - 3.0 * jnp.log(z),
     domain=lambda z: z > 0, image=_monotone_image(lambda t: 1.0 / np.sqrt(t), _NONNEGATIVE))
_reg(lax.cbrt_p, inverse=lambda z: z * z * z, log_det=lambda z, x: math.log(3.0) + 2.0 * jnp.log(jnp.abs(z)),
     domain=lambda z: z != 0, image=_monotone_image(np.cbrt))


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
            image=_power_image(k),
        )
    return UnaryRule(
        lambda z, s: _signed(s) * z**inv_k,
        lambda z, x, s: log_det(z, x),
        domain=lambda z: z > 0,
        choices=(SIGN,),
        pgf=lambda x, z: (_sign_of(x),),
        image=_power_image(k),
    )


_ROOTS = {}


def _integer_pow_rule(pat):
    k = pat.params["y"]
    if k == 0:
        return None
    if k not in _ROOTS:
        _ROOTS[k] = support_aware(_root_rule(k)) if k % 2 == 0 else _root_rule(k)
    return _ROOTS[k](pat)


def _integer_pow_image(eqn, sup):
    k = eqn.params["y"]
    return _power_image(k)(eqn, sup) if k != 0 else None


_integer_pow_rule.image = _integer_pow_image
DEFAULT_RULES.register(lax.integer_pow_p, _integer_pow_rule)
SQUARE_RULE = _root_rule(2)
if hasattr(lax, "square_p"):
    DEFAULT_RULES.register(lax.square_p, support_aware(SQUARE_RULE))

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
     domain=lambda z: jnp.abs(z) <= _PI / 2, safe=0.0, image=_monotone_image(np.arcsin, _UNIT_CLOSED))
_reg(lax.acos_p, inverse=jnp.cos, log_det=lambda z, x: jnp.log(jnp.sin(z)),
     domain=lambda z: (z > 0) & (z < _PI), image=_monotone_image(np.arccos, _UNIT_CLOSED))
_reg(lax.atan_p, inverse=jnp.tan, log_det=lambda z, x: -2.0 * jnp.log(jnp.cos(z)),
     domain=lambda z: jnp.abs(z) < _PI / 2, safe=0.0, image=_monotone_image(np.arctan))

# --- hyperbolic -------------------------------------------------------------
_reg(lax.sinh_p, inverse=jnp.arcsinh, log_det=lambda z, x: -0.5 * jnp.log1p(jnp.square(z)),
     image=_monotone_image(np.sinh))
DEFAULT_RULES.register(lax.cosh_p, support_aware(UnaryRule(
    inverse=lambda z, s: _signed(s) * jnp.arccosh(z),
    log_det=lambda z, x, s: -0.5 * (jnp.log(z - 1.0) + jnp.log(z + 1.0)),
    domain=lambda z: z > 1,
    safe=2.0,
    choices=(SIGN,),
    pgf=lambda x, z: (_sign_of(x),),
    image=_monotone_image(np.cosh, split_at_zero=True),
)))
_reg(lax.tanh_p, inverse=jnp.arctanh, log_det=lambda z, x: -_log_one_minus_square(z),
     domain=lambda z: jnp.abs(z) < 1, safe=0.0, image=_monotone_image(np.tanh))
_reg(lax.asinh_p, inverse=jnp.sinh, log_det=lambda z, x: jnp.log(jnp.cosh(z)), image=_monotone_image(np.arcsinh))
_reg(lax.acosh_p, inverse=jnp.cosh, log_det=lambda z, x: jnp.log(jnp.sinh(z)),
     domain=lambda z: z > 0, image=_monotone_image(np.arccosh, (1.0, math.inf, True, False)))


def _log_sech_square(z):
    """``log(1 − tanh²z) = −2·log cosh z``, stably: ``1 − tanh²z`` cancels to 0
    in floating point for |z| ≳ 10 (z = 19 was off by 2.5, z = 30 gave −inf)."""
    a = jnp.abs(z)
    return 2.0 * (math.log(2.0) - a - jnp.log1p(jnp.exp(-2.0 * a)))


_reg(lax.atanh_p, inverse=jnp.tanh, log_det=lambda z, x: _log_sech_square(z),
     image=_monotone_image(np.arctanh, _UNIT_OPEN))

# --- sigmoid, erf, sign-like --------------------------------------------------
_reg(
    lax.logistic_p,
    inverse=lambda z: jnp.log(z) - jnp.log1p(-z),
    log_det=lambda z, x: -jnp.log(z) - jnp.log1p(-z),
    domain=lambda z: (z > 0) & (z < 1),
    safe=0.5,
    image=_monotone_image(_logistic),
)
_reg(lax.erf_p, inverse=erfinv, log_det=lambda z, x: 0.5 * math.log(_PI) - math.log(2.0) + jnp.square(x),
     domain=lambda z: jnp.abs(z) < 1, safe=0.0, image=_monotone_image(_special.erf))
_reg(lax.erf_inv_p, inverse=erf, log_det=lambda z, x: math.log(2.0) - 0.5 * math.log(_PI) - jnp.square(z),
     image=_monotone_image(_special.erfinv, _UNIT_OPEN))
_reg(lax.neg_p, inverse=jnp.negative, log_det=lambda z, x: jnp.zeros_like(z), image=_monotone_image(np.negative))
DEFAULT_RULES.register(lax.abs_p, support_aware(UnaryRule(
    inverse=lambda z, s: _signed(s) * z,
    log_det=lambda z, x, s: jnp.zeros_like(z),
    domain=lambda z: z >= 0,
    choices=(SIGN,),
    pgf=lambda x, z: (_sign_of(x),),
    image=_monotone_image(np.abs, split_at_zero=True),
)))


# --- identities and dtype changes ---------------------------------------------
def _exact_copy(eqn):
    """Whether the relation returns its input's value unchanged (no rounding to fewer bits)."""
    src, dst = eqn.ins[0].dtype, eqn.outs[0].dtype
    if not (np.issubdtype(src, np.floating) and np.issubdtype(dst, np.floating)):
        return False  # integer and bool values carry discrete supports, not intervals
    fs, fd = np.finfo(src), np.finfo(dst)
    if fd.nmant < fs.nmant or fd.maxexp < fs.maxexp or fd.minexp > fs.minexp:
        return False
    if eqn.prim.name == "reduce_precision":
        return eqn.params["mantissa_bits"] >= fs.nmant and eqn.params["exponent_bits"] >= fs.nexp
    return True


def _copy_image(eqn, sup):
    """Identity-like maps copy the input's support; a rounding to fewer bits may step over
    a bound, so its image is unknown."""
    return sup[0] if _exact_copy(eqn) else None


def _identity_rule():
    return UnaryRule(lambda z: z, lambda z, x: jnp.zeros(jnp.shape(z), jnp.result_type(z)),
                     image=_copy_image)


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


_convert_rule.image = _copy_image
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
