"""Comparison suite: ppinv's exact conditioning against soft constraints, hand-written inverses, Mici and ABC.

ONE command regenerates every result file (tables, JSON, plots)::

    python experiments/compare.py                      # full run (~30-50 min on 2 shared cores)
    python experiments/compare.py --quick              # smoke test: tiny sizes, seconds per model

Options: ``--models a,b`` and ``--methods m1,m2`` select subsets (method names below;
``soft`` selects all three ε), ``--out DIR`` (default ``experiments/results``),
``--repeats``, ``--chains``, ``--warmup``, ``--samples`` override the sizes.

For every model in ``models/`` (all but ``sat``) plus ``models/bilinear.py``, these methods
(where they apply) are run side by side in ONE process, interleaved repeat by repeat so
machine noise on the shared host hits them alike:

* ``ppinv``       — ``ppinv.infer.InverseNUTS`` on ``model.conditioned()`` (its own start from the PGF);
* ``ppinv_jump``  — ``InverseNUTS(jump_every=10)`` (models with separated modes: manifold_toy, logistic_map);
* ``ppinv_mh``    — ``ppinv.infer.InverseMH`` (sine — no continuous θ at all —, manifold_toy, logistic_map);
* ``soft_<ε>``    — stock ``numpyro.infer.NUTS`` on the *original* model with each exact observation
  replaced by the likelihood ``N(y_obs | f(x), ε²)`` (:func:`soft_condition`), ε ∈ {0.1, 0.01, 0.001};
* ``hand``        — a NumPyro model written by hand over the same θ with the hand-derived Jacobian
  term, run with stock NUTS (product_lognormal, bilinear, lotka_volterra);
* ``mici``        — Mici's constrained HMC (``mici.interface.sample_constrained_hmc_chains``, dynamic
  multinomial HMC, JAX derivatives, ``dens_wrt_hausdorff=False``: the target is the prior in the ambient
  space conditioned on ``constr(q) = 0``) — product_lognormal, bilinear, lotka_volterra;
  skipped with a message when ``mici`` is not installed (``pip install -e '.[bench]'``);
* ``abc``         — ABC-SMC with pyabc at a fixed simulation budget (product_lognormal, bilinear);
  skipped with a message when ``pyabc`` is not installed.

Metrics per (model, method, repeat), summarised as medians over repeats:

* ``ess_per_s``        — min over all latent components of the bulk ESS
  (``numpyro.diagnostics.effective_sample_size`` over chains) per second of wall time of the whole run,
  INCLUDING compilation and initialisation (ppinv: ``condition`` + planning + PGF start + MCMC);
* ``ess_per_s_run``    — the same ESS per second of wall time minus JAX compile time (jaxpr tracing,
  lowering and XLA compilation, summed from ``jax.monitoring`` events during the run);
* ``violation``        — max |f(x) − y_obs| over all draws (float64; ``ppinv.diagnostics.constraint_violation``);
* ``mean_err`` / ``sd_err`` — max over components of |mean − ref mean| / ref sd and |sd / ref sd − 1|
  against the closed form (product_lognormal, linear_gaussian, gamma_sum, sine, manifold_toy
  [quadrature], bilinear [quadrature]) or else a long ppinv reference run (4 × 4000 draws, untimed);
  ``z_max`` — max |mean − ref mean| / √(MCSE² + MCSE_ref²);
* ``rhat``             — max split R-hat over latent components; ``divergences`` — total over chains.

Fairness notes: the soft and hand-written baselines and Mici start every chain at a point ON the
constraint set (found with ppinv's PGF, outside their timing) — a gift they need (a random start with
ε = 0.001 spends its warm-up finding the manifold); ppinv finds its own start inside its timing.
All NumPyro methods use ``chain_method="vectorized"`` (one compiled program for all chains).
Each repeat starts cold (``jax.clear_caches()``), so every repeat includes compilation.

Writes to ``--out``: ``compare[_quick].csv`` (one row per run), ``compare_summary[_quick].csv``
(medians), ``compare[_quick].json`` (everything, with the machine), ``compare_ess[_quick].png``
(ESS/s bar chart, log scale), ``manifold[_quick].png`` (the README picture: product model a·b = y,
ppinv beside soft NUTS) and ``compare[_quick].md`` (the tables and the goals).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import statistics
import sys
import tempfile
import time
import traceback
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
from jax import lax  # noqa: E402
from numpyro import handlers  # noqa: E402
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from numpyro.infer.initialization import init_to_value  # noqa: E402
from numpyro.primitives import Messenger  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from ppinv.diagnostics import constraint_violation  # noqa: E402
from ppinv.infer import InverseMH, InverseNUTS, pgf_initial_values  # noqa: E402

import models  # noqa: E402
from models import INVERTIBLE_MODELS  # noqa: E402
from models import bilinear  # noqa: E402

PERF = time.perf_counter
CPU = time.process_time
EPSILONS = (0.1, 0.01, 0.001)
SOFT = tuple(f"soft_{e:g}" for e in EPSILONS)
ALL_METHODS = ("ppinv", "ppinv_jump", "ppinv_mh", *SOFT, "hand", "mici", "abc")
MODULES = {**INVERTIBLE_MODELS, "bilinear": bilinear}


# =====================================================================================
# timing: wall, CPU and JAX compile time
# =====================================================================================
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


class _CompileClock:
    """Sums JAX's compile-stage durations (tracing, lowering, XLA compile) while active."""

    def __init__(self):
        self.total = 0.0
        self.count = 0
        self.active = False
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **_):
        if self.active and event in _COMPILE_EVENTS:
            self.total += duration
            self.count += 1


_CLOCK = None


class timed:
    """``with timed() as t: ...`` → ``t.wall``, ``t.cpu``, ``t.compile`` (seconds), ``t.compiles`` (count)."""

    def __enter__(self):
        global _CLOCK
        if _CLOCK is None:
            _CLOCK = _CompileClock()
        self._c0, self._n0 = _CLOCK.total, _CLOCK.count
        _CLOCK.active = True
        self._w0, self._p0 = PERF(), CPU()
        return self

    def __exit__(self, *exc):
        self.wall = PERF() - self._w0
        self.cpu = CPU() - self._p0
        _CLOCK.active = False
        self.compile = _CLOCK.total - self._c0
        self.compiles = _CLOCK.count - self._n0
        return False


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


