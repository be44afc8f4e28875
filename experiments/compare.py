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
  term, run with stock NUTS (product_lognormal, bilinear, lotka_volterra, enzyme_assay, isotope_mixing);
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
  [quadrature], bilinear [quadrature], kepler [quadrature], enzyme_assay [quadrature], isotope_mixing
  [quadrature], village_totals, stick_breaking_abundance) or else a long ppinv reference run (4 × 4000 draws, untimed);
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

Modules: this file holds the dispatch table (:data:`SPECS`: which methods run on which model) and
the runners; ``baselines.py`` the alternatives, ``metrics.py`` the references and measurements,
``compare_report.py`` summaries, goals, tables and plots, ``timing.py`` the clocks every
experiment script shares.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax import lax  # noqa: E402
from numpyro import handlers  # noqa: E402
from numpyro.infer import MCMC, NUTS  # noqa: E402
from numpyro.infer.initialization import init_to_value  # noqa: E402
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



from experiments.baselines import (  # noqa: E402
    abc_available, hand_bilinear, hand_enzyme_assay, hand_isotope_mixing, hand_lotka_volterra, hand_product_lognormal,
    mici_available, run_abc, run_mici, soft_condition,
)
from experiments.compare_report import (  # noqa: E402
    RUN_FIELDS, SUMMARY_FIELDS, goals, markdown, plot_ess, plot_manifold, summarise,
)
from experiments.machine import machine_info  # noqa: E402
from experiments.metrics import _flat, closed_form_reference, metrics, moments, quantities  # noqa: E402
from experiments.timing import PERF, timed, write_csv as _write_csv  # noqa: E402

# =====================================================================================
# models: what to compare and against what (the dispatch table)
# =====================================================================================
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
    "enzyme_assay": dict(extra=(), hand=hand_enzyme_assay,
                         hand_init=lambda lat: {"Vmax": lat["Vmax"], "Km": lat["Km"]}),
    "isotope_mixing": dict(extra=(), hand=hand_isotope_mixing, hand_init=lambda lat: {"source": lat["source"]}),
    "village_totals": dict(extra=()),
    "stick_breaking_abundance": dict(extra=()),
    "binding_equilibrium": dict(extra=()),
    "vote_shares": dict(extra=()),
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
                               "kepler": "quadrature over e",
                               "enzyme_assay": "quadrature over (Vmax, Km)",
                               "isotope_mixing": "quadrature over the simplex of f"}.get(n, "closed form")
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
