"""Invertible (and deliberately non-invertible) programs written by other projects.

Each entry is a program as its project writes it — bijectors of TensorFlow
Probability, distrax, Bijectors.jl and NumPyro, the inverse tests of oryx,
the function pairs of InverseFunctions.jl / ChangesOfVariables.jl /
LogExpFunctions.jl, sbibm's simulators, textbook physics and chemistry —
translated to ``jax.numpy``, with parameters captured in closures as the
projects' bijector objects hold them and jnp arrays as constants. Each names
its source (project and file) and the domain of each argument as a NumPyro
constraint.

``expect`` says what an exact inverter must do:

* ``"invert"`` — the program has a closed-form or provably unique parametric
  inverse (a bijection, or a family of preimages with a closed-form
  parametrisation such as a sign, a period or a null space);
* ``"refuse"`` — it has none (``why`` says why: over-determined outputs,
  integer-valued outputs, several preimages with no closed form, ...), so
  ppinv must raise :class:`ppinv.errors.InversionError`.

``today`` records, for an ``"invert"`` entry ppinv refuses at present, the
mechanism it lacks (one of :data:`MECHANISMS`) and a fragment of the message
ppinv gives; the suite marks such entries ``xfail(strict=True)`` so that it
notices when they start passing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import jax

jax.config.update("jax_enable_x64", True)  # the corpus is checked to round-off in float64

import jax.numpy as jnp  # noqa: E402
import jax.scipy.special as jsp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402
from numpyro.distributions import constraints  # noqa: E402

__all__ = ["Program", "Refusal", "PROGRAMS", "MECHANISMS", "REFUSAL_KINDS", "by_name"]

real, positive = constraints.real, constraints.positive
unit = constraints.unit_interval
open_unit = constraints.interval(0.0, 1.0)


# -- entries ------------------------------------------------------------------------------------

MECHANISMS = {
    "triangular": "a triangular system: each output fixes one more unknown given the earlier ones "
                  "(stick-breaking, autoregressive flows, cumprod of 1 − z)",
    "scatter": "scatter / scatter-add / segment_sum with known indices (a linear map written as an indexed update)",
    "linalg": "a linear-algebra primitive with known operands (linear solve, matrix inverse, FFT/DCT)",
    "mobius": "a ratio with the unknown in numerator and denominator (x/(a + x), e/(1 + e), logit's s/(1 − s), "
              "x/(1 + |x|)): injective with a closed-form inverse, but no rule solves it and the monotone solve "
              "needs a support to prove monotonicity",
    "coupled": "a coupled nonlinear block of several unknowns with a closed-form joint solve "
               "(normalisation x/Σx, V = IR with P = I²R, the radius of a radial flow)",
    "piece_domain": "a case of a where that is invertible on its own interval only (x + exp(−x) for x ≥ 18): "
                    "the monotone solve does not use the case's predicate as a support",
    "structural": "a select with a constant predicate or mask, or a shard_map (pmap), that the overlay does not "
                  "see through",
    "numeric": "a provably unique inverse with no closed form (u·exp(δu²/2), a planar flow) that the monotone "
               "solve does not recognise",
    "polynomial": "a polynomial of degree 3 or more in one unknown (closed-form roots, a discrete θ picks one)",
    "elementwise": "an elementwise primitive with no inverse rule",
}

REFUSAL_KINDS = {
    "overdetermined": "the outputs are functions of each other (they lie on a manifold of lower dimension)",
    "discrete": "an output is integer- or boolean-valued (no density on the observation)",
    "non_unique": "several preimages with no closed-form parametrisation (no monotone or algebraic solve)",
    "constant": "the output does not depend on the inputs",
}


@dataclass(frozen=True)
class Refusal:
    """What ppinv says today about an entry it cannot yet invert."""

    mechanism: str  # a key of MECHANISMS
    message: str  # a fragment of ppinv's error message at the time the corpus was recorded


@dataclass(frozen=True)
class Program:
    name: str
    source: str  # "project: path"
    fn: Callable
    args: tuple
    support: Any = None  # one NumPyro constraint per argument (or None: real)
    expect: str = "invert"  # "invert" | "refuse"
    why: str = ""  # for "refuse": a key of REFUSAL_KINDS, then ": " and the reason
    today: Refusal | None = None  # for "invert" entries ppinv refuses today
    wrong_today: str = ""  # for "invert" entries ppinv inverts wrongly today (a silent wrong answer)
    points: tuple | None = None  # explicit argument tuples to check at (else random draws in support)
    scale: float = 1.0  # spread of the random draws (in the unconstrained space of each support)
    jitter: float | None = None  # draw around the example args instead: a·exp(jitter·z) (jitter·z where a = 0)
    rtol: float = 1e-8
    log_det_atol: float = 1e-7
    note: str = ""

    @property
    def project(self) -> str:
        return self.source.split(":", 1)[0]


PROGRAMS: list[Program] = []

# the openings of ppinv's messages the corpus records
COUPLED = "cannot reorient the program: these relations are coupled"
PIECE = "case 0 of the piecewise function cannot be inverted for x"


def add(name, source, fn, args, support=None, **kw):
    if support is not None and not isinstance(support, (list, tuple)) and len(args) > 1:
        support = [support] * len(args)  # one constraint for every argument
    PROGRAMS.append(Program(name, source, fn, tuple(args), support, **kw))


def add_formula(name, source, fn, args, support=None, **kw):
    """A formula with physical scales: checked around its example values (within 30 %)."""
    add(name, source, fn, args, support, **{"jitter": 0.3, **kw})


def by_name(name) -> Program:
    (p,) = [p for p in PROGRAMS if p.name == name]
    return p


def arr(*v):
    return jnp.asarray(v, dtype=jnp.float64)


# =============================================================================================
# TensorFlow Probability — tensorflow_probability/python/bijectors/<name>.py (``_forward``)
# =============================================================================================
TFP = "TensorFlow Probability: tensorflow_probability/python/bijectors/"


def sinh_arcsinh(skewness, tailweight):
    scale_number = 2.0
    multiplier = scale_number / jnp.sinh(jnp.arcsinh(scale_number) * tailweight)

    def forward(x):
        return jnp.sinh((jnp.arcsinh(x) + skewness) * tailweight) * multiplier

    return forward


def kumaraswamy_cdf(concentration1, concentration0):
    def forward(x):
        return -jnp.expm1(concentration0 * jnp.log1p(-(x**concentration1)))

    return forward


def kumaraswamy_cdf_test_form(a, b):
    def forward(x):  # the reference formula in kumaraswamy_cdf_test.py
        return 1.0 - (1.0 - x**a) ** b

    return forward


def gompertz_cdf(concentration, rate):
    def forward(x):
        return -jnp.expm1(-concentration * jnp.expm1(rate * x))

    return forward


def tfp_log1mexp(x):  # tensorflow_probability/python/math/generic.py
    x = jnp.abs(x)
    return jnp.where(x < np.log(2.0), jnp.log(-jnp.expm1(-x)), jnp.log1p(-jnp.exp(-x)))


def shifted_gompertz_cdf(concentration, rate):
    def forward(x):
        log1mexpx = tfp_log1mexp(-rate * x)
        return jnp.exp(log1mexpx - jnp.exp(-rate * x) / concentration)

    return forward


def weibull_cdf(scale, concentration):
    def forward(x):
        return -jnp.expm1(-((x / scale) ** concentration))

    return forward


def gumbel_cdf(loc, scale):
    def forward(x):
        z = (x - loc) / scale
        return jnp.exp(-jnp.exp(-z))

    return forward


def moyal_cdf(loc, scale):
    def forward(x):
        z = (x - loc) / scale
        return jsp.erfc(jnp.exp(-z / 2) / np.sqrt(2.0))

    return forward


def frechet_cdf(loc, scale, concentration):
    def forward(x):
        z = (x - loc) / scale
        return jnp.exp(-(z ** (-concentration)))

    return forward


def gev_cdf(loc, scale, concentration):
    def forward(x):
        z = (x - loc) / scale
        equal_zero = jnp.equal(concentration, 0.0)
        safe_conc = jnp.where(equal_zero, jnp.ones_like(concentration), concentration)
        t = jnp.where(equal_zero, jnp.exp(-z), jnp.exp(-jnp.log1p(z * safe_conc) / safe_conc))
        return jnp.exp(-t)

    return forward


def rayleigh_cdf(scale):
    def forward(x):
        return -jnp.expm1(-jnp.square(x / scale) / 2.0)

    return forward


def power_transform(power):
    def forward(x):
        return jnp.exp(jnp.log1p(x * power) / power)

    return forward


def softsign(x):
    abs_x = jnp.abs(x)
    answer = x / (1.0 + abs_x)
    return jnp.where(abs_x >= 1e20, jnp.sign(x), answer)


def iterated_sigmoid_centered_head(x):
    """The same bijector's ``y`` before the last coordinate ``1 − Σy`` is appended."""
    offset = -jnp.log(jnp.arange(x.shape[-1], 0, -1).astype(x.dtype))
    z = jax.nn.sigmoid(x + offset)
    exclusive = jnp.concatenate([jnp.ones_like(z[..., :1]), jnp.cumprod(1 - z, axis=-1)[..., :-1]], -1)
    return z * exclusive


def iterated_sigmoid_centered_full(x):
    y = iterated_sigmoid_centered_head(x)
    return jnp.concatenate([y, 1.0 - jnp.sum(y, axis=-1, keepdims=True)], axis=-1)


def softmax_centered_full(x):
    return jax.nn.softmax(jnp.pad(x, [(0, 1)]))


def softmax_centered_head(x):
    return jax.nn.softmax(jnp.pad(x, [(0, 1)]))[:-1]


def ascending(x):
    y0 = x[..., :1]
    yk = jnp.exp(x[..., 1:])
    y = jnp.concatenate([y0, yk], axis=-1)
    return jnp.cumsum(y, axis=-1)


def normal_cdf(x):
    return jsp.ndtr(x)