# =====================================================================================
# models: what to compare and against what
# =====================================================================================
def _quadrature_manifold_toy():
    mt = models.manifold_toy
    r = mt.t0_range()
    t0 = np.linspace(-r, r, 400001)[1:-1]
    w = mt.reference_density(t0)
    w = w / w.sum()
    t1sq = mt.Y - t0**2 * (t0**2 - 0.5)
    return {"t0": (0.0, math.sqrt(np.sum(w * t0**2))), "t1": (0.0, math.sqrt(np.sum(w * t1sq)))}


def closed_form_reference(name):
    """``{quantity: (mean array, sd array)}`` from the closed form, or None."""
    if name == "product_lognormal":
        m = models.product_lognormal.reference_moments()
        return {"log_a": (m["log_a_mean"], math.sqrt(m["log_a_var"])),
                "log_b": (m["log_a_mean"], math.sqrt(m["log_a_var"]))}
    if name == "linear_gaussian":
        m = models.linear_gaussian.reference_moments()
        return {"x": (np.asarray(m["mean"]), np.sqrt(np.diag(np.asarray(m["cov"]))))}
    if name == "gamma_sum":
        m = models.gamma_sum.reference_moments()
        return {"x": (m["mean"], np.sqrt(m["var"]))}
    if name == "sine":
        m = models.sine.reference_moments()
        return {"x": (m["mean"], math.sqrt(m["var"]))}
    if name == "manifold_toy":
        return _quadrature_manifold_toy()
    if name == "kepler":
        m = models.kepler.reference_moments()
        return {k: (m[k]["mean"], math.sqrt(m[k]["var"])) for k in ("e", "E")}
    if name == "bilinear":
        m = bilinear.reference_moments()
        return {f"x{i}": (m["mean"][i], math.sqrt(m["var"][i])) for i in range(3)}
    return None


def quantities(name, latents):
    """The quantities whose posterior moments are compared: ``{name: array (chains, draws, ...)}``."""
    if name == "product_lognormal":
        return {"log_a": np.log(latents["a"]), "log_b": np.log(latents["b"])}
    return dict(latents)


SPECS = {
    # name: extra ppinv variants, hand-written model, mici, abc, valid-start source, notes
    "product_lognormal": dict(extra=(), hand=hand_product_lognormal, hand_init=lambda lat: {"a": lat["a"]},
                              mici=True, abc=True),
    "linear_gaussian": dict(extra=()),
    "gamma_sum": dict(extra=()),
    "arithmetic_tree": dict(extra=()),
    "arm": dict(extra=(), soft_model=lambda: models.arm.make_direct_model(3)),
    "logistic_map": dict(extra=("ppinv_jump", "ppinv_mh"), ref_kernel="mh"),
    "lotka_volterra": dict(extra=(), hand=hand_lotka_volterra, hand_init=lambda lat: {"u_z": lat["u_z"]}, mici=True,
                           soft_slow=True),
    "network_tomography": dict(extra=(), soft=("soft_0.01",), fixed_start=True, soft_slow=True),
    "manifold_toy": dict(extra=("ppinv_jump", "ppinv_mh")),
    "sine": dict(extra=("ppinv_mh",), no_nuts=True),
    "kepler": dict(extra=()),
    "bilinear": dict(extra=(), hand=hand_bilinear, hand_init=lambda lat: {"x1": lat["x1"], "x2": lat["x2"]}, mici=True,
                     abc=True),
}


def methods_for(name):
    spec = SPECS[name]
    out = [] if spec.get("no_nuts") else ["ppinv"]
    out += list(spec["extra"])
    out += list(spec.get("soft", SOFT))
    if spec.get("hand"):
        out.append("hand")
    if spec.get("mici"):
        out.append("mici")
    if spec.get("abc"):
        out.append("abc")
    return out


# =====================================================================================
# running one method
# =====================================================================================
def _latents_of(cm, values):
    """Latent values (by site) of the conditioned model at θ ``values``."""
    tr = handlers.trace(handlers.substitute(handlers.seed(cm, 0), data=values)).get_trace()
    return {n: np.asarray(tr[n]["value"]) for n in cm.plan().latents}


#: name -> {latent: array (N, ...)} posterior draws from the (untimed) reference run, used as starts
START_POOL = {}


def valid_starts(name, n_chains, seed):
    """One point on the constraint set per chain (latent values by site), for the baselines.

    Models with a reference run: distinct draws of that run (typical posterior points). Otherwise
    ppinv's PGF of prior draws (as ``InverseNUTS`` starts itself). Prior-draw PGF points can be far
    out in the tails (Lotka–Volterra: |u_n| ~ 10³–10⁴, where the forward simulation no longer
    reproduces y in floating point), hence the reference draws where there are some.
    """
    if name in START_POOL:
        pool = START_POOL[name]
        n = len(next(iter(pool.values())))
        idx = np.random.default_rng(10_000 + seed).choice(n, size=n_chains, replace=False)
        return [{k: np.asarray(v[i]) for k, v in pool.items()} for i in idx]
    mod = MODULES[name]
    cm = mod.conditioned()
    if SPECS[name].get("fixed_start"):
        lat = {k: np.asarray(v) for k, v in mod.true_latents().items()}
        return [lat for _ in range(n_chains)]
    cm.plan()  # plan outside jit: planning lazily inside a jit trace fails for some models (see README)
    init = jax.jit(lambda k: pgf_initial_values(cm, k))
    return [_latents_of(cm, init(k)) for k in jax.random.split(jax.random.PRNGKey(10_000 + seed), n_chains)]


def _stack(dicts):
    return {k: jnp.stack([jnp.asarray(d[k]) for d in dicts]) for k in dicts[0]}


def nuts_with_starts(model, starts, max_tree_depth):
    """Stock NUTS on ``model`` and per-chain ``init_params`` (unconstrained) at the given constrained values.

    NUTS's ``init_strategy`` is also set to the first start: NumPyro runs it even when
    ``init_params`` are given, and prior-like draws (init_to_uniform) can be invalid
    (Lotka–Volterra overflows).
    """
    from numpyro.infer.util import unconstrain_fn

    kernel = NUTS(model, max_tree_depth=max_tree_depth, init_strategy=init_to_value(values=starts[0]))
    init = _stack([unconstrain_fn(model, (), {}, {k: jnp.asarray(v) for k, v in st.items()}) for st in starts])
    return kernel, init


