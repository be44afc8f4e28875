"""Reporting for ``overhead.py``: the build-time plot and the summary table printed and written."""

from __future__ import annotations

import numpy as np


def _plot(summary, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.array([s["n_eqns"] for s in summary], float)
    fig, ax = plt.subplots(figsize=(7, 5))
    series = [("total_s", "total (first call)", "k", "o-"), ("trace_import_s", "make_jaxpr + import", "C0", "s--"),
              ("schedule_s", "schedule", "C1", "^--"), ("lower_s", "lower (trace inverse)", "C2", "v--"),
              ("compile_s", "XLA compile", "C3", "D--"), ("forward_compile_s", "forward program: XLA compile", "C7", "x:")]
    for key, label, color, style in series:
        med = np.array([s["median"][key] for s in summary])
        lo = np.array([s["min"][key] for s in summary])
        hi = np.array([s["max"][key] for s in summary])
        ax.errorbar(n, med, yerr=[med - lo, hi - med], fmt=style, color=color, label=label, capsize=3, ms=5)
    t0 = summary[0]["median"]["total_s"]
    ax.plot(n, t0 * n / n[0], color="0.6", lw=0.8, label="linear in size (from smallest total)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("primitive equations in the program")
    ax.set_ylabel("seconds (median, min–max bars)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _summary_text(machine, overlay_rows, build_summary, cfg):
    lines = []
    lines.append(f"machine: {machine['cpu']}, {machine['usable_cores']} usable cores "
                 f"({machine['logical_cores']} logical); jax {machine['jax']} / jaxlib {machine['jaxlib']} "
                 f"on {machine['jax_backend']}; python {machine['python']}; ppinv {machine['ppinv_commit']}"
                 f"{' (+uncommitted ppinv changes)' if machine['ppinv_dirty'] else ''}; "
                 f"glibc malloc tuned: {all(machine['malloc_env'].values())}")
    if overlay_rows:
        lines.append("")
        lines.append(f"1. overlay vs hand-written: jit(vmap(.)) over {cfg['n_inputs']:,} inputs, {cfg['dtype']}, "
                     f"median of {cfg['repeats']} interleaved samples (goal: overlay/hand <= 1.10)")
        lines.append("  wall: median wall-clock ms per call; paired: median over samples of overlay/hand taken "
                     "back to back; cpu: process CPU time (all threads)")
        hdr = (f"{'program':<23}{'overlay':>9}{'hand':>9}{'h+mask':>9}{'ovl/hand':>9}{'paired':>8}{'ovl/h+m':>9}"
               f"{'cpu ovl':>9}{'cpu hand':>9}{'cpu o/h':>8}{'cpu o/h+m':>10}{'HLO ops o/h':>13}")
        lines.append(hdr)
        for r in overlay_rows:
            h = r["hlo"]
            lines.append(f"{r['program']:<23}{r['overlay_ms']:>9.2f}{r['hand_ms']:>9.2f}{r['hand_mask_ms']:>9.2f}"
                         f"{r['ratio']:>9.2f}{r['ratio_paired_median']:>8.2f}{r['ratio_vs_mask']:>9.2f}"
                         f"{r['overlay_cpu_ms']:>9.2f}{r['hand_cpu_ms']:>9.2f}{r['ratio_cpu']:>8.2f}"
                         f"{r['ratio_cpu_vs_mask']:>10.2f}{h['overlay']['instructions']:>8}/{h['hand']['instructions']:<5}")
    if build_summary:
        lines.append("")
        lines.append(f"2. build time (median of {cfg['build_repeats']}; seconds; goals: x10 eqns -> <= x12 time, "
                     "<= 5 s at 1,000)")
        lines.append("  wall-clock stages; 'cpu total' is process CPU time of the same stages; x prev: growth of the "
                     "total over the previous size")
        lines.append("  ppinv own: ppinv.inverse less JAX's tracing of the program, plus tracing the inverse "
                     "(ppinv's executor; 'lower' includes it); no MLIR lowering, no XLA (goal: <= 1 s at 1,000, "
                     "linear to 10^4)")
        hdr = (f"{'eqns':>7}{'steps':>7}{'jaxpr+imp':>11}{'schedule':>10}{'lower':>9}{'compile':>9}"
               f"{'1st call':>10}{'total':>9}{'x prev':>8}{'cpu total':>10}{'x prev':>8}{'fwd comp':>10}"
               f"{'tr. inv':>9}{'ppinv own':>11}{'x prev':>8}{'cpu own':>9}{'x prev':>8}")
        lines.append(hdr)
        for s in build_summary:
            m = s["median"]
            g = s.get("growth_vs_previous", {}).get("total_s")
            gc = s.get("growth_vs_previous", {}).get("cpu_total_s")
            lines.append(f"{s['n_eqns']:>7}{s['n_steps']:>7}{m['trace_import_s']:>11.3f}{m['schedule_s']:>10.3f}"
                         f"{m['lower_s']:>9.3f}{m['compile_s']:>9.3f}{m['first_call_s']:>10.4f}{m['total_s']:>9.3f}"
                         f"{(f'{g:.1f}' if g else '-'):>8}{m['cpu_total_s']:>10.3f}{(f'{gc:.1f}' if gc else '-'):>8}"
                         f"{m['forward_compile_s']:>10.3f}{m['trace_inverse_s']:>9.3f}{m['ppinv_own_s']:>11.3f}"
                         f"{(f'{go:.1f}' if (go := s.get('growth_vs_previous', {}).get('ppinv_own_s')) else '-'):>8}"
                         f"{m['cpu_ppinv_own_s']:>9.3f}"
                         f"{(f'{gq:.1f}' if (gq := s.get('growth_vs_previous', {}).get('cpu_ppinv_own_s')) else '-'):>8}")
        if len(build_summary) >= 2:
            sl = build_summary[0]["loglog_slope_all_sizes"]
            lines.append("log-log slope over all sizes: " + ", ".join(
                f"{k[:-2]} {sl[k]:.2f}" for k in ("trace_import_s", "schedule_s", "lower_s", "compile_s", "total_s",
                                                  "cpu_total_s", "forward_compile_s", "trace_inverse_s",
                                                  "ppinv_own_s", "cpu_ppinv_own_s")))
    return "\n".join(lines)