def lambertw_transform(tailweight):
    def forward(u):  # _xexp_delta_squared
        return u * jnp.exp(0.5 * tailweight * u**2)

    return forward


def softplus_bijector(hinge_softness, low):
    def forward(x):
        return hinge_softness * jax.nn.softplus(x / hinge_softness) + low

    return forward


def generalized_pareto_bijector(loc, scale, concentration):
    def forward(x):
        scale_div_conc = scale / concentration
        use_negative = (concentration < 0.0) & jnp.isfinite(scale_div_conc)
        high = loc + jnp.abs(scale_div_conc)
        negative = loc + (high - loc) * jax.nn.sigmoid(x)  # Sigmoid(low=loc, high=high)
        non_negative = loc + jax.nn.softplus(x)  # Chain([Shift(loc), Softplus()])
        return jnp.where(use_negative, negative, non_negative)

    return forward


def generalized_pareto_cdf(loc, scale, concentration):
    # tensorflow_probability/python/distributions/generalized_pareto.py, _cdf
    def forward(x):
        z = (x - loc) / scale
        return -jnp.expm1(-jnp.log1p(z * concentration) / concentration)

    return forward


def scale_matvec_tril(scale_tril):
    def forward(x):
        return scale_tril @ x

    return forward


def scale_matvec_lu(lower_upper, permutation):
    n = lower_upper.shape[-1]
    lower = jnp.tril(lower_upper, -1) + jnp.eye(n)
    upper = jnp.triu(lower_upper)
    perm = jnp.eye(n)[permutation]

    def forward(x):
        return perm.T @ (lower @ (upper @ x))

    return forward


def real_nvp_affine(shift_w, log_scale_w):
    """RealNVP with a tanh shift-and-log-scale network (real_nvp.py, num_masked=1)."""

    def forward(x):
        x0, x1 = x[..., :1], x[..., 1:]
        h = jnp.tanh(x0 * shift_w)
        shift, log_scale = h @ jnp.ones((1, 2)), h @ log_scale_w
        return jnp.concatenate([x0, x1 * jnp.exp(log_scale) + shift], axis=-1)

    return forward


def masked_autoregressive_affine(w_shift, w_log_scale):
    """MAF with a MADE-style strictly lower-triangular network (masked_autoregressive.py)."""
    mask = jnp.tril(jnp.ones((3, 3)), -1)

    def forward(x):
        # y_i = x_i * exp(log_scale_i(y_<i)) + shift_i(y_<i): TFP's forward iterates the network n times
        y = jnp.zeros_like(x)
        for _ in range(x.shape[-1]):
            shift = jnp.tanh((mask * w_shift) @ y)
            log_scale = jnp.tanh((mask * w_log_scale) @ y)
            y = x * jnp.exp(log_scale) + shift
        return y

    return forward


def permute(permutation):
    def forward(x):
        return x[permutation]

    return forward


def discrete_cosine_transform(x):
    return jax.scipy.fft.dct(x, type=2, norm="ortho")


def fill_triangular(x):
    n = int(np.sqrt(0.25 + 2.0 * x.shape[-1]) - 0.5)
    rows, cols = np.tril_indices(n)
    return jnp.zeros((n, n), x.dtype).at[rows, cols].set(x)


def transform_diagonal_softplus(x):
    """TransformDiagonal(Softplus()) on a matrix: the diagonal through softplus, the rest unchanged."""
    n = x.shape[-1]
    eye = jnp.eye(n, dtype=bool)
    return jnp.where(eye, jax.nn.softplus(x), x)


def sigmoid_low_high(low, high):
    def forward(x):
        return low + (high - low) * jax.nn.sigmoid(x)

    return forward


add("sinh_arcsinh", TFP + "sinh_arcsinh.py", sinh_arcsinh(jnp.asarray(0.3), jnp.asarray(1.5)), [0.5])
add("kumaraswamy_cdf", TFP + "kumaraswamy_cdf.py", kumaraswamy_cdf(jnp.asarray(2.0), jnp.asarray(0.3)), [0.5],
    open_unit)
add("kumaraswamy_cdf_reference", TFP + "kumaraswamy_cdf_test.py",
    kumaraswamy_cdf_test_form(jnp.asarray(2.0), jnp.asarray(0.3)), [0.5], open_unit)
add("gompertz_cdf", TFP + "gompertz_cdf.py", gompertz_cdf(jnp.asarray(0.8), jnp.asarray(1.3)), [0.5], positive,
    scale=0.5)
add("shifted_gompertz_cdf", TFP + "shifted_gompertz_cdf.py",
    shifted_gompertz_cdf(jnp.asarray(0.5), jnp.asarray(1.2)), [0.5], positive, scale=0.5,
    note="log1mexp's where lifted to the observation (a piece per formula, the predicate re-checked); "
         "each piece a monotone solve (|−rate·x| has one sign on the support)")
add("weibull_cdf", TFP + "weibull_cdf.py", weibull_cdf(jnp.asarray(2.0), jnp.asarray(1.7)), [0.5], positive,
    scale=0.5)
add("gumbel_cdf", TFP + "gumbel_cdf.py", gumbel_cdf(jnp.asarray(0.5), jnp.asarray(2.0)), [0.5])
add("moyal_cdf", TFP + "moyal_cdf.py", moyal_cdf(jnp.asarray(0.2), jnp.asarray(1.5)), [0.5])
add("frechet_cdf", TFP + "frechet_cdf.py", frechet_cdf(jnp.asarray(-1.0), jnp.asarray(2.0), jnp.asarray(1.5)),
    [0.5], constraints.greater_than(-1.0), scale=0.5)
add("gev_cdf", TFP + "gev_cdf.py", gev_cdf(jnp.asarray(0.3), jnp.asarray(1.5), jnp.asarray(0.5)), [0.5],
    constraints.greater_than(0.3 - 1.5 / 0.5), scale=0.5)
add("rayleigh_cdf", TFP + "rayleigh_cdf.py", rayleigh_cdf(jnp.asarray(1.5)), [0.5], positive, scale=0.5)
add("power_transform", TFP + "power_transform.py", power_transform(jnp.asarray(0.5)), [0.5],
    constraints.greater_than(-2.0))
add("softsign", TFP + "softsign.py", softsign, [0.5],
    note="the case sign(x) (|x| ≥ 1e20) is flat on each side: a flat piece, x/(1 + |x|) inverted")
add("iterated_sigmoid_centered", TFP + "iterated_sigmoid_centered.py", iterated_sigmoid_centered_full,
    [arr(0.1, -0.3, 0.2)], expect="refuse",
    why="overdetermined: the K+1 outputs sum to 1, so they carry only K free coordinates")
add("iterated_sigmoid_centered_head", TFP + "iterated_sigmoid_centered.py", iterated_sigmoid_centered_head,
    [arr(0.1, -0.3, 0.2)])
add("softmax_centered", TFP + "softmax_centered.py", softmax_centered_full, [arr(0.1, -0.3, 0.2)],
    expect="refuse", why="overdetermined: the K+1 outputs sum to 1, so they carry only K free coordinates")
add("softmax_centered_head", TFP + "softmax_centered.py", softmax_centered_head, [arr(0.1, -0.3, 0.2)],
    note="the softmax strategy: z = log p − log(1 − Σp), the padded logit fixing the shift")
add("ascending", TFP + "ascending.py", ascending, [arr(0.1, -0.3, 0.2, 0.4)])
add("normal_cdf", TFP + "normal_cdf.py", normal_cdf, [0.5])
add("lambertw_transform", TFP + "lambertw_transform.py", lambertw_transform(jnp.asarray(0.4)), [0.5])
add("sinh", TFP + "sinh.py", jnp.sinh, [0.5])
add("softplus_hinge", TFP + "softplus.py", softplus_bijector(jnp.asarray(0.7), jnp.asarray(0.1)), [0.5])
add("generalized_pareto_bijector", TFP + "generalized_pareto.py",
    generalized_pareto_bijector(jnp.asarray(0.5), jnp.asarray(2.0), jnp.asarray(-0.5)), [0.5])
add("generalized_pareto_cdf", "TensorFlow Probability: tensorflow_probability/python/distributions/"
    "generalized_pareto.py", generalized_pareto_cdf(jnp.asarray(0.5), jnp.asarray(2.0), jnp.asarray(0.4)), [0.5],
    constraints.greater_than(0.5), scale=0.5)
add("sigmoid_low_high", TFP + "sigmoid.py", sigmoid_low_high(jnp.asarray(-1.0), jnp.asarray(3.0)), [0.5])
add("scale_matvec_tril", TFP + "scale_matvec_tril.py",
    scale_matvec_tril(jnp.asarray([[2.0, 0.0, 0.0], [0.5, 1.5, 0.0], [-0.3, 0.2, 0.8]])), [arr(0.1, 0.2, 0.3)])
add("scale_matvec_lu", TFP + "scale_matvec_lu.py",
    scale_matvec_lu(jnp.asarray([[2.0, 0.3, -0.2], [0.5, 1.5, 0.4], [-0.3, 0.2, 0.8]]), jnp.asarray([2, 0, 1])),
    [arr(0.1, 0.2, 0.3)])
add("real_nvp", TFP + "real_nvp.py", real_nvp_affine(jnp.asarray(0.7), jnp.asarray([[0.3, -0.5]])),
    [arr(0.1, 0.2, 0.3)])
add("masked_autoregressive_flow", TFP + "masked_autoregressive.py",
    masked_autoregressive_affine(jnp.asarray([[0.0, 0.0, 0.0], [0.8, 0.0, 0.0], [-0.4, 0.6, 0.0]]),
                                 jnp.asarray([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [0.2, -0.5, 0.0]])),
    [arr(0.1, 0.2, 0.3)])
