"""The comparison's report: summaries over repeats, goals, the markdown tables and the plots."""

from __future__ import annotations

import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # models/ is not installed; run from a checkout
    sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

import models  # noqa: E402

from experiments.timing import median as _median  # noqa: E402

# =====================================================================================
# reporting
# =====================================================================================


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
            if _finite(best["ess_per_s_run"]) and _finite(soft["ess_per_s_run"]):
                r2 = best["ess_per_s_run"] / soft["ess_per_s_run"]
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
            out.append(dict(goal="InverseNUTS >= 0.9x hand-written inverse + NUTS, ESS/s incl. compile", model=m,
                            value=r, detail=f"{p['ess_per_s']:.3g} vs {hand['ess_per_s']:.3g}", met=r >= 0.9))
            if _finite(p["ess_per_s_run"]) and _finite(hand["ess_per_s_run"]):
                r2 = p["ess_per_s_run"] / hand["ess_per_s_run"]
                out.append(dict(goal="InverseNUTS >= 0.9x hand-written inverse + NUTS, ESS/s excl. compile",
                                model=m, value=r2, detail=f"{p['ess_per_s_run']:.3g} vs {hand['ess_per_s_run']:.3g}",
                                met=r2 >= 0.9))
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