def run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init_params=None):
    mcmc = MCMC(kernel, num_warmup=n_warmup, num_samples=n_samples, num_chains=n_chains,
                chain_method="vectorized", progress_bar=False)
    mcmc.run(jax.random.PRNGKey(seed), init_params=init_params)
    s = mcmc.get_samples(group_by_chain=True)
    lat = {n: np.asarray(s[n]) for n in latent_names}
    div = None
    extra = mcmc.get_extra_fields(group_by_chain=True)
    if "diverging" in extra:
        div = int(np.sum(np.asarray(extra["diverging"])))
    return lat, div, mcmc


def steady_state(mcmc, n_iter):
    """Seconds for ``n_iter`` post-warm-up transitions of the kernel, compiled and warm.

    ``MCMC.run`` re-traces and recompiles its sampling loop on every call (fresh closures), so
    the kernel's own ``sample`` is looped here under one ``jax.jit`` (iteration count traced),
    called once to compile and once to time, from the chains' last state. Steady-state ESS/s is
    then the run's min-ESS over the time its draws take at this rate.

    Returns ``(wall_s, compile_s)`` of the timed call (compile_s should be ~0).
    """
    kernel, state0 = mcmc.sampler, mcmc.last_state

    @jax.jit
    def loop(state, n):
        return lax.fori_loop(0, n, lambda i, s: kernel.sample(s, (), {}), state)

    jax.block_until_ready(loop(state0, 2))
    with timed() as t:
        jax.block_until_ready(loop(state0, n_iter))
    return t.wall, t.compile


def run_method(name, method, cfg, seed, workdir):
    """Run one (model, method); returns a dict with latents (chains, draws, ...), timings and notes."""
    mod = MODULES[name]
    n_chains, n_warmup, n_samples = cfg["chains"], cfg["warmup"], cfg["samples"]
    notes = []
    weights = None
    div = None
    # things a baseline is given for free (outside its timing): valid starts on the constraint set
    cm_check = mod.conditioned()
    latent_names = cm_check.plan().latents
    if method in SOFT or method in ("hand", "mici"):
        starts = valid_starts(name, n_chains, seed)
    if method in SOFT:
        eps = float(method.split("_", 1)[1])
        sizes = cfg["soft_small_eps"] if (eps < 0.005 or SPECS[name].get("soft_slow")) else None
        if sizes:
            n_warmup, n_samples = sizes
            notes.append(f"capped at {n_warmup}+{n_samples} iterations per chain")
        base = SPECS[name].get("soft_model", lambda: mod.model)()
        with timed() as t:
            kernel, init = nuts_with_starts(soft_condition(base, mod.DATA, eps), starts, cfg["max_tree_depth"])
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
    elif method == "hand":
        hand_model = SPECS[name]["hand"]()
        with timed() as t:
            kernel, init = nuts_with_starts(hand_model, [SPECS[name]["hand_init"](s) for s in starts],
                                            cfg["max_tree_depth"])
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
        if name == "product_lognormal":
            lat = {"a": lat["a"], "b": lat["b"]}
    elif method in ("ppinv", "ppinv_jump", "ppinv_mh"):
        with timed() as t:
            cm = mod.conditioned()
            init = None
            if SPECS[name].get("fixed_start"):
                one = mod.init_params(cm)
                init = jax.tree_util.tree_map(lambda v: jnp.stack([v] * n_chains), one)
            if method == "ppinv":
                kernel = InverseNUTS(cm, max_tree_depth=cfg["max_tree_depth"])
            elif method == "ppinv_jump":
                kernel = InverseNUTS(cm, jump_every=cfg["jump_every"], max_tree_depth=cfg["max_tree_depth"])
            else:
                kernel = InverseMH(cm)
            if method == "ppinv_mh":
                n_warmup, n_samples = cfg["mh_sizes"]
                notes.append(f"{n_warmup}+{n_samples} iterations per chain (MH steps are cheap)")
            lat, div, mcmc = run_numpyro(kernel, n_chains, n_warmup, n_samples, seed, latent_names, init)
    elif method == "mici":
        if not mici_available():
            return dict(skipped="mici is not installed (pip install 'mici>=0.4', or pip install -e '.[bench]')")
        n_chains_m, n_warmup, n_samples = cfg["mici_sizes"][name] if name in cfg["mici_sizes"] else cfg["mici_sizes"]["default"]
        with timed() as t:
            lat, div, note = run_mici(name, starts[:n_chains_m], n_warmup, n_samples, seed)
        notes.append(note)
        n_chains = n_chains_m
    elif method == "abc":
        if not abc_available():
            return dict(skipped="pyabc is not installed (pip install pyabc, or pip install -e '.[bench]')")
        with timed() as t:
            lat1, weights, note = run_abc(name, cfg["abc_budget"], cfg["abc_population"], seed, workdir)
        lat = {k: np.asarray(v)[None] for k, v in lat1.items()}  # one "chain" of weighted particles
        notes.append(note)
        n_chains, n_warmup, n_samples = 1, 0, len(weights)
    else:
        raise ValueError(f"unknown method {method!r}")
    steady = {}
    if cfg["steady"] and method in STEADY_METHODS and t.wall - t.compile < cfg["steady_max_s"]:
        wall, comp = steady_state(mcmc, n_samples)
        steady = dict(steady_wall_s=wall, steady_compile_s=comp)
    return dict(latents=lat, weights=weights, divergences=div, wall_s=t.wall, cpu_s=t.cpu, compile_s=t.compile,
                n_compiles=t.compiles, chains=n_chains, warmup=n_warmup, samples=n_samples, notes="; ".join(notes),
                **steady)


# =====================================================================================
# metrics
# =====================================================================================
def _flat(v, chains):
    v = np.asarray(v, float)
    return v.reshape(chains, v.shape[1], -1) if v.ndim >= 2 else v.reshape(chains, -1, 1)