add("permute", TFP + "permute.py", permute(jnp.asarray([2, 0, 1])), [arr(0.1, 0.2, 0.3)])
add("discrete_cosine_transform", TFP + "discrete_cosine_transform.py", discrete_cosine_transform,
    [arr(0.1, 0.2, 0.3, 0.4)],
    note="the fft, twiddle and real part fold into one known real matrix (ppinv._ir.fold_complex_linear_maps)")
add("fill_triangular", TFP + "fill_triangular.py", fill_triangular, [arr(0.1, 0.2, 0.3)], expect="refuse",
    why="overdetermined: the entries above the diagonal are the constant 0, so the n*n outputs carry "
        "only n(n+1)/2 coordinates")
add("transform_diagonal_softplus", TFP + "transform_diagonal.py", transform_diagonal_softplus,
    [jnp.asarray([[0.1, 0.2], [0.3, 0.4]])])
add("absolute_value", TFP + "absolute_value.py", jnp.abs, [0.5])
add("reciprocal", TFP + "reciprocal.py", lambda x: 1.0 / x, [0.5], positive)
add("square", TFP + "square.py", jnp.square, [0.5])
add("expm1", TFP + "expm1.py", jnp.expm1, [0.5])
add("tanh", TFP + "tanh.py", jnp.tanh, [0.5])


# =============================================================================================
# distrax — distrax/_src/bijectors/<name>.py (``forward`` / ``forward_and_log_det``)
# =============================================================================================
DISTRAX = "distrax: distrax/_src/bijectors/"


def distrax_gumbel_cdf(x):
    exp_neg_x = jnp.exp(-x)
    return jnp.exp(-exp_neg_x)


def more_stable_sigmoid(x):
    """Where extremely negatively saturated, approximate sigmoid with exp(x)."""
    return jnp.where(x < -9, jnp.exp(x), jax.nn.sigmoid(x))


def scalar_affine(shift, scale):
    def forward(x):
        batch_shape = jax.lax.broadcast_shapes(jnp.shape(scale), x.shape)
        return jnp.broadcast_to(scale, batch_shape) * x + jnp.broadcast_to(shift, batch_shape)

    return forward


def triangular_linear(matrix):
    def forward(x):
        return jnp.vectorize(lambda v, m: m @ v, signature="(m),(m,m)->(m)")(x, matrix)

    return forward


def diag_plus_low_rank_linear(u_matrix, v_matrix):
    def forward(x):
        return x + u_matrix @ (v_matrix.T @ x)

    return forward


def unconstrained_affine(matrix, bias):
    def forward(x):
        return matrix @ x + bias

    return forward


def lower_upper_triangular_affine(matrix, bias):
    n = matrix.shape[-1]
    lower = jnp.tril(matrix, -1) + jnp.eye(n)
    upper = jnp.triu(matrix)

    def forward(x):
        return lower @ (upper @ x) + bias

    return forward


def split_coupling(split_index):
    """SplitCoupling with conditioner ``x**2`` and inner ScalarAffine(shift=params) (split_coupling_test.py)."""

    def forward(x):
        x1, x2 = x[..., :split_index], x[..., split_index:]
        params = x1**2
        y2 = x2 + params
        return jnp.concatenate([x1, y2], axis=-1)

    return forward


def masked_coupling(mask):
    """MaskedCoupling with an affine inner bijector (masked_coupling.py): y = mask·x + (1 − mask)·f(x)."""

    def forward(x):
        masked_x = jnp.where(mask, x, 0.0)
        shift = jnp.tanh(masked_x.sum()) * jnp.ones_like(x)
        log_scale = 0.5 * jnp.tanh(masked_x.sum()) * jnp.ones_like(x)
        y = x * jnp.exp(log_scale) + shift
        return jnp.where(mask, x, y)

    return forward


add("gumbel_cdf_standard", DISTRAX + "gumbel_cdf.py", distrax_gumbel_cdf, [0.5])
add("more_stable_sigmoid", DISTRAX + "sigmoid.py", more_stable_sigmoid, [0.5],
    points=((-12.0,), (-8.5,), (2.0,)), note="points in every case of the where")
add("tanh_vector", DISTRAX + "tanh.py", jnp.tanh, [arr(0.1, -0.2)])
add("scalar_affine", DISTRAX + "scalar_affine.py", scalar_affine(arr(0.5, -1.0), arr(2.0, 0.3)),
    [arr(0.1, 0.2)])
add("triangular_linear", DISTRAX + "triangular_linear.py",
    triangular_linear(jnp.asarray([[1.5, 0.0], [0.7, -2.0]])), [arr(0.1, 0.2)])
add("diag_plus_low_rank_linear", DISTRAX + "diag_plus_low_rank_linear.py",
    diag_plus_low_rank_linear(jnp.asarray([[0.3], [0.5], [-0.2]]), jnp.asarray([[1.0], [0.4], [0.6]])),
    [arr(0.1, 0.2, 0.3)])
add("unconstrained_affine", DISTRAX + "unconstrained_affine.py",
    unconstrained_affine(jnp.asarray([[1.0, 0.5], [-0.3, 2.0]]), arr(0.1, -0.4)), [arr(0.1, 0.2)])
add("lower_upper_triangular_affine", DISTRAX + "lower_upper_triangular_affine.py",
    lower_upper_triangular_affine(jnp.asarray([[2.0, 0.3], [0.5, 1.5]]), arr(1.0, -1.0)), [arr(0.1, 0.2)])
add("split_coupling", DISTRAX + "split_coupling.py", split_coupling(2), [arr(0.1, 0.2, 0.3, 0.4)])
add("masked_coupling", DISTRAX + "masked_coupling.py", masked_coupling(jnp.asarray([True, False, True])),
    [arr(0.1, 0.2, 0.3)])


# =============================================================================================
# Bijectors.jl — src/bijectors/<name>.jl (``transform``)
# =============================================================================================
BIJ = "Bijectors.jl: src/bijectors/"


def bounded_logit(a, b):
    def transform(x):  # _logit(x, a, b) = LogExpFunctions.logit((x - a) / (b - a))
        return jsp.logit((x - a) / (b - a))

    return transform


def leaky_relu(alpha):
    def transform(x):
        mask = x < 0
        return jnp.where(mask, alpha * x, x)

    return transform


def ordered_scan(y):
    """_transform_ordered: x[1] = y[1]; x[i] = x[i - 1] + exp(y[i]) — the loop as a lax.scan."""

    def step(prev, yi):
        xi = prev + jnp.exp(yi)
        return xi, xi

    _, rest = lax.scan(step, y[0], y[1:])
    return jnp.concatenate([y[:1], rest])


def truncated_link_lower(a):
    def transform(x):  # truncated_link with only a finite lower bound
        return jnp.log(x - a)

    return transform


def truncated_link_upper(b):
    def transform(x):  # truncated_link with only a finite upper bound
        return jnp.log(b - x)

    return transform


def planar_layer(w, u, b):
    """PlanarLayer with the invertibility-guaranteeing û (get_u_hat)."""
    wT_u = w @ u
    u_hat = u + ((jax.nn.softplus(-wT_u) - 1) / jnp.sum(w**2)) * w

    def transform(z):
        return z + u_hat * jnp.tanh(w @ z + b)

    return transform


def planar_layer_raw(w, u, b):
    """The planar layer without the û reparametrisation: w·u < −1 makes it fold (several preimages)."""

    def transform(z):
        return z + u * jnp.tanh(w * z + b)

    return transform


def radial_layer(alpha_, beta, z_0):
    alpha = jax.nn.softplus(alpha_)
    beta_hat = -alpha + jax.nn.softplus(beta)

    def transform(z):
        r = jnp.sqrt(jnp.sum((z - z_0) ** 2))
        return z + beta_hat / (alpha + r) * (z - z_0)

    return transform


def simplex_bijector(x_head):
    """_simplex_bijector! on a K-simplex, given its first K−1 entries (x_K = 1 − Σ)."""
    K = x_head.shape[-1] + 1
    eps = jnp.finfo(x_head.dtype).eps
    ys = []
    z = x_head[0] * (1 - 2 * eps) + eps
    ys.append(jsp.logit(z) + jnp.log(K - 1.0))
    sum_tmp = 0.0
    for k in range(1, K - 1):
        sum_tmp = sum_tmp + x_head[k - 1]
        z = (x_head[k] + eps) * (1 - 2 * eps) / ((1 + eps) - sum_tmp)
        ys.append(jsp.logit(z) + jnp.log(K - k - 1.0))
    return jnp.stack(ys)


def stacked(x):
    """Stacked((exp, log, logit), (1:1, 2:3, 4:4)): a bijector per block of the vector."""
    return jnp.concatenate([jnp.exp(x[:1]), jnp.log(x[1:3]), jsp.logit(x[3:4])])


def bij_coupling(x):
    """Coupling(x -> Shift(x[1]), PartitionMask(3, [1], [2])) of test/bijectors/coupling.jl:
    [1, 2, 3] -> [3, 2, 3] (the first entry shifted by the second, the rest unchanged)."""
    return jnp.stack([x[0] + x[1], x[1], x[2]])


add("bounded_logit", BIJ + "logit.jl", bounded_logit(jnp.asarray(-1.0), jnp.asarray(2.0)), [0.5],
    constraints.interval(-1.0, 2.0))
add("leaky_relu", BIJ + "leaky_relu.jl", leaky_relu(jnp.asarray(0.2)), [0.5], scale=2.0)
add("ordered", BIJ + "ordered.jl", ordered_scan, [arr(0.1, -0.3, 0.2, 0.4)])
add("truncated_lower", BIJ + "truncated.jl", truncated_link_lower(jnp.asarray(1.0)), [2.0],
    constraints.greater_than(1.0))
add("truncated_upper", BIJ + "truncated.jl", truncated_link_upper(jnp.asarray(1.0)), [0.0],
    constraints.less_than(1.0))
add("planar_layer", BIJ + "planar_layer.jl", planar_layer(arr(0.5, -0.3), arr(0.8, 0.2), jnp.asarray(0.1)),
    [arr(0.1, 0.2)])
