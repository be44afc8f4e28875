"""The alternatives ppinv is compared with: soft constraints, hand-written inverses, Mici, ABC-SMC.

Each baseline is a function of a model name (or a model) returning something a runner in
``experiments/compare.py`` can sample; none of them uses ppinv except to find valid starts.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
from numpyro.primitives import Messenger  # noqa: E402

import models  # noqa: E402
from models import bilinear  # noqa: E402

# =====================================================================================
# soft-constraint baseline
# =====================================================================================
class _RecordDeterministic(Messenger):
    """Records the values of the named ``deterministic`` sites (the exact observations)."""

    def __init__(self, names):
        super().__init__()
        self.names = set(names)
        self.values = {}

    def postprocess_message(self, msg):
        name = msg.get("name")
        if name in self.names:
            if msg["type"] != "deterministic":
                raise NotImplementedError(
                    f"soft_condition replaces deterministic sites only; '{name}' is a {msg['type']} site"
                )
            self.values[name] = msg["value"]


def soft_condition(model, data, eps):
    """The model with each exact observation replaced by a Normal likelihood of width ``eps``.

    For every ``name -> y_obs`` in ``data`` (names of ``numpyro.deterministic`` sites), the
    returned model runs ``model`` unchanged, records the site's value ``f(x)`` and adds an
    observed sample site ``"<name>_soft" ~ Normal(f(x), eps)`` (all components independent)
    with ``obs=y_obs``. The latent sample sites keep their names and priors, so stock
    NumPyro kernels sample the posterior of the *soft* constraint ``‖f(x) − y‖ ≈ eps``,
    which tends to the exact conditional as ``eps → 0`` (and gets harder to sample).
    """
    data = {k: jnp.asarray(v) for k, v in data.items()}

    def soft_model(*args, **kwargs):
        rec = _RecordDeterministic(data)
        with rec:
            out = model(*args, **kwargs)
        for name, y in data.items():
            if name not in rec.values:
                raise KeyError(f"soft_condition: the model has no deterministic site '{name}'")
            fx = rec.values[name]
            # validate_args=False: at prior draws f(x) may overflow (Lotka–Volterra); NUTS starts from valid points
            numpyro.sample(f"{name}_soft", dist.Normal(fx, eps, validate_args=False).to_event(jnp.ndim(fx)), obs=y)
        return out

    soft_model.__name__ = f"soft_{getattr(model, '__name__', 'model')}_{eps:g}"
    return soft_model


# =====================================================================================
# hand-written inverses (same θ as a human would pick; NUTS over θ)
# =====================================================================================
def hand_product_lognormal(y=models.product_lognormal.Y):
    """θ = a > 0 (its prior as the θ density), b = y / a, log|db/dy| = −log a."""

    def model():
        a = numpyro.sample("a", dist.LogNormal(0.0, 1.0))
        b = y / a
        numpyro.factor("b_given_a", dist.LogNormal(0.0, 1.0).log_prob(b) - jnp.log(a))
        numpyro.deterministic("b", b)

    return model


def hand_bilinear(y=bilinear.Y):
    """θ = (x₁, x₂) with their N(0, 1) priors, x₀ = y − x₁x₂, log|det| = 0."""

    def model():
        x1 = numpyro.sample("x1", dist.Normal(0.0, 1.0))
        x2 = numpyro.sample("x2", dist.Normal(0.0, 1.0))
        x0 = y - x1 * x2
        numpyro.factor("x0_given_x12", dist.Normal(0.0, 1.0).log_prob(x0))
        numpyro.deterministic("x0", x0)

    return model


def hand_lotka_volterra():
    """θ = u_z (the rates' noise, with its prior); u_n solved in closed form from the observed path.

    With the whole trajectory observed, every step's carries ``(r_{s−1}, f_{s−1})`` are data, so
    ``u_n`` is an explicit (vectorised, no scan) function of ``z`` and ``y``; ∂u_n/∂y is triangular
    with diagonal 1/√δt, so log|det| = −n log √δt (a constant; 0 for δt = 1).
    """
    lv = models.lotka_volterra
    y = jnp.asarray(lv.DATA["y"]).reshape(lv.N_STEPS, 2)
    r, f = y[:, 0], y[:, 1]
    r_prev = jnp.concatenate([jnp.array([lv.R0]), r[:-1]])
    f_prev = jnp.concatenate([jnp.array([lv.F0]), f[:-1]])
    dt, sq = lv.DT, math.sqrt(lv.DT)
    log_det = -2 * lv.N_STEPS * math.log(sq)

    def model():
        u_z = numpyro.sample("u_z", dist.Normal(0.0, 1.0).expand([4]).to_event(1))
        z = jnp.exp(-2.0 + u_z)
        u_r = (r - r_prev - dt * (z[0] * r_prev - z[1] * r_prev * f_prev)) / sq
        u_f = (f - f_prev - dt * (z[3] * r * f_prev - z[2] * f_prev)) / sq
        u_n = jnp.stack([u_r, u_f], axis=-1).reshape(-1)
        numpyro.factor("u_n_given_u_z", jnp.sum(dist.Normal(0.0, 1.0).log_prob(u_n)) + log_det)
        numpyro.deterministic("u_n", u_n)

    return model


def _tomography_basis():
    """Pivot columns B (m, well conditioned: QR with column pivoting) and free columns F of the routing matrix."""
    import scipy.linalg

    nt = models.network_tomography
    a = nt.routing_matrix()
    _, _, piv = scipy.linalg.qr(a, pivoting=True)
    m = a.shape[0]
    return a, np.sort(piv[:m]), np.sort(piv[m:])


def hand_network_tomography():
    """θ = the free flows x_F > 0 (their LogNormal priors); the basic flows x_B = B⁻¹(y − F x_F),
    log|det ∂x_B/∂y| = −log|det B| (a constant); density zero where some x_B ≤ 0."""
    nt = models.network_tomography
    a, basic, free = _tomography_basis()
    b_inv = np.linalg.inv(a[:, basic])
    c, m_free = jnp.asarray(b_inv @ nt.DATA["y"]), jnp.asarray(b_inv @ a[:, free])
    log_det = -np.linalg.slogdet(a[:, basic])[1]
    prior = dist.LogNormal(nt.MU, nt.SIGMA)

    def model():
        x_free = numpyro.sample("x_free", prior.expand([len(free)]).to_event(1))
        x_basic = c - m_free @ x_free
        inside = jnp.all(x_basic > 0)
        safe = jnp.where(inside, x_basic, 1.0)  # a safe value outside, so that gradients stay finite
        numpyro.factor("x_basic_given_free", jnp.where(inside, jnp.sum(prior.log_prob(safe)) + log_det, -jnp.inf))
        numpyro.deterministic("x", jnp.zeros(a.shape[1]).at[basic].set(x_basic).at[free].set(x_free))

    return model


def hand_network_tomography_theta(latents):
    """The hand inverse's θ (``{"x_free": ...}``) reproducing latent values ``{"x": ...}``."""
    _, _, free = _tomography_basis()
    return {"x_free": np.asarray(latents["x"])[free]}


def hand_enzyme_assay():
    """θ = (Vmax, Km) with their priors and the calibration likelihood; S = v·Km / (Vmax − v),
    log|dS/dv| = log(Km·Vmax) − 2 log(Vmax − v) (S > 0 needs Vmax > v)."""
    ea = models.enzyme_assay
    v = ea.V_SAMPLE

    def model():
        vmax = numpyro.sample("Vmax", dist.LogNormal(*ea.VMAX_PRIOR))
        km = numpyro.sample("Km", dist.LogNormal(*ea.KM_PRIOR))
        with numpyro.plate("calibration", len(ea.S_CAL)):
            numpyro.sample("v_cal", dist.Normal(ea.rate(vmax, km, jnp.asarray(ea.S_CAL)), ea.SIGMA),
                           obs=jnp.asarray(ea.V_CAL))
        inside = vmax > v
        gap = jnp.where(inside, vmax - v, 1.0)  # a safe value outside, so that gradients stay finite
        s = v * km / gap
        log_jac = jnp.log(km * vmax) - 2 * jnp.log(gap)
        numpyro.factor("S_given_constants", jnp.where(inside, dist.LogNormal(*ea.S_PRIOR).log_prob(s) + log_jac,
                                                      -jnp.inf))
        numpyro.deterministic("S", s)

    return model


def hand_isotope_mixing():
    """θ = the source signatures (their priors); with c_k = source_k + TDF the fractions solve
    c₃ + f₁(c₁ − c₃) + f₂(c₂ − c₃) = consumer with f₃ = 1 − f₁ − f₂: a 2×2 system
    K f₁₂ = consumer − c₃, log|det ∂f₁₂/∂consumer| = −log|det K|; density zero where f leaves the simplex."""
    im = models.isotope_mixing
    consumer, tdf = jnp.asarray(im.CONSUMER), jnp.asarray(im.TDF)
    prior_f = dist.Dirichlet(im.ALPHA * jnp.ones(len(im.SOURCES)))

    def model():
        with numpyro.plate("sources", len(im.SOURCES)):
            source = numpyro.sample("source", dist.Normal(jnp.asarray(im.SOURCE_MEAN), jnp.asarray(im.SOURCE_SD))
                                    .to_event(1))
        c = source + tdf
        k = jnp.stack([c[0] - c[2], c[1] - c[2]], axis=-1)  # columns: tracers × (f₁, f₂)
        f12 = jnp.linalg.solve(k, consumer - c[2])
        f = jnp.concatenate([f12, 1.0 - jnp.sum(f12, keepdims=True)])
        inside = jnp.all(f > 0)
        log_p = prior_f.log_prob(jnp.where(inside, f, 1.0 / len(f))) - jnp.linalg.slogdet(k)[1]
        numpyro.factor("f_given_sources", jnp.where(inside, log_p, -jnp.inf))
        numpyro.deterministic("f", f)

    return model


# =====================================================================================
# Mici constrained HMC (optional)
# =====================================================================================
def _mici_problem(name):
    """(ambient dim, neg_log_dens(q), constr(q), q -> latents, latents -> q) for Mici, or None."""
    if name == "product_lognormal":
        y = models.product_lognormal.Y
        # ambient q = (log a, log b) ~ N(0, I); the event {a·b = y} is {exp(q₀ + q₁) − y = 0}
        return dict(
            dim=2,
            neg_log_dens=lambda q: 0.5 * jnp.sum(q**2),
            constr=lambda q: jnp.atleast_1d(jnp.exp(q[0] + q[1]) - y),
            to_latents=lambda Q: {"a": np.exp(Q[..., 0]), "b": np.exp(Q[..., 1])},
            from_latents=lambda lat: np.array([np.log(lat["a"]), np.log(lat["b"])]),
        )
    if name == "bilinear":
        y = bilinear.Y
        return dict(
            dim=3,
            neg_log_dens=lambda q: 0.5 * jnp.sum(q**2),
            constr=lambda q: jnp.atleast_1d(q[0] + q[1] * q[2] - y),
            to_latents=lambda Q: {"x0": Q[..., 0], "x1": Q[..., 1], "x2": Q[..., 2]},
            from_latents=lambda lat: np.array([lat["x0"], lat["x1"], lat["x2"]], float),
        )
    if name == "lotka_volterra":
        lv = models.lotka_volterra
        y = jnp.asarray(lv.DATA["y"])
        return dict(
            dim=4 + 2 * lv.N_STEPS,
            neg_log_dens=lambda q: 0.5 * jnp.sum(q**2),
            constr=lambda q: lv.simulate(jnp.exp(-2.0 + q[:4]), q[4:]) - y,
            to_latents=lambda Q: {"u_z": Q[..., :4], "u_n": Q[..., 4:]},
            from_latents=lambda lat: np.concatenate([np.asarray(lat["u_z"]), np.asarray(lat["u_n"])]),
        )
    return None


def mici_available():
    return importlib.util.find_spec("mici") is not None


def run_mici(name, starts, n_warmup, n_samples, seed):
    import mici

    prob = _mici_problem(name)
    init_states = [np.asarray(prob["from_latents"](s), float) for s in starts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, traces, stats = mici.interface.sample_constrained_hmc_chains(
            n_warm_up_iter=n_warmup,
            n_main_iter=n_samples,
            init_states=init_states,
            neg_log_dens=prob["neg_log_dens"],
            constr=prob["constr"],
            backend="jax",
            seed=seed,
            dens_wrt_hausdorff=False,
            adapters=[mici.adapters.DualAveragingStepSizeAdapter(0.8)],
            n_worker=1,
            display_progress=False,
        )
    pos = np.stack([np.asarray(p) for p in traces["pos"]])  # (chains, draws, dim)
    integ = stats.get("integration", stats) if isinstance(stats, dict) else {}
    div = None
    if isinstance(integ, dict) and "diverging" in integ:
        div = int(sum(np.sum(np.asarray(d)) for d in integ["diverging"]))
    conv = None
    if isinstance(integ, dict) and "convergence_error" in integ:
        conv = int(sum(np.sum(np.asarray(d)) for d in integ["convergence_error"]))
    steps = None
    if isinstance(integ, dict) and "n_step" in integ:
        steps = float(np.mean([np.mean(np.asarray(d)) for d in integ["n_step"]]))
    from importlib.metadata import version

    note = f"mici {version('mici')}"
    if conv:
        note += f"; {conv} convergence errors (rejected)"
    if steps is not None:
        note += f"; mean {steps:.1f} leapfrog steps/iter"
    return prob["to_latents"](pos), div, note


# =====================================================================================
# ABC-SMC (optional)
# =====================================================================================
def abc_available():
    return importlib.util.find_spec("pyabc") is not None


def _abc_problem(name):
    if name == "product_lognormal":
        y = models.product_lognormal.Y
        return dict(
            params=("la", "lb"),  # log a, log b ~ N(0, 1); the distance is on y = a·b
            observe=lambda p: math.exp(p["la"] + p["lb"]),
            y=y,
            to_latents=lambda P: {"a": np.exp(P[:, 0]), "b": np.exp(P[:, 1])},
        )
    if name == "bilinear":
        y = bilinear.Y
        return dict(
            params=("x0", "x1", "x2"),
            observe=lambda p: p["x0"] + p["x1"] * p["x2"],
            y=y,
            to_latents=lambda P: {"x0": P[:, 0], "x1": P[:, 1], "x2": P[:, 2]},
        )
    return None


def run_abc(name, budget, population, seed, workdir):
    import logging

    import pyabc

    for logger in ("ABC", "ABC.Sampler", "ABC.History", "ABC.Distance", "ABC.Epsilon", "ABC.Adaptation",
                   "ABC.Population", "ABC.Transition", "Acceptor", "Epsilon", "Distance", "History",
                   "Sampler", "Transition"):
        logging.getLogger(logger).setLevel(logging.ERROR)
    prob = _abc_problem(name)
    np.random.seed(seed)
    prior = pyabc.Distribution(**{p: pyabc.RV("norm", 0.0, 1.0) for p in prob["params"]})
    observe = prob["observe"]

    def simulate(p):
        return {"y": observe(p)}

    def distance(a, b):
        return abs(a["y"] - b["y"])

    db = "sqlite:///" + str(Path(workdir) / f"abc_{name}_{seed}.db")
    abc = pyabc.ABCSMC(simulate, prior, distance, population_size=population,
                       sampler=pyabc.sampler.SingleCoreSampler())
    abc.new(db, {"y": prob["y"]})
    stopped = ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            history = abc.run(minimum_epsilon=1e-12, max_total_nr_simulations=budget)
        except AssertionError as err:
            # pyabc gives up on a generation whose weights degenerate (NaN total weight once
            # ε is tiny); the generations before it are complete and stored, so report the last
            history = abc.history
            stopped = f"; stopped early ({err})"
            if history.max_t < 0:
                raise
    df, w = history.get_distribution(m=0, t=history.max_t)
    P = df[list(prob["params"])].to_numpy()
    lat = prob["to_latents"](P)
    w = np.asarray(w, float)
    w = w / w.sum()
    pops = history.get_all_populations()
    eps = float(pops["epsilon"].iloc[-1])
    nsim = int(history.total_nr_simulations)
    note = (f"pyabc {pyabc.__version__}; {nsim} simulations, {history.max_t + 1} generations, "
            f"final ε = {eps:.3g}{stopped}")
    return lat, w, note