def moments(q, weights=None):
    """Per-component mean, sd, ESS of an array (chains, draws, k); weighted (one chain) if weights."""
    if weights is not None:
        x = q[0]
        m = np.sum(weights[:, None] * x, axis=0)
        sd = np.sqrt(np.sum(weights[:, None] * (x - m) ** 2, axis=0))
        ess = np.full(x.shape[1], 1.0 / np.sum(weights**2))
        return m, sd, ess
    x = q.reshape(-1, q.shape[-1])
    ess = np.asarray(effective_sample_size(q)) if q.shape[1] > 3 else np.full(q.shape[-1], np.nan)
    return x.mean(0), x.std(0), ess


def reference_from_run(name, cfg, bar=None):
    """Long ppinv run (untimed) → ``{quantity: (mean, sd, mcse)}``."""
    mod = MODULES[name]
    cm = mod.conditioned()
    init = None
    if SPECS[name].get("fixed_start"):
        init = jax.tree_util.tree_map(lambda v: jnp.stack([v] * cfg["ref_chains"]), mod.init_params(cm))
    jump = "ppinv_jump" in SPECS[name]["extra"]
    if SPECS[name].get("ref_kernel") == "mh":
        kernel = InverseMH(cm)
        warm, n = cfg["ref_mh_sizes"]
        desc = f"ppinv InverseMH, {cfg['ref_chains']} x {n} draws after {warm} warm-up"
    else:
        kernel = InverseNUTS(cm, jump_every=cfg["jump_every"] if jump else 0, max_tree_depth=cfg["max_tree_depth"])
        warm, n = cfg["ref_warmup"], cfg["ref_samples"]
        desc = f"ppinv InverseNUTS{' (jump_every=%d)' % cfg['jump_every'] if jump else ''}, " \
               f"{cfg['ref_chains']} x {n} draws after {warm} warm-up"
    lat, _, _ = run_numpyro(kernel, cfg["ref_chains"], warm, n, 987, cm.plan().latents, init)
    START_POOL[name] = {k: np.asarray(v).reshape((-1,) + np.asarray(v).shape[2:]) for k, v in lat.items()}
    out = {}
    for k, v in quantities(name, lat).items():
        q = _flat(v, cfg["ref_chains"])
        m, sd, ess = moments(q)
        out[k] = (m, sd, sd / np.sqrt(np.maximum(ess, 1.0)))
    return out, desc


def metrics(name, res, reference, cm):
    lat, weights, chains = res["latents"], res["weights"], res["chains"]
    ess_all, rhat_all = [], []
    for k, v in lat.items():
        q = _flat(v, chains)
        _, _, ess = moments(q, weights)
        ess_all.append(np.min(ess))
        if weights is None and chains > 1:
            rhat_all.append(np.nanmax(np.asarray(split_gelman_rubin(q))))
    ess_min = float(np.nanmin(ess_all))
    flat = {k: jnp.asarray(np.asarray(v).reshape((-1,) + np.asarray(v).shape[2:])) for k, v in lat.items()}
    if weights is not None:  # ABC: the violation of the final population (every particle)
        pass
    violation = constraint_violation(cm, flat)
    mean_err = sd_err = z_max = float("nan")
    if reference is not None:
        me, se, zs = [], [], []
        for k, v in quantities(name, lat).items():
            q = _flat(v, chains)
            m, sd, ess = moments(q, weights)
            ref = reference[k]
            rm, rsd = np.ravel(ref[0]), np.ravel(ref[1])
            rmc = np.ravel(ref[2]) if len(ref) > 2 else np.zeros_like(rm)
            ok = rsd > 1e-12
            mcse = sd / np.sqrt(np.maximum(ess, 1.0))
            me.append(np.max(np.abs(m - rm)[ok] / rsd[ok]))
            se.append(np.max(np.abs(sd[ok] / rsd[ok] - 1)))
            zs.append(np.max(np.abs(m - rm)[ok] / np.sqrt(mcse[ok] ** 2 + rmc[ok] ** 2 + 1e-300)))
        mean_err, sd_err, z_max = float(np.max(me)), float(np.max(se)), float(np.max(zs))
    wall, comp = res["wall_s"], res["compile_s"]
    steady = {}
    if res.get("steady_wall_s"):
        steady = dict(ess_per_s_steady=ess_min / res["steady_wall_s"])
    return dict(
        **steady,
        ess_min=ess_min,
        ess_per_s=ess_min / wall,
        ess_per_s_run=ess_min / max(wall - comp, 1e-9),
        violation=violation,
        mean_err=mean_err,
        sd_err=sd_err,
        z_max=z_max,
        rhat=float(np.max(rhat_all)) if rhat_all else float("nan"),
    )