add("planar_layer_without_u_hat", BIJ + "planar_layer.jl",
    planar_layer_raw(jnp.asarray(2.0), jnp.asarray(-1.5), jnp.asarray(0.1)), [0.5], expect="refuse",
    why="non_unique: with w·u = −3 < −1 the map z + u·tanh(w·z + b) folds; y near −b/w has three "
        "preimages and no closed form (the reason Bijectors.jl uses û)")
add("radial_layer", BIJ + "radial_layer.jl", radial_layer(jnp.asarray(0.5), jnp.asarray(0.2), arr(0.3, -0.1)),
    [arr(0.1, 0.2)],
    today=Refusal("coupled", COUPLED + " (add(z, ...))"))
add("simplex_bijector", BIJ + "simplex.jl", simplex_bijector, [arr(0.2, 0.3, 0.1)],
    points=((arr(0.2, 0.3, 0.1),), (arr(0.5, 0.1, 0.25),), (arr(0.05, 0.6, 0.3),)),
    note="the first K−1 coordinates of a simplex point (ppinv takes entrywise supports only)")
add("stacked", BIJ + "stacked.jl", stacked, [arr(0.1, 0.5, 1.5, 0.3)],
    points=((arr(0.1, 0.5, 1.5, 0.3),), (arr(-1.0, 2.0, 0.2, 0.9),), (arr(0.7, 0.1, 3.0, 0.05),)))
add("coupling_shift", "Bijectors.jl: test/bijectors/coupling.jl", bij_coupling, [arr(1.0, 2.0, 3.0)])
add("log_bijector", BIJ + "exp_log.jl", jnp.log, [jnp.ones(3)], positive)


# =============================================================================================
# oryx — oryx/core/interpreters/inverse/inverse_test.py
# =============================================================================================
ORYX = "oryx: oryx/core/interpreters/inverse/inverse_test.py"


def oryx_conditional(x, y):
    return x + 1.0, jnp.exp(x + 1.0) + y


def oryx_advanced_two(x, y):
    return jnp.exp(x), x**2 + y


def oryx_advanced_three(x, y, z):
    return jnp.exp(x), x**2 + y, jnp.exp(z + y)


def oryx_lower_triangular(x, y):
    return x + 2.0, jnp.exp(x) + y


def oryx_jit(x):
    return jax.jit(lambda x: 3.0 / x)(x)


def oryx_pmap(x):
    return jax.pmap(lambda x: jnp.exp(x) + 2.0)(x)


def oryx_split(x):
    return jnp.split(x, 2)


def oryx_naive_sigmoid(x):
    return 1.0 / (1 + jnp.exp(-x))


def oryx_naive_logit(x):
    return jnp.log(x / (1.0 - x))


def oryx_noninvertible(x, y):
    return x + y, x + y


def oryx_scan_cumsum(x):
    """A scan composed with exp and shifts, as oryx's bijector tests chain them."""

    def step(carry, xi):
        carry = carry * 0.5 + jnp.exp(xi) + 2.0
        return carry, carry

    _, ys = lax.scan(step, jnp.zeros((), x.dtype), x)
    return ys


add("mul_by_two", ORYX, lambda x: x * 2.0, [0.5])
add("div_into_two", ORYX, lambda x: 2.0 / x, [0.5], positive)
add("exp_vector", ORYX, jnp.exp, [jnp.zeros(2)])
add("conditional_inverse", ORYX, oryx_conditional, [0.0, 2.0])
add("advanced_inverse_two", ORYX, oryx_advanced_two, [0.1, 0.2])
add("advanced_inverse_three", ORYX, oryx_advanced_three, [0.0, 0.0, 0.0])
add("lower_triangular_jacobian", ORYX, oryx_lower_triangular, [0.0, 0.0])
add("inverse_of_jit", ORYX, oryx_jit, [2.0], positive)
add("inverse_of_pmap", ORYX, oryx_pmap, [jnp.ones(1)])
add("inverse_of_split", ORYX, oryx_split, [jnp.ones(4)])
add("inverse_of_concatenate", ORYX, lambda x, y: jnp.concatenate([x, y]), [jnp.ones(2), jnp.ones(2)])
add("inverse_of_reshape", ORYX, lambda x: jnp.reshape(x, (4,)), [jnp.ones((2, 2))])
add("naive_sigmoid", ORYX, oryx_naive_sigmoid, [0.5])
add("jax_nn_sigmoid", ORYX, jax.nn.sigmoid, [0.5])
add("naive_logit", ORYX, oryx_naive_logit, [0.5], open_unit)
add("jax_scipy_logit", ORYX, jsp.logit, [0.5], open_unit)
add("integer_pow_2", ORYX, lambda x: lax.integer_pow(x, 2), [0.5])
add("integer_pow_3", ORYX, lambda x: lax.integer_pow(x, 3), [0.5])
add("reciprocal_jnp", ORYX, jnp.reciprocal, [0.5], positive)
add("pow_base_known", ORYX, lambda x: lax.pow(x, 2.0), [0.5], positive)
add("pow_exponent_known", ORYX, lambda y: lax.pow(2.0, y), [0.5])
add("sqrt", ORYX, jnp.sqrt, [0.5], positive)
add("exp_plus_two_vector", ORYX, lambda x: jnp.exp(x) + 2.0, [jnp.zeros(3)])
add("affine_vector", ORYX, lambda x: x * 2.0 + 1.0, [jnp.zeros(3)])
add("scan_exp_shift", ORYX, oryx_scan_cumsum, [jnp.zeros(3)])
add("trivial_noninvertible", ORYX, lambda x: jnp.ones(()), [1.0], expect="refuse",
    why="constant: f(x) = 1 does not depend on x")
add("noninvertible_duplicate", ORYX, oryx_noninvertible, [1.0, 2.0], expect="refuse",
    why="overdetermined: both outputs are x + y")


# =============================================================================================
# InverseFunctions.jl — test/test_inverse.jl ("maths" testset) and src/functions.jl
# =============================================================================================
INVF = "InverseFunctions.jl: test/test_inverse.jl"


def log_base(b):
    def f(x):  # Base.Fix1(log, b): log(b, x)
        return jnp.log(x) / jnp.log(b)

    return f


def log_of_base(x_fixed):
    def f(b):  # Base.Fix2(log, x): log(b, x) as a function of the base b
        return jnp.log(x_fixed) / jnp.log(b)

    return f


def left_multiply(A):
    def f(X):  # Base.Fix1(*, A)
        return A @ X

    return f


def right_divide(A):
    def f(X):  # Base.Fix2(/, A): X / A
        return jnp.linalg.solve(A.T, X.T).T

    return f


def left_divide(A):
    def f(X):  # Base.Fix1(\, A): A \ X
        return jnp.linalg.solve(A, X)

    return f


def invdivrem(divisor):
    def f(x):  # Base.Fix2(divrem, d): (div(x, d), rem(x, d))
        q = jnp.trunc(x / divisor)
        return q, x - q * divisor

    return f


add("log", INVF, jnp.log, [0.5], positive)
add("log2", INVF, jnp.log2, [0.5], positive)
add("log10", INVF, jnp.log10, [0.5], positive)
add("log1p", INVF, jnp.log1p, [0.5], constraints.greater_than(-1.0))
add("real_power", INVF, lambda x: x ** jnp.asarray(1.7), [0.5], positive)
add("negative_real_power", INVF, lambda x: x ** jnp.asarray(-0.4), [0.5], positive)
add("odd_power", INVF, lambda x: x ** 5, [0.5])
add("negative_odd_power", INVF, lambda x: x ** -3, [0.5], positive,
    note="x^-3 on x > 0 (the test also takes -x)")
add("base_power", INVF, lambda x: jnp.asarray(0.6) ** x, [0.5])
add("log_base_b", INVF, log_base(jnp.asarray(0.3)), [0.5], positive)
add("log_as_function_of_base", INVF, log_of_base(jnp.asarray(0.7)), [0.5], open_unit)
add("exp2", INVF, jnp.exp2, [0.5])
add("exp10", INVF, lambda x: 10.0 ** x, [0.5])
add("cbrt", INVF, jnp.cbrt, [0.5])
add("deg2rad", INVF, jnp.deg2rad, [0.5])
add("coth", INVF, lambda x: 1.0 / jnp.tanh(x), [0.5], positive)
add("csch", INVF, lambda x: 1.0 / jnp.sinh(x), [0.5], positive)
add("asinh", INVF, jnp.arcsinh, [0.5])
add("atanh", INVF, jnp.arctanh, [0.5], constraints.interval(-1.0, 1.0))
add("acoth", INVF, lambda x: jnp.arctanh(1.0 / x), [1.5], constraints.greater_than(1.0))
add("fix1_minus", INVF, lambda x: jnp.asarray(0.37) - x, [0.5])
add("fix1_divide", INVF, lambda x: jnp.asarray(0.37) / x, [0.5], positive)
add("fix1_left_divide", INVF, lambda x: jnp.asarray(0.37) ** -1 * x, [0.5])
add("matrix_left_multiply", INVF,
    left_multiply(jnp.asarray([[0.9, 0.2, 0.1], [0.3, 0.8, -0.2], [0.1, 0.4, 0.7]])), [jnp.ones((3, 3))])
add("matrix_right_divide", INVF,
    right_divide(jnp.asarray([[0.9, 0.2, 0.1], [0.3, 0.8, -0.2], [0.1, 0.4, 0.7]])), [jnp.ones((3, 3))])
add("matrix_left_divide", INVF,
    left_divide(jnp.asarray([[0.9, 0.2, 0.1], [0.3, 0.8, -0.2], [0.1, 0.4, 0.7]])), [jnp.ones((3, 3))])
add("matrix_inverse", INVF, jnp.linalg.inv, [jnp.ones((2, 2))],
    points=((jnp.asarray([[2.0, 0.3], [0.1, 1.5]]),), (jnp.asarray([[1.0, -0.5], [0.7, 0.4]]),)),
    note="jnp.linalg.inv kept as one relation (its lu and custom_linear_solve solve for b only): a = inv(z)")
add("matrix_transpose", INVF, jnp.transpose, [jnp.ones((2, 3))])
add("reverse", INVF, lambda x: x[::-1], [jnp.ones(3)])
add("divrem", INVF, invdivrem(jnp.asarray(5.0)), [3.0], expect="refuse",
    why="discrete: div(x, 5) is integer-valued; the pair (q, r) has no density")


# =============================================================================================
# ChangesOfVariables.jl — test/getjacobian.jl, test/test_with_ladj.jl
# =============================================================================================
COV = "ChangesOfVariables.jl: test/test_with_ladj.jl"


def cov_foo(x):  # test/getjacobian.jl: foo(x) = inv(exp(-x) + 1)
    return 1.0 / (jnp.exp(-x) + 1)


add("foo", "ChangesOfVariables.jl: test/getjacobian.jl", cov_foo, [0.5])
add("log_of_foo", COV, lambda x: jnp.log(cov_foo(x)), [0.5])
add("broadcast_foo", COV, jax.vmap(cov_foo), [jnp.ones(3)])
add("inv_scalar", COV, lambda x: 1.0 / x, [0.5], positive)
add("sin", COV, jnp.sin, [0.5], note="NoLogAbsDetJacobian in ChangesOfVariables; a period/branch θ here")
add("sum", COV, jnp.sum, [jnp.ones(4)], note="NoLogAbsDetJacobian there; a null-space θ here")


# =============================================================================================
# LogExpFunctions.jl — src/basicfuns.jl, with the inverse pairs of
# ext/LogExpFunctionsInverseFunctionsExt.jl (tested in test/inverse.jl)
# =============================================================================================
LEF = "LogExpFunctions.jl: src/basicfuns.jl"


def log1pexp(x):
    """_log1pexp with the Float64 thresholds of Maechler (2012)."""
    x1, x2, x3, x4 = -745.1332191019412, -36.7368005696771, 18.021826694558577, 33.23111882352963
    return jnp.where(x < x1, 0.0,
                     jnp.where(x < x2, jnp.exp(x),
                               jnp.where(x < x3, jnp.log1p(jnp.exp(x)),
                                         jnp.where(x < x4, x + jnp.exp(-x), x))))


def logexpm1(x):
    return jnp.where(x <= 18.0, jnp.log(jnp.expm1(x)), jnp.where(x <= 33.3, x - jnp.exp(-x), x))


def log1mexp(x):
    return jnp.where(x < np.log(0.5), jnp.log1p(-jnp.exp(x)), jnp.log(-jnp.expm1(x)))


def log2mexp(x):
    return jnp.log1p(-jnp.expm1(x))


def lef_logistic(x):
    lower, upper = -744.4400719213812, 36.7368005696771
    e = jnp.exp(x)
    return jnp.where(x < lower, 0.0, jnp.where(x > upper, 1.0, e / (1.0 + e)))


def lef_logit(x):
    return jnp.where(4 * x < 1, -jnp.log(1.0 / x - 1), 2 * jnp.arctanh(2 * x - 1))


def cloglog(x):
    return jnp.log(-jnp.log1p(-x))


def cexpexp(x):
    return -jnp.expm1(-jnp.exp(x))


def loglogistic(x):
    return -log1pexp(-x)


def logitexp(x):
    return -logexpm1(-x)


def log1mlogistic(x):
    return -log1pexp(x)


def logit1mexp(x):
    return logexpm1(-x)


def softplus_a(a):
    def f(x):  # softplus(x, a) = log1pexp(a * x) / a
        return log1pexp(a * x) / a

    return f


def invsoftplus_a(a):
    def f(y):  # invsoftplus(y, a) = logexpm1(a * y) / a
        return logexpm1(a * y) / a

    return f


add("log1pexp", LEF, log1pexp, [0.5],
    points=((-40.0,), (0.5,), (25.0,)), note="points in every case of the where")
add("logexpm1", LEF, logexpm1, [0.5], positive,
    points=((0.5,), (20.0,), (40.0,)), note="points in every case of the where")
add("log1mexp", LEF, log1mexp, [-0.5], constraints.less_than(0.0), scale=1.5)
add("log2mexp", LEF, log2mexp, [-0.5], constraints.less_than(np.log(2.0)))
add("logistic", LEF, lef_logistic, [0.5], scale=3.0)
add("logit", LEF, lef_logit, [0.5], open_unit, scale=2.0)
add("cloglog", LEF, cloglog, [0.5], open_unit)
add("cexpexp", LEF, cexpexp, [0.5])
add("loglogistic", LEF, loglogistic, [0.5],
    points=((40.0,), (-0.5,), (-25.0,)), note="points in every case of the where")
add("logitexp", LEF, logitexp, [-0.5], constraints.less_than(0.0),
    points=((-0.5,), (-20.0,), (-40.0,)), note="points in every case of the where")
add("log1mlogistic", LEF, log1mlogistic, [0.5],
    points=((-40.0,), (0.5,), (25.0,)), note="points in every case of the where")
add("logit1mexp", LEF, logit1mexp, [-0.5], constraints.less_than(0.0),
    points=((-0.5,), (-20.0,), (-40.0,)), note="points in every case of the where")
add("softplus_with_a", LEF, softplus_a(jnp.asarray(2.5)), [0.5],
    points=((-16.0,), (0.2,), (10.0,)), note="points in every case of the where")
add("invsoftplus_with_a", LEF, invsoftplus_a(jnp.asarray(2.5)), [0.5], positive,
    points=((0.3,), (8.0,), (16.0,)), note="points in every case of the where")


# =============================================================================================
# sbibm — sbibm/tasks/<task>/task.py (simulators with their noise as latent inputs)
# =============================================================================================
SBIBM = "sbibm: sbibm/tasks/"


def two_moons(parameters, a, r):
    """two_moons simulator: p = (r cos a + 0.25, r sin a), then _map_fun."""
    p = jnp.stack([jnp.cos(a) * r + 0.25, jnp.sin(a) * r])
    ang = jnp.asarray(-math.pi / 4.0)
    c, s = jnp.cos(ang), jnp.sin(ang)
    z0 = c * parameters[0] - s * parameters[1]
    z1 = s * parameters[0] + c * parameters[1]
    return p + jnp.stack([-jnp.abs(z0), z1])


def gaussian_linear(scale_tril):
    def simulator(parameters, noise):  # MultivariateNormal(loc=parameters, precision_matrix=10 I)
        return parameters + scale_tril @ noise

    return simulator


def slcp(noise):
    """slcp: 4 draws of a 2-d normal whose mean and covariance are functions of 5 parameters."""

    def simulator(parameters, eps):
        m = parameters[:2]
        s1, s2 = parameters[2] ** 2, parameters[3] ** 2
        rho = jnp.tanh(parameters[4])
        scale_tril = jnp.stack([jnp.stack([s1, jnp.zeros_like(s1)]),
                                jnp.stack([rho * s2, s2 * jnp.sqrt(1 - rho**2)])])
        return m + eps @ scale_tril.T

    return simulator


def gaussian_mixture(mixture_locs_factor, mixture_scales):
    def simulator(parameters, u, noise):
        # the mixture index by the inverse CDF of a uniform (weights 0.5, 0.5)
        idx = (u > 0.5).astype(jnp.int32)
        loc = mixture_locs_factor[idx] * parameters
        scale = mixture_scales[idx]
        return loc + scale * noise

    return simulator


def bernoulli_glm(design_matrix):
    def simulator(parameters, u):
        psi = design_matrix @ parameters
        z = 1 / (1 + jnp.exp(-psi))
        y = (u < z).astype(parameters.dtype)
        return jnp.sum(y)

    return simulator


def lotka_volterra(ts):
    from jax.experimental.ode import odeint

    def rhs(state, t, theta):
        alpha, beta, gamma, delta = theta
        x, y = state
        return jnp.stack([alpha * x - beta * x * y, -gamma * y + delta * x * y])

    def simulator(parameters, noise):
        sol = odeint(rhs, jnp.asarray([30.0, 1.0]), ts, parameters, rtol=1e-10, atol=1e-10)
        return jnp.exp(jnp.log(sol[1:]) + 0.1 * noise)  # LogNormal(log(sol), 0.1)

    return simulator


add("two_moons", SBIBM + "two_moons/task.py", two_moons, [arr(0.1, 0.2), 0.3, 0.1],
    [constraints.interval(-1.0, 1.0), constraints.interval(-math.pi / 2, math.pi / 2), positive])
add("gaussian_linear", SBIBM + "gaussian_linear/task.py", gaussian_linear(jnp.sqrt(0.1) * jnp.eye(3)),
    [jnp.zeros(3), jnp.zeros(3)])
add("gaussian_linear_uniform", SBIBM + "gaussian_linear_uniform/task.py",
    gaussian_linear(jnp.sqrt(0.1) * jnp.eye(3)), [jnp.zeros(3), jnp.zeros(3)],
    [constraints.interval(-1.0, 1.0), real])
add("slcp", SBIBM + "slcp/task.py", slcp(None), [jnp.zeros(5), jnp.zeros((4, 2))],
    [constraints.interval(-3.0, 3.0), real])
add("gaussian_mixture", SBIBM + "gaussian_mixture/task.py", gaussian_mixture(arr(1.0, 1.0), arr(1.0, 0.1)),
    [jnp.zeros(2), 0.3, jnp.zeros(2)], [constraints.interval(-10.0, 10.0), open_unit, real])
add("bernoulli_glm", SBIBM + "bernoulli_glm/task.py",
    bernoulli_glm(jnp.asarray([[1.0, 0.2], [0.5, -0.3], [-0.4, 0.8]])), [jnp.zeros(2), jnp.full(3, 0.5)],
    [real, open_unit], expect="refuse", why="discrete: the summary is a spike count (a sum of comparisons)")