# =====================================================================================
# known ppinv problems found while building this suite (re-checked on every full run)
# =====================================================================================
def ppinv_checks():
    """Reproducers of ppinv problems met while building this suite (all fixed since, each
    with a regression test); each row says whether it still holds."""
    rows = []
    cm = bilinear.conditioned(vector=True)
    x_true = jnp.array([1.0 - (-0.7) * 1.2, -0.7, 1.2])
    what = "bilinear with ONE vector site x (y = x[0] + x[1]*x[2]): PGF -> inverse round trip returns x"
    try:
        plan = cm.plan()
        x, _, ok = plan.invert([], plan.pgf([], {"x": x_true}))
        err = float(jnp.max(jnp.abs(x["x"] - x_true)))
        fx = float(x["x"][0] + x["x"][1] * x["x"][2])
        rows.append(dict(check=what, ok=err < 1e-9,
                         result=f"x_true = {np.round(np.asarray(x_true), 3).tolist()}, got "
                                f"{np.round(np.asarray(x['x']), 3).tolist()} (ok flag {bool(ok)}, f(x) = {fx:.4g}, "
                                "want 1)"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {err}"[:300]))
    what = "InverseNUTS on that vector-site model runs (10 + 10 steps)"
    try:
        mcmc = MCMC(InverseNUTS(cm), num_warmup=10, num_samples=10, progress_bar=False)
        mcmc.run(jax.random.PRNGKey(0))
        v = constraint_violation(cm, mcmc.get_samples())
        rows.append(dict(check=what, ok=v < 1e-9, result=f"ran; constraint violation {v:.3g}"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {err}"[:300]))
    what = ("jax.jit(lambda k: pgf_initial_values(cm, k)) on a fresh lotka_volterra.conditioned() "
            "(plan built lazily inside the jit trace)")
    try:
        cm = models.lotka_volterra.conditioned()
        jax.jit(lambda k: pgf_initial_values(cm, k))(jax.random.PRNGKey(0))
        rows.append(dict(check=what, ok=True, result="works"))
    except Exception as err:
        rows.append(dict(check=what, ok=False, result=f"{type(err).__name__}: {str(err).splitlines()[0]}"[:300]))
    return rows


# =====================================================================================
# reporting
# =====================================================================================
from experiments.machine import machine_info  # noqa: E402


def machine_line(m):
    return (f"{m['cpu']}, {m['usable_cores']} usable cores ({m['logical_cores']} logical), shared host; "
            f"jax {m['jax']} / jaxlib {m['jaxlib']} on {m['jax_backend']}, numpyro {m['numpyro']}, "
            f"python {m['python']}, mici {m['mici']}, pyabc {m['pyabc']}; ppinv {m['ppinv_commit']}"
            f"{' (+uncommitted ppinv changes in the tree)' if m['ppinv_dirty'] else ''}")


RUN_FIELDS = ["model", "method", "repeat", "chains", "warmup", "samples", "wall_s", "cpu_s", "compile_s",
              "n_compiles", "ess_min", "ess_per_s", "ess_per_s_run", "ess_per_s_steady", "steady_wall_s",
              "steady_compile_s", "violation", "mean_err", "sd_err", "z_max",
              "rhat", "divergences", "notes"]
SUMMARY_FIELDS = ["model", "method", "repeats", "chains", "warmup", "samples", "wall_s", "compile_s", "cpu_s",
                  "ess_min", "ess_per_s", "ess_per_s_min", "ess_per_s_max", "ess_per_s_run", "ess_per_s_steady",
                  "violation",
                  "mean_err", "sd_err", "z_max", "rhat", "divergences", "notes"]


def _write_csv(path, rows, fields):
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in fields})


def _median(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


def summarise(rows):
    out = []
    keys = []
    for r in rows:
        if (r["model"], r["method"]) not in keys:
            keys.append((r["model"], r["method"]))
    for model, method in keys:
        rs = [r for r in rows if r["model"] == model and r["method"] == method]
        ok = [r for r in rs if "skipped" not in r and "error" not in r]
        if not ok:
            why = rs[0].get("skipped") or rs[0].get("error")
            out.append(dict(model=model, method=method, repeats=0, notes=why))
            continue
        s = dict(model=model, method=method, repeats=len(ok), chains=ok[0]["chains"], warmup=ok[0]["warmup"],
                 samples=ok[0]["samples"])
        for k in ("wall_s", "compile_s", "cpu_s", "ess_min", "ess_per_s", "ess_per_s_run", "mean_err", "sd_err",
                  "ess_per_s_steady",
                  "z_max", "rhat"):
            s[k] = _median([r.get(k) for r in ok])
        s["ess_per_s_min"] = min(r["ess_per_s"] for r in ok)
        s["ess_per_s_max"] = max(r["ess_per_s"] for r in ok)
        s["violation"] = max(r["violation"] for r in ok)
        divs = [r["divergences"] for r in ok if r.get("divergences") is not None]
        s["divergences"] = int(statistics.median(divs)) if divs else None
        s["notes"] = ok[0].get("notes", "")
        out.append(s)
    return out


def _fmt(v, kind="g"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if kind == "e":
        return f"{v:.1e}"
    if kind == "s":
        return f"{v:.1f}"
    if kind == "2":
        return f"{v:.2f}"
    if kind == "3":
        return f"{v:.3f}"
    if isinstance(v, int):
        return str(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _finite(x):
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def goals(summary):
    """The goals of the issues, evaluated on the medians."""
    by = {(s["model"], s["method"]): s for s in summary if s.get("repeats")}
    out = []
    models_ = list(dict.fromkeys(s["model"] for s in summary))
    for m in models_:
        ppv = [(meth, by[(m, meth)]) for meth in ("ppinv", "ppinv_jump", "ppinv_mh") if (m, meth) in by]
        soft = by.get((m, "soft_0.01"))
        if ppv and soft:
            best_meth, best = max(ppv, key=lambda t: t[1]["ess_per_s"])
            main = by.get((m, "ppinv"), best)
            ratio = best["ess_per_s"] / soft["ess_per_s"] if soft["ess_per_s"] > 0 else float("inf")
            out.append(dict(goal="ppinv >= 10x soft NUTS (eps=0.01), ESS/s incl. compile", model=m,
                            value=ratio, detail=f"{best_meth}: {best['ess_per_s']:.3g} vs {soft['ess_per_s']:.3g} ESS/s"
                            + (f" (InverseNUTS: {main['ess_per_s'] / soft['ess_per_s']:.2g}x)" if main is not best else ""),
                            met=ratio >= 10))
            r2 = best["ess_per_s_run"] / soft["ess_per_s_run"] if soft["ess_per_s_run"] > 0 else float("inf")
            out.append(dict(goal="ppinv >= 10x soft NUTS (eps=0.01), ESS/s excl. compile", model=m, value=r2,
                            detail=f"{best_meth}: {best['ess_per_s_run']:.3g} vs {soft['ess_per_s_run']:.3g}",
                            met=r2 >= 10))
            bs, ss = best.get("ess_per_s_steady"), soft.get("ess_per_s_steady")
            if _finite(bs) and _finite(ss):
                out.append(dict(goal="ppinv >= 10x soft NUTS (eps=0.01), ESS/s steady state", model=m,
                                value=bs / ss, detail=f"{best_meth}: {bs:.3g} vs {ss:.3g}", met=bs / ss >= 10))
        if ppv:
            best_v = min(s["violation"] for _, s in ppv)
            out.append(dict(goal="ppinv violation <= 1e-9", model=m, value=best_v, detail=f"{best_v:.2g}",
                            met=max(s["violation"] for _, s in ppv) <= 1e-9))
        if soft:
            out.append(dict(goal="soft NUTS (eps=0.01) violation >= 1e-3", model=m, value=soft["violation"],
                            detail=f"{soft['violation']:.2g}", met=soft["violation"] >= 1e-3))
        hand = by.get((m, "hand"))
        if hand and (m, "ppinv") in by:
            p = by[(m, "ppinv")]
            r = p["ess_per_s"] / hand["ess_per_s"]
            r2 = p["ess_per_s_run"] / hand["ess_per_s_run"]
            out.append(dict(goal="InverseNUTS >= 0.9x hand-written inverse + NUTS, ESS/s incl. compile", model=m,
                            value=r, detail=f"{p['ess_per_s']:.3g} vs {hand['ess_per_s']:.3g}", met=r >= 0.9))
            out.append(dict(goal="InverseNUTS >= 0.9x hand-written inverse + NUTS, ESS/s excl. compile", model=m,
                            value=r2, detail=f"{p['ess_per_s_run']:.3g} vs {hand['ess_per_s_run']:.3g}", met=r2 >= 0.9))
            ps, hs = p.get("ess_per_s_steady"), hand.get("ess_per_s_steady")
            if _finite(ps) and _finite(hs):
                out.append(dict(goal="InverseNUTS >= 0.9x hand-written inverse + NUTS, ESS/s steady state", model=m,
                                value=ps / hs, detail=f"{ps:.3g} vs {hs:.3g}", met=ps / hs >= 0.9))
        mici = by.get((m, "mici"))
        if mici and (m, "ppinv") in by:
            p = by[(m, "ppinv")]
            r = p["ess_per_s"] / mici["ess_per_s"]
            out.append(dict(goal="ppinv >= 100x Mici constrained HMC, ESS/s incl. compile", model=m, value=r,
                            detail=f"{p['ess_per_s']:.3g} vs {mici['ess_per_s']:.3g}", met=r >= 100))
            out.append(dict(goal="Mici posterior means agree with the reference (max |z| < 4)", model=m,
                            value=mici["z_max"], detail=f"max |z| = {mici['z_max']:.2f} (ppinv: {p['z_max']:.2f})",
                            met=mici["z_max"] < 4))
    return out


def markdown(machine, cfg, summary, goal_rows, references, elapsed, checks=()):
    L = []
    L.append("# ppinv comparison results\n")
    L.append(f"Generated by `python experiments/compare.py{' --quick' if cfg['quick'] else ''}` "
             f"on {machine['date']} in {elapsed / 60:.1f} min.\n")
    L.append(f"**Machine:** {machine_line(machine)}. No GPU. Load average at start: {machine['loadavg_start']}.\n")
    L.append(f"**Sizes:** {cfg['chains']} chains x ({cfg['warmup']} warm-up + {cfg['samples']} draws), "
             f"`chain_method=\"vectorized\"`, max tree depth {cfg['max_tree_depth']}, medians over {cfg['repeats']} "
             f"cold repeats (each after `jax.clear_caches()`), except where the table's `rep` column says otherwise; "
             f"soft NUTS at ε = 0.001 capped at {cfg['soft_small_eps'][0]}+{cfg['soft_small_eps'][1]} iterations; "
             f"InverseMH {cfg['mh_sizes'][0]}+{cfg['mh_sizes'][1]}; Mici and ABC sizes in the notes column.\n")
    L.append("Columns: **ESS/s** = min-ESS over all latent components per second of wall time INCLUDING "
             "compilation/initialisation; **ESS/s run** = the same excluding JAX compile time (tracing + lowering + "
             "XLA, from `jax.monitoring`); **ESS/s steady** = min-ESS over the time the same number of post-warm-up "
             "transitions takes when compiled and warm (the kernel's `sample` looped under one `jax.jit` from the "
             "chains' last state, second call timed) — the sampler's own speed, without start-up; **compile** = JAX compile time of the whole run (s); **viol.** = max |f(x) − y| over all "
             "draws (float64); **mean err** / **sd err** = max over components of |mean − ref|/ref sd and "
             "|sd/ref sd − 1| (reference: closed form, quadrature, or a long ppinv run — see below); "
             "**z** = max |mean − ref| / √(MCSE² + MCSE_ref²); **R̂** = max split R-hat; **div** = divergences.\n")
    models_ = list(dict.fromkeys(s["model"] for s in summary))
    for m in models_:
        L.append(f"\n## {m}\n")
        ref = references.get(m)
        if ref:
            L.append(f"Reference: {ref}.\n")
        L.append("| method | rep | ESS/s | ESS/s run | ESS/s steady | min-ESS | wall s | compile s | viol. | mean err | "
                 "sd err | z | R̂ | div | notes |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for s in summary:
            if s["model"] != m:
                continue
            if not s.get("repeats"):
                L.append(f"| {s['method']} | 0 | – | – | – | – | – | – | – | – | – | – | – | – | {s.get('notes', '')} |")
                continue
            L.append(f"| {s['method']} | {s['repeats']} | {_fmt(s['ess_per_s'])} | {_fmt(s['ess_per_s_run'])} | "
                     f"{_fmt(s.get('ess_per_s_steady'))} | "
                     f"{_fmt(s['ess_min'])} | {_fmt(s['wall_s'], 's')} | {_fmt(s['compile_s'], 's')} | "
                     f"{_fmt(s['violation'], 'e')} | {_fmt(s['mean_err'], '2')} | {_fmt(s['sd_err'], '2')} | "
                     f"{_fmt(s['z_max'], 's')} | {_fmt(s['rhat'], '3')} | {_fmt(s['divergences'])} | {s.get('notes', '')} |")
    L.append("\n## Goals\n")
    L.append("| goal | model | value | detail | met? |")
    L.append("|---|---|---|---|---|")
    for g in goal_rows:
        v = g["value"]
        vs = f"{v:.2g}" if isinstance(v, float) and (abs(v) < 1e-2 or abs(v) >= 1e4) else f"{v:.3g}"
        L.append(f"| {g['goal']} | {g['model']} | {vs} | {g['detail']} | {'yes' if g['met'] else '**no**'} |")
    if checks:
        L.append("\n## ppinv problems met while building this suite (re-checked each run)\n")
        L.append("| check | passes? | result |")
        L.append("|---|---|---|")
        for c in checks:
            L.append(f"| {c['check']} | {'yes' if c['ok'] else '**no**'} | {c['result'].replace('|', '/')} |")
    return "\n".join(L) + "\n"


def plot_ess(summary, path, machine):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models_ = list(dict.fromkeys(s["model"] for s in summary))
    ncol = 4
    nrow = math.ceil(len(models_) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.3 * nrow), squeeze=False)
    colors = {"ppinv": "C0", "ppinv_jump": "C9", "ppinv_mh": "C4", "soft_0.1": "C1",
              "soft_0.01": "C3", "soft_0.001": "C5", "hand": "C2", "mici": "C6", "abc": "C7"}
    for ax, m in zip(axes.flat, models_):
        rows = [s for s in summary if s["model"] == m and s.get("repeats")]
        x = np.arange(len(rows))
        inc = np.array([max(s["ess_per_s"], 1e-4) for s in rows])
        run = np.array([max(s["ess_per_s_run"], 1e-4) for s in rows])
        std = np.array([s.get("ess_per_s_steady") if _finite(s.get("ess_per_s_steady")) else np.nan for s in rows])
        lo = np.array([max(s["ess_per_s_min"], 1e-4) for s in rows])
        hi = np.array([max(s["ess_per_s_max"], 1e-4) for s in rows])
        cols = [colors.get(s["method"], "0.5") for s in rows]
        ax.bar(x - 0.27, inc, 0.27, color=cols, yerr=[inc - lo, hi - inc], capsize=2, label="incl. compile")
        ax.bar(x, run, 0.27, color=cols, alpha=0.5, hatch="//", label="excl. compile")
        ax.bar(x + 0.27, std, 0.27, color=cols, alpha=0.25, edgecolor="k", lw=0.5, label="steady state")
        ax.set_yscale("log")
        ax.set_xticks(x)
        ax.set_xticklabels([s["method"] for s in rows], rotation=45, ha="right", fontsize=7)
        ax.set_title(m, fontsize=9)
        ax.set_ylabel("min-ESS / s", fontsize=8)
        ax.grid(axis="y", alpha=0.3, which="both")
    for ax in list(axes.flat)[len(models_):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"min-ESS per second, median over repeats (solid: wall incl. compile; hatched: excl. compile; "
                 f"pale: steady-state sampling)\n"
                 f"{machine['cpu']}, {machine['usable_cores']} cores, jax {machine['jax']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_manifold(draws, path, machine):
    """README picture: product model a·b = y — ppinv beside soft NUTS, with the exact curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = models.product_lognormal.Y
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.3))
    grid = np.linspace(0.05, 8, 400)
    for ax, key, title in ((axes[0], "ppinv", "ppinv (InverseNUTS): exact"),
                           (axes[1], "soft_0.1", "soft-constraint NUTS, ε = 0.1")):
        ax.plot(grid, y / grid, "k-", lw=1, label=f"a·b = {y:g}")
        if key in draws:
            a, b = draws[key]["a"].ravel(), draws[key]["b"].ravel()
            ax.plot(a, b, ".", ms=2.5, alpha=0.35, color="C0" if key == "ppinv" else "C1", label="draws")
        ax.set_xlim(0, 6)
        ax.set_ylim(0, 6)
        ax.set_aspect("equal")
        ax.set_xlabel("a")
        ax.set_ylabel("b")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
        if key in draws:  # zoom inset near (√y, √y)
            ins = ax.inset_axes([0.52, 0.38, 0.42, 0.32])
            c = math.sqrt(y)
            sel = (np.abs(a - c) < 0.15)
            ins.plot(grid, y / grid, "k-", lw=1)
            ins.plot(a[sel], b[sel], ".", ms=3, alpha=0.5, color="C0" if key == "ppinv" else "C1")
            ins.set_xlim(c - 0.15, c + 0.15)
            ins.set_ylim(c - 0.25, c + 0.25)
            ins.tick_params(labelsize=6)
            ins.set_title("zoom", fontsize=7)
    ax = axes[2]
    bins = np.linspace(-18, 0.5, 80)
    for key, col in (("ppinv", "C0"), ("soft_0.1", "C1"), ("soft_0.01", "C3"), ("soft_0.001", "C5")):
        if key not in draws:
            continue
        err = np.abs(draws[key]["a"].ravel() * draws[key]["b"].ravel() - y)
        ax.hist(np.log10(np.maximum(err, 1e-18)), bins=bins, color=col, alpha=0.6, label=key, density=True)
    ax.set_xlabel("log10 |a·b − y|")
    ax.set_ylabel("density")
    ax.set_title("constraint violation of every draw", fontsize=10)
    ax.legend(fontsize=8)
    fig.suptitle(f"a, b ~ LogNormal(0, 1) conditioned on a·b = {y:g}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# =====================================================================================
# main
# =====================================================================================
def config(args):
    quick = args.quick
    cfg = dict(
        quick=quick,
        repeats=1 if quick else 3,
        chains=2 if quick else 4,
        warmup=100 if quick else 1000,
        samples=100 if quick else 1000,
        max_tree_depth=10,
        jump_every=10,
        soft_small_eps=(100, 100) if quick else (500, 500),
        mh_sizes=(200, 200) if quick else (5000, 5000),
        mici_sizes={"default": (2, 50, 50) if quick else (4, 500, 500),
                    "lotka_volterra": (2, 20, 20) if quick else (2, 100, 150)},
        abc_budget=2000 if quick else 40000,
        abc_population=200 if quick else 1000,
        ref_chains=2 if quick else 4,
        ref_warmup=100 if quick else 1000,
        ref_samples=200 if quick else 2500,
        ref_mh_sizes=(500, 500) if quick else (20000, 20000),
        slow_repeats=1,
        steady=not quick,  # each steady-state measurement compiles the kernel step once more (~2-5 s)
        steady_max_s=30.0,
    )
    for k in ("repeats", "chains", "warmup", "samples"):
        v = getattr(args, k)
        if v is not None:
            cfg[k] = v
    return cfg


#: methods whose steady-state sampling speed is also measured (see :func:`steady_state`)
STEADY_METHODS = ("ppinv", "ppinv_jump", "ppinv_mh", "hand", "soft_0.1", "soft_0.01")


def n_repeats(name, method, cfg):
    """Full repeats for ppinv, the hand-written inverse and soft NUTS at ε = 0.01 (the goals' comparisons);
    one run for the slow or secondary baselines (soft NUTS at ε = 0.1 / 0.001, soft NUTS on models where
    it hits the tree-depth cap every iteration, Mici, ABC)."""
    if method in ("ppinv", "ppinv_jump", "ppinv_mh", "hand"):
        return cfg["repeats"]
    if method == "soft_0.01" and not SPECS[name].get("soft_slow"):
        return cfg["repeats"]
    return min(cfg["repeats"], cfg["slow_repeats"])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    p.add_argument("--models", default=None, help=f"comma-separated subset of {','.join(MODULES)}")
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(ALL_METHODS)} (or 'soft')")
    p.add_argument("--out", default=str(ROOT / "experiments" / "results"), help="output folder")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--chains", type=int, default=None)
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")
    p.add_argument("--no-checks", action="store_true", help="skip the ppinv problem reproducers")
    p.add_argument("--steady", action="store_true", help="measure steady-state ESS/s also with --quick")
    args = p.parse_args(argv)
    cfg = config(args)
    cfg["steady"] = cfg["steady"] or args.steady
    t_start = PERF()

    names = list(MODULES) if not args.models else [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [n for n in names if n not in MODULES]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {list(MODULES)}")
    wanted = None
    if args.methods:
        wanted = set()
        for m in args.methods.split(","):
            m = m.strip()
            if m == "soft":
                wanted.update(SOFT)
            elif m in ALL_METHODS:
                wanted.add(m)
            elif m:
                p.error(f"unknown method {m!r}; choose from {ALL_METHODS} or 'soft'")
    plan = [(n, m) for n in names for m in methods_for(n) if wanted is None or m in wanted]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if cfg["quick"] else ""
    machine = machine_info()
    for flag, avail, what in (("mici", mici_available(), "mici"), ("abc", abc_available(), "pyabc")):
        if any(m == flag for _, m in plan) and not avail:
            print(f"[compare] {what} is not installed: the '{flag}' runs are skipped "
                  f"(pip install -e '.[bench]' to include them).", file=sys.stderr)

    need_ref = [n for n in names if closed_form_reference(n) is None and any(nn == n for nn, _ in plan)]
    reps = {(n, m): n_repeats(n, m, cfg) for n, m in plan}
    total = len(need_ref) + sum(reps.values())
    rows, references, ref_desc, draws_for_plot = [], {}, {}, {}
    workdir = tempfile.mkdtemp(prefix="ppinv_compare_")
    checks = ppinv_checks() if (not cfg["quick"] and "bilinear" in names and not args.no_checks) else []
    with tqdm(total=total, desc="compare", unit="run", dynamic_ncols=True, disable=args.no_progress) as bar:
        for n in names:
            cf = closed_form_reference(n)
            if cf is not None:
                references[n] = cf
                ref_desc[n] = {"manifold_toy": "quadrature of the exact density along the curve",
                               "bilinear": "quadrature over (x1, x2)",
                               "kepler": "quadrature over e"}.get(n, "closed form")
        for n in need_ref:
            bar.set_postfix_str(f"{n}: reference run")
            try:
                references[n], ref_desc[n] = reference_from_run(n, cfg)
            except Exception as err:  # no reference: errors are reported as '–'
                ref_desc[n] = f"reference run FAILED ({type(err).__name__}: {str(err)[:200]})"
                traceback.print_exc()
            bar.update(1)
        # interleave: repeat r of every (model, method) before repeat r + 1 of any
        for r in range(max(reps.values()) if reps else 0):
            for n, m in plan:
                if r >= reps[(n, m)]:
                    continue
                bar.set_postfix_str(f"{n} / {m} / repeat {r}")
                jax.clear_caches()
                row = dict(model=n, method=m, repeat=r)
                try:
                    res = run_method(n, m, cfg, seed=r, workdir=workdir)
                    if "skipped" in res:
                        row["skipped"] = res["skipped"]
                        row["notes"] = res["skipped"]
                    else:
                        row.update({k: v for k, v in res.items() if k not in ("latents", "weights")})
                        row.update(metrics(n, res, references.get(n), MODULES[n].conditioned()))
                        if n == "product_lognormal" and r == 0:
                            draws_for_plot[m] = {k: np.asarray(v) for k, v in res["latents"].items()}
                except Exception as err:  # keep going; the error is reported in the tables
                    row["error"] = f"{type(err).__name__}: {err}"
                    row["notes"] = "ERROR " + row["error"][:300]
                    traceback.print_exc()
                rows.append(row)
                bar.update(1)
    elapsed = PERF() - t_start
    # raw rows first, so that a failure below loses nothing measured
    (out / f"compare_runs{suffix}.json").write_text(json.dumps(dict(machine=machine, config=cfg, runs=rows),
                                                               indent=1, default=_json_default))
    summary = summarise(rows)
    goal_rows = goals(summary)
    ref_json = {n: {k: [np.ravel(np.asarray(x, float)).tolist() for x in v] for k, v in ref.items()}
                for n, ref in references.items()}
    result = dict(machine=machine, config=cfg, runs=rows, summary=summary, goals=goal_rows, ppinv_checks=checks,
                  references=ref_json, reference_source=ref_desc, elapsed_s=elapsed)
    (out / f"compare{suffix}.json").write_text(json.dumps(result, indent=1, default=_json_default))
    _write_csv(out / f"compare{suffix}.csv", rows, RUN_FIELDS)
    _write_csv(out / f"compare_summary{suffix}.csv", summary, SUMMARY_FIELDS)
    (out / f"compare{suffix}.md").write_text(markdown(machine, cfg, summary, goal_rows, ref_desc, elapsed, checks))
    if any(s.get("repeats") for s in summary):
        plot_ess(summary, out / f"compare_ess{suffix}.png", machine)
    if draws_for_plot:
        plot_manifold(draws_for_plot, out / f"manifold{suffix}.png", machine)
    print((out / f"compare{suffix}.md").read_text())
    return result


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


if __name__ == "__main__":
    main()