add("lotka_volterra", SBIBM + "lotka_volterra/task.py", lotka_volterra(jnp.linspace(0.0, 2.0, 3)),
    [arr(0.6, 0.03, 0.8, 0.03), jnp.zeros((2, 2))], [positive, real], jitter=0.2,
    note="odeint instead of sbibm's diffeqtorch (tolerances 1e-10, so that its adjoint gradient agrees with "
         "finite differences); θ free, the noise solved; odeint's custom_vjp call is kept whole, so the "
         "forward-evaluated ODE solve keeps its reverse rule")


# =============================================================================================
# NumPyro — numpyro/distributions/transforms.py and model fragments of its examples
# =============================================================================================
NPT = "NumPyro: numpyro/distributions/transforms.py"
NPX = "NumPyro: examples/"


def stick_breaking(x):
    x = x - jnp.log(x.shape[-1] - jnp.arange(x.shape[-1]))
    z = jax.nn.sigmoid(x)
    z1m_cumprod = jnp.cumprod(1 - z, axis=-1)
    z_padded = jnp.pad(z, [(0, 1)], mode="constant", constant_values=1.0)
    z1m_cumprod_shifted = jnp.pad(z1m_cumprod, [(1, 0)], mode="constant", constant_values=1.0)
    return z_padded * z1m_cumprod_shifted


def stick_breaking_head(x):
    return stick_breaking(x)[:-1]


def ordered_transform(x):
    z = jnp.concatenate([x[..., :1], jnp.exp(x[..., 1:])], axis=-1)
    return jnp.cumsum(z, axis=-1)


def l1_ball(x):
    t = jnp.tanh(x)
    remainder = jnp.cumprod(1 - jnp.abs(t[..., :-1]), axis=-1)
    remainder = jnp.pad(remainder, [(1, 0)], mode="constant", constant_values=1.0)
    return t * remainder


def lower_cholesky_affine(loc, scale_tril):
    def f(x):
        return loc + jnp.squeeze(jnp.matmul(scale_tril, x[..., jnp.newaxis]), axis=-1)

    return f


def recursive_linear(transition_matrix):
    def f(x):
        def step(y, xt):
            y = jnp.einsum("...ij,...j->...i", transition_matrix, y) + xt
            return y, y

        _, y = lax.scan(step, jnp.zeros(x.shape[-1], x.dtype), x)
        return y

    return f


def zero_sum(x):
    """ZeroSumTransform.extend_axis on one axis: K−1 → K entries that sum to zero."""
    n = x.shape[-1] + 1
    sum_vals = jnp.sum(x, -1, keepdims=True)
    norm = sum_vals / (jnp.sqrt(n) + n)
    fill_val = norm - sum_vals / jnp.sqrt(n)
    out = jnp.concatenate([x, fill_val], -1)
    return out - norm


def haar(x):
    """_haar_forward on a length-4 vector."""
    n = x.shape[-1] // 2
    z = jnp.zeros_like(x)
    hi = jnp.sqrt(0.5) * (x[..., ::2] - x[..., 1::2])
    lo = jnp.sqrt(0.5) * (x[..., ::2] + x[..., 1::2])
    z = z.at[..., n:].set(hi)
    z = z.at[..., :n].set(lo)
    if n > 1:
        z = z.at[..., :n].set(haar(z[..., :n]))
    return z


def simplex_to_ordered(anchor_point):
    def f(x_head):  # x = (x_head, 1 − Σ x_head); s = cumsum(x[:-1])
        x = jnp.concatenate([x_head, 1 - jnp.sum(x_head, keepdims=True)])
        s = jnp.cumsum(x[..., :-1], axis=-1)
        return jsp.logit(s) + anchor_point

    return f


def horseshoe_mean(X):
    def f(tau, lambdas, unscaled_betas):  # examples/horseshoe_regression.py
        scaled_betas = tau * lambdas * unscaled_betas
        return jnp.dot(X, scaled_betas)

    return f


def horseshoe_likelihood(X):
    def f(scaled_betas, prec_obs, eps):  # Normal(jnp.dot(X, betas), 1/√prec_obs), its noise as a latent
        sigma_obs = 1.0 / jnp.sqrt(prec_obs)
        return jnp.dot(X, scaled_betas) + sigma_obs * eps

    return f


def covtype_logits(data):
    def f(coefs):  # examples/covtype.py: logits = jnp.dot(data[idx], coefs)
        return jnp.dot(data, coefs)

    return f


def covtype_probs(data):
    def f(coefs):  # Bernoulli(logits=jnp.dot(data, coefs)) as probabilities
        return jax.nn.sigmoid(jnp.dot(data, coefs))

    return f


def imputed_logits(age_data, age_nanidx):
    def f(age_impute, a, b):  # notebooks/source/bayesian_imputation.ipynb: impute, then a linear predictor
        age = jnp.asarray(age_data).at[age_nanidx].set(age_impute)
        return a + b * age

    return f


def group_sum_at(groups, num_groups):
    def f(x):
        return jnp.zeros(num_groups, x.dtype).at[groups].add(x)

    return f


def group_mean_segment_sum(groups, num_groups):
    counts = jnp.zeros(num_groups).at[groups].add(1.0)

    def f(x):
        return jax.ops.segment_sum(x, groups, num_segments=num_groups) / counts

    return f


def eight_schools_transform_reparam(mu, tau, theta_base):
    # README.md: TransformReparam of Normal(mu, tau) = AffineTransform(mu, tau) of Normal(0, 1)
    return mu + tau * theta_base


def funnel_loc_scale_reparam(y, x_decentered):
    # examples/funnel.py: LocScaleReparam(0) of Normal(0, exp(y / 2))
    return jnp.exp(y / 2) * x_decentered


def mortality_age_drift(alpha_age_drift):
    # examples/mortality.py: alpha_age = jnp.cumsum(alpha_age_drift, -3) (a random walk over age)
    return jnp.cumsum(alpha_age_drift, -3)


def ar2_scan(alpha_1, alpha_2, const, sigma):
    def f(eps):  # examples/ar2.py: y_t ~ Normal(const + alpha_1 y_{t-1} + alpha_2 y_{t-2}, sigma)
        def transition(carry, e):
            y_prev, y_prev_prev = carry
            m_t = const + alpha_1 * y_prev + alpha_2 * y_prev_prev
            y_t = m_t + sigma * e
            return (y_t, y_prev), y_t

        _, ys = lax.scan(transition, (jnp.zeros(()), jnp.zeros(())), eps)
        return ys

    return f


def dirichlet_from_gammas_head(x):
    return (x / jnp.sum(x))[:-1]


add("stick_breaking", NPT, stick_breaking, [arr(0.1, -0.3, 0.2)], expect="refuse",
    why="overdetermined: the K+1 outputs sum to 1, so they carry only K free coordinates")
add("stick_breaking_head", NPT, stick_breaking_head, [arr(0.1, -0.3, 0.2)])
add("ordered_transform", NPT, ordered_transform, [arr(0.1, -0.3, 0.2, 0.4)])
add("l1_ball", NPT, l1_ball, [arr(0.1, -0.3, 0.2)])
add("lower_cholesky_affine", NPT,
    lower_cholesky_affine(arr(0.5, -1.0), jnp.asarray([[1.5, 0.0], [0.4, 0.7]])), [arr(0.1, 0.2)])
add("recursive_linear", NPT, recursive_linear(jnp.asarray([[0.9, 0.1], [-0.2, 0.8]])), [jnp.zeros((3, 2))])
add("zero_sum", NPT, zero_sum, [arr(0.1, -0.3, 0.2)], expect="refuse",
    why="overdetermined: the K outputs sum to 0, so they carry only K−1 free coordinates")
add("haar", NPT, haar, [arr(0.1, -0.3, 0.2, 0.4)])
add("simplex_to_ordered", NPT, simplex_to_ordered(jnp.asarray(0.3)), [arr(0.2, 0.3)],
    points=((arr(0.2, 0.3),), (arr(0.5, 0.1),), (arr(0.05, 0.6),)),
    note="the first K−1 coordinates of a simplex point (ppinv takes entrywise supports only)")
add("sigmoid_transform", NPT, jax.nn.sigmoid, [jnp.zeros(2)])
add("softplus_transform", NPT, jax.nn.softplus, [jnp.zeros(2)])
add("power_transform_np", NPT, lambda x: jnp.power(x, 2.5), [jnp.ones(2)], positive)
add("affine_transform", NPT, lambda x: arr(1.0, -2.0) + arr(0.5, 3.0) * x, [jnp.zeros(2)])
add("exp_transform", NPT, jnp.exp, [jnp.zeros(2)])
add("abs_transform", NPT, jnp.abs, [jnp.zeros(2)])
add("reshape_transform", NPT, lambda x: jnp.reshape(x, (2, 3)), [jnp.zeros(6)])
X3 = jnp.asarray([[1.0, 0.5, -0.2, 0.3], [0.2, -1.0, 0.4, 0.1], [0.3, 0.3, 0.3, -0.6]])
add("horseshoe_mean_function", NPX + "horseshoe_regression.py", horseshoe_mean(X3),
    [1.0, jnp.ones(4), jnp.zeros(4)], [positive, positive, real])
add("horseshoe_likelihood", NPX + "horseshoe_regression.py", horseshoe_likelihood(X3[:, :2]),
    [jnp.zeros(2), 1.0, jnp.zeros(3)], [real, positive, real])
add("covtype_logits_underdetermined", NPX + "covtype.py", covtype_logits(X3), [jnp.zeros(4)])
add("covtype_logits_overdetermined", NPX + "covtype.py",
    covtype_logits(jnp.asarray([[1.0, 0.5], [0.2, -1.0], [0.3, 0.3], [-0.7, 0.1], [0.4, 0.9]])), [jnp.zeros(2)],
    expect="refuse", why="overdetermined: 5 logits of a 2-coefficient linear map")
add("covtype_probabilities", NPX + "covtype.py", covtype_probs(X3[:2, :3]), [jnp.zeros(3)])
add("bayesian_imputation", "NumPyro: notebooks/source/bayesian_imputation.ipynb",
    imputed_logits(jnp.asarray([30.0, 0.0, 25.0, 0.0]), jnp.asarray([1, 3])), [jnp.zeros(2), 0.0, 0.1])
add("group_sum_at_add", "JAX: jax/_src/numpy/array_methods.py (x.at[idx].add, group totals)",
    group_sum_at(jnp.asarray([0, 1, 0, 2, 1]), 3), [jnp.zeros(5)])
add("group_mean_segment_sum", "JAX: jax/_src/ops/scatter.py (segment_sum, group means)",
    group_mean_segment_sum(jnp.asarray([0, 1, 0, 2, 1]), 3), [jnp.zeros(5)])
add("eight_schools_transform_reparam", "NumPyro: README.md (eight schools, TransformReparam)",
    eight_schools_transform_reparam, [0.0, 1.0, jnp.zeros(8)], [real, positive, real])
add("funnel_loc_scale_reparam", NPX + "funnel.py", funnel_loc_scale_reparam, [0.0, jnp.zeros(4)])
add("mortality_age_drift", NPX + "mortality.py", mortality_age_drift, [jnp.zeros((4, 1, 1))])
add("ar2_scan", NPX + "ar2.py", ar2_scan(jnp.asarray(0.5), jnp.asarray(-0.3), jnp.asarray(0.1), jnp.asarray(0.8)),
    [jnp.zeros(5)])
add("dirichlet_from_gammas_head", "JAX: jax/_src/random.py (dirichlet: gamma draws over their sum), first K−1",
    dirichlet_from_gammas_head, [jnp.ones(3)], positive)


# =============================================================================================
# Textbook physics and chemistry (formula, and the book it is quoted from)
# =============================================================================================
PHYS = "textbook physics: "
CHEM = "textbook chemistry: "

R_GAS, FARADAY, G_ACC = 8.314462618, 96485.33212, 9.80665
C_LIGHT = 299792458.0


def ideal_gas_pressure(n, T, V):  # P = nRT / V
    return n * R_GAS * T / V


def arrhenius(A, Ea, T):  # k = A exp(−Ea / (R T))
    return A * jnp.exp(-Ea / (R_GAS * T))


def michaelis_menten_substrate(Vmax, Km):
    def rate(S):
        return Vmax * S / (Km + S)

    return rate


def michaelis_menten_parameters(S):
    def rate(Vmax, Km):  # two substrate concentrations, two rates observed
        return Vmax * S / (Km + S)

    return rate


def henderson_hasselbalch(pKa):
    def pH(A, HA):
        return pKa + jnp.log10(A / HA)

    return pH


def beer_lambert(epsilon, length):
    def absorbance(c):
        return epsilon * length * c

    return absorbance


def projectile_range(v, angle):
    return v**2 * jnp.sin(2 * angle) / G_ACC


def relativistic_gamma(v):
    return 1 / jnp.sqrt(1 - v**2 / C_LIGHT**2)


def nernst(E0, T, n):
    def potential(Q):
        return E0 - R_GAS * T / (n * FARADAY) * jnp.log(Q)

    return potential


def kinetic_energy(m, v):
    return 0.5 * m * v**2


def stefan_boltzmann(area):
    sigma = 5.670374419e-8

    def power(T):
        return sigma * area * T**4

    return power


def pendulum_period(g):
    def period(L):
        return 2 * jnp.pi * jnp.sqrt(L / g)

    return period


def radioactive_decay(N0, lam):
    def remaining(t):
        return N0 * jnp.exp(-lam * t)

    return remaining


def newton_cooling(T_ambient, T0, t):
    def temperature(k):
        return T_ambient + (T0 - T_ambient) * jnp.exp(-k * t)

    return temperature


def planck_temperature(nu):
    h, k_B = 6.62607015e-34, 1.380649e-23

    def radiance(T):  # B_ν(T) = 2hν³/c² / (exp(hν / k T) − 1), in units of 1e-8
        return 2 * h * nu**3 / C_LIGHT**2 / jnp.expm1(h * nu / (k_B * T)) * 1e8

    return radiance


def snell(n1, n2):
    def refracted_angle(theta1):
        return jnp.arcsin(n1 * jnp.sin(theta1) / n2)

    return refracted_angle


def thin_lens(f):
    def image_distance(d_o):  # 1/f = 1/d_o + 1/d_i
        return 1 / (1 / f - 1 / d_o)

    return image_distance


def equilibrium_constant(dH, dS):
    def K(T):  # K = exp(−(ΔH − TΔS) / (R T))
        return jnp.exp(-(dH - T * dS) / (R_GAS * T))

    return K


def poiseuille(dP, mu, L):
    def flow(r):
        return jnp.pi * r**4 * dP / (8 * mu * L)

    return flow


def van_der_waals_temperature(n, a, b):
    def pressure(T, V):  # P = nRT / (V − nb) − a n² / V², with V known
        return n * R_GAS * T / (V - n * b) - a * n**2 / V**2

    return pressure


def van_der_waals_volume(n, a, b, T):
    def pressure(V):  # P(V) at fixed T: a cubic in V, one to three real roots
        return n * R_GAS * T / (V - n * b) - a * n**2 / V**2

    return pressure


def finite_square_well(z0):
    def mismatch(z):  # Griffiths eq. 2.156: tan z = √((z0/z)² − 1), written as z tan z − √(z0² − z²)
        return z * jnp.tan(z) - jnp.sqrt(z0**2 - z**2)

    return mismatch


def polar_to_cartesian(r, t):
    return r * jnp.cos(t), r * jnp.sin(t)


def spherical_to_cartesian(r, theta, phi):
    return (r * jnp.sin(theta) * jnp.cos(phi), r * jnp.sin(theta) * jnp.sin(phi), r * jnp.cos(theta))


def lorentz_boost(v):
    beta = v / C_LIGHT
    gamma = 1 / jnp.sqrt(1 - beta**2)

    def boost(ct, x):
        return gamma * (ct - beta * x), gamma * (x - beta * ct)

    return boost


def ohm_power(I, R):  # V = I R and P = I² R, both observed
    return I * R, I**2 * R


def clausius_clapeyron(P1, T1, L):
    def P2(T2):
        return P1 * jnp.exp(-L / R_GAS * (1 / T2 - 1 / T1))

    return P2


def doppler(f_source, c_sound):
    def observed(v_source):  # source moving towards the observer
        return f_source * c_sound / (c_sound - v_source)

    return observed


def coulomb(k, q1, q2):
    def force(r):
        return k * q1 * q2 / r**2

    return force


def escape_velocity(GM):
    def v(r):
        return jnp.sqrt(2 * GM / r)

    return v


def kepler_third_law(GM):
    def period(a):
        return 2 * jnp.pi * jnp.sqrt(a**3 / GM)

    return period


add_formula("ideal_gas", CHEM + "Atkins, Physical Chemistry, ch. 1 (PV = nRT)", ideal_gas_pressure, [1.0, 300.0, 0.02],
    positive)
add_formula("arrhenius", CHEM + "Atkins, Physical Chemistry, ch. 17 (k = A exp(−Ea/RT))", arrhenius,
    [1e3, 5e4, 300.0], positive)
add_formula("michaelis_menten_substrate", CHEM + "Berg, Biochemistry, ch. 8 (v = Vmax S / (Km + S))",
    michaelis_menten_substrate(jnp.asarray(2.0), jnp.asarray(0.5)), [1.0], positive)
add_formula("michaelis_menten_parameters", CHEM + "Berg, Biochemistry, ch. 8 (v = Vmax S / (Km + S))",
    michaelis_menten_parameters(arr(0.5, 2.0)), [1.0, 1.0], positive)
add_formula("henderson_hasselbalch", CHEM + "Atkins, Physical Chemistry, ch. 6 (pH = pKa + log10([A−]/[HA]))",
    henderson_hasselbalch(jnp.asarray(4.76)), [0.1, 0.1], positive)
add_formula("beer_lambert", CHEM + "Harris, Quantitative Chemical Analysis, ch. 18 (A = ε l c)",
    beer_lambert(jnp.asarray(1.2e4), jnp.asarray(1.0)), [1e-4], positive)
add_formula("projectile_range", PHYS + "Halliday, Fundamentals of Physics, ch. 4 (R = v² sin 2θ / g)",
    projectile_range, [10.0, 0.6], [positive, constraints.interval(0.0, math.pi / 2)],
    points=((10.0, 0.3), (7.0, 0.4), (12.0, 1.1)),
    note="points away from the fold at 45°, where central differences cannot resolve 1/√(1 − z²)")
add_formula("relativistic_gamma", PHYS + "Taylor, Classical Mechanics, ch. 15 (γ = 1/√(1 − v²/c²))",
    relativistic_gamma, [1e8], constraints.interval(-C_LIGHT, C_LIGHT), rtol=1e-7)
add_formula("nernst", CHEM + "Atkins, Physical Chemistry, ch. 6 (E = E0 − RT/(nF) ln Q)",
    nernst(jnp.asarray(0.34), jnp.asarray(298.15), jnp.asarray(2.0)), [1.0], positive)
add_formula("kinetic_energy", PHYS + "Halliday, Fundamentals of Physics, ch. 7 (E = m v² / 2)", kinetic_energy,
    [2.0, 3.0], [positive, real])
add_formula("stefan_boltzmann", PHYS + "Halliday, Fundamentals of Physics, ch. 18 (P = σ A T⁴)",
    stefan_boltzmann(jnp.asarray(2.0)), [300.0], positive)
add_formula("pendulum_period", PHYS + "Halliday, Fundamentals of Physics, ch. 15 (T = 2π √(L/g))",
    pendulum_period(jnp.asarray(G_ACC)), [1.0], positive)
add_formula("radioactive_decay_time", PHYS + "Krane, Introductory Nuclear Physics, ch. 6 (N = N0 e^(−λt))",
    radioactive_decay(jnp.asarray(1e3), jnp.asarray(0.3)), [1.0], positive)
add_formula("newton_cooling_rate", PHYS + "Incropera, Heat Transfer, ch. 5 (T = Ta + (T0 − Ta) e^(−kt))",
    newton_cooling(jnp.asarray(20.0), jnp.asarray(90.0), jnp.asarray(3.0)), [0.2], positive)
add_formula("planck_temperature", PHYS + "Rybicki & Lightman, Radiative Processes, ch. 1 (Planck's law)",
    planck_temperature(jnp.asarray(1e14)), [5000.0], positive)
add_formula("snell", PHYS + "Hecht, Optics, ch. 4 (n1 sin θ1 = n2 sin θ2)", snell(jnp.asarray(1.0), jnp.asarray(1.5)),
    [0.4], constraints.interval(-math.pi / 2, math.pi / 2))
add_formula("thin_lens", PHYS + "Hecht, Optics, ch. 5 (1/f = 1/do + 1/di)", thin_lens(jnp.asarray(0.1)), [0.3],
    constraints.greater_than(0.1))
add_formula("equilibrium_constant", CHEM + "Atkins, Physical Chemistry, ch. 6 (K = exp(−ΔG/RT))",
    equilibrium_constant(jnp.asarray(-4e4), jnp.asarray(-50.0)), [300.0], positive)
add_formula("poiseuille", PHYS + "Bird, Stewart & Lightfoot, Transport Phenomena, ch. 2 (Q = π r⁴ ΔP / 8μL)",
    poiseuille(jnp.asarray(100.0), jnp.asarray(1e-3), jnp.asarray(1.0)), [1e-3], positive)
add_formula("van_der_waals_temperature", CHEM + "Atkins, Physical Chemistry, ch. 1 (van der Waals equation)",
    van_der_waals_temperature(jnp.asarray(1.0), jnp.asarray(0.137), jnp.asarray(3.87e-5)), [300.0, 0.02],
    [positive, constraints.greater_than(3.87e-5)], note="T and V latent, P observed")
add_formula("van_der_waals_volume", CHEM + "Atkins, Physical Chemistry, ch. 1 (van der Waals equation)",
    van_der_waals_volume(jnp.asarray(1.0), jnp.asarray(0.137), jnp.asarray(3.87e-5), jnp.asarray(100.0)),
    [2e-4], constraints.greater_than(3.87e-5),
    note="N2 at 100 K, below its critical 126 K: the isotherm loops, up to three V for one P "
         "(Cardano's roots of the cubic, a discrete θ picking one)")
add_formula("finite_square_well", PHYS + "Griffiths, Introduction to Quantum Mechanics, eq. 2.156",
    finite_square_well(jnp.asarray(8.0)), [1.0], constraints.interval(0.0, 8.0), expect="refuse",
    why="non_unique: z tan z − √(z0² − z²) takes each value once per branch of tan (three for z0 = 8), "
        "with no closed form")
add_formula("polar_to_cartesian", PHYS + "Taylor, Classical Mechanics, ch. 1 (x = r cos t, y = r sin t)",
    polar_to_cartesian, [1.0, 0.3], [positive, constraints.interval(-math.pi, math.pi)])
add_formula("spherical_to_cartesian", PHYS + "Taylor, Classical Mechanics, ch. 1 (spherical coordinates)",
    spherical_to_cartesian, [1.0, 0.3, 0.2],
    [positive, constraints.interval(0.0, math.pi), constraints.interval(-math.pi, math.pi)])
add_formula("lorentz_boost", PHYS + "Taylor, Classical Mechanics, ch. 15 (Lorentz transformation)",
    lorentz_boost(jnp.asarray(0.6 * C_LIGHT)), [1.0, 2.0])
add_formula("ohm_and_power", PHYS + "Halliday, Fundamentals of Physics, ch. 26 (V = IR, P = I²R)", ohm_power,
    [2.0, 5.0], positive)
add_formula("clausius_clapeyron", CHEM + "Atkins, Physical Chemistry, ch. 4 (Clausius–Clapeyron)",
    clausius_clapeyron(jnp.asarray(101325.0), jnp.asarray(373.15), jnp.asarray(40660.0)), [350.0], positive)
add_formula("doppler", PHYS + "Halliday, Fundamentals of Physics, ch. 17 (Doppler effect)",
    doppler(jnp.asarray(440.0), jnp.asarray(343.0)), [10.0], constraints.less_than(343.0))
add_formula("coulomb_distance", PHYS + "Griffiths, Introduction to Electrodynamics, ch. 2 (F = k q1 q2 / r²)",
    coulomb(jnp.asarray(8.9875517923e9), jnp.asarray(1e-6), jnp.asarray(2e-6)), [0.1], positive)
add_formula("escape_velocity", PHYS + "Halliday, Fundamentals of Physics, ch. 13 (v = √(2GM/r))",
    escape_velocity(jnp.asarray(3.986e14)), [6.4e6], positive)
add_formula("kepler_third_law", PHYS + "Taylor, Classical Mechanics, ch. 8 (T = 2π √(a³/GM))",
    kepler_third_law(jnp.asarray(1.327e20)), [1.5e11], positive)


def speed_from_velocity(vy):
    def speed(vx):  # |v| = √(vx² + vy²), vy measured
        return jnp.hypot(vx, vy)

    return speed


def rlc_impedance(reactance):
    def impedance(R):  # |Z| = √(R² + (X_L − X_C)²)
        return jnp.hypot(R, reactance)

    return impedance


def relativistic_energy(mass):
    def energy(p):  # E² = (pc)² + (mc²)², natural units (c = 1)
        return jnp.sqrt(p**2 + mass**2)

    return energy


add_formula("speed_from_velocity", PHYS + "Halliday, Fundamentals of Physics, ch. 4 (|v| = √(vx² + vy²))",
    speed_from_velocity(jnp.asarray(3.0)), [4.0], note="jnp.hypot kept as one relation: vx = ±√(v² − vy²), a sign θ")
add_formula("rlc_impedance", PHYS + "Halliday, Fundamentals of Physics, ch. 31 (Z = √(R² + (X_L − X_C)²))",
    rlc_impedance(jnp.asarray(-25.0)), [50.0], positive, note="a positive resistance: no sign θ")
add_formula("relativistic_energy", PHYS + "Taylor, Classical Mechanics, ch. 15 (E² = (pc)² + (mc²)²)",
    relativistic_energy(jnp.asarray(0.511)), [1.2], positive)



def baseline_category_log_probs(z):  # multinomial logit with the last category as reference (logit 0)
    return jax.nn.log_softmax(jnp.concatenate([z, jnp.zeros(1)]))[:-1]


def log_probs_with_known_logits(known):
    def head(z):  # the first categories' log-probabilities, the other logits known
        return jax.nn.log_softmax(jnp.concatenate([z, known]))[: z.shape[0]]

    return head


def categorical_probs_head(logits):  # CategoricalLogits.probs = softmax(logits), K − 1 of them observed
    return jax.nn.softmax(logits)[:-1]


NN = "JAX: jax/_src/nn/functions.py "
add("baseline_category_log_probs", NN + "(log_softmax of concat(z, 0): baseline-category logits)",
    baseline_category_log_probs, [arr(0.1, -0.3, 0.2)])
add("log_probs_with_known_logits", NN + "(log_softmax, the first k outputs, the other logits known)",
    log_probs_with_known_logits(arr(0.4, -1.1)), [arr(0.1, -0.3, 0.2)])
add("categorical_probs_head", "NumPyro: numpyro/distributions/discrete.py (CategoricalLogits.probs), first K−1",
    categorical_probs_head, [arr(0.3, -0.2, 1.1, 0.0)], note="every logit unknown: their shift is θ")


def cholesky_of_free_entries(n):
    rows, cols = np.tril_indices(n)

    def factor(a):  # CholeskyTransform (x ↦ cholesky(x)) on the SPD matrix with lower triangle a
        t = jnp.zeros((n, n)).at[rows, cols].set(a)
        return jnp.linalg.cholesky(t + jnp.tril(t, -1).T)[rows, cols]  # the factor's free entries

    return factor


add("cholesky_transform", NPT + " (CholeskyTransform)", cholesky_of_free_entries(3),
    [arr(2.0, 0.3, 1.5, -0.2, 0.1, 1.2)], jitter=0.1,
    note="the matrix from its n(n+1)/2 free entries, the factor's lower triangle observed: A = L·Lᵀ (the cholesky "
         "strategy), log|det| = n log 2 + Σ (n − i + 1) log L_ii")


def cholesky_lower_triangle(a):  # jnp.linalg.cholesky of any square matrix: it reads (a + aᵀ)/2
    rows, cols = np.tril_indices(a.shape[0])
    return jnp.linalg.cholesky(a)[rows, cols]


def gp_kernel_cholesky(x):
    rows, cols = np.tril_indices(x.shape[0])

    def factor(var, length, noise):  # examples/gp.py's RBF kernel plus noise, its Cholesky factor observed
        deltaXsq = jnp.power((x[:, None] - x) / length, 2.0)
        k = var * jnp.exp(-0.5 * deltaXsq) + noise * jnp.eye(x.shape[0])
        return jnp.linalg.cholesky(k)[rows, cols]

    return factor


add("cholesky_of_unknown_matrix", NPT + " (CholeskyTransform of an unconstrained matrix)", cholesky_lower_triangle,
    [jnp.asarray([[2.0, 0.4, -0.1], [0.2, 1.5, 0.3], [-0.3, 0.1, 1.2]])], jitter=0.1,
    note="A = L·Lᵀ + K: the antisymmetric part K, which cholesky ignores, is θ")
add("gp_kernel_cholesky", NPX + "gp.py", gp_kernel_cholesky(arr(-1.0, 0.0, 1.5)), [1.0, 0.7, 0.1], positive,
    expect="refuse", why="overdetermined: three kernel parameters behind the six free entries of the factor")
