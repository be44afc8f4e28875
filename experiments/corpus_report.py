"""ppinv on the corpus of programs written by other projects: pass rate by source.

    python experiments/corpus_report.py [--quick] [--only name,name] [--out DIR]

Runs every program of ``tests/corpus/programs.py`` through
``tests.corpus.check_program`` (soundness, PGF round trip, log|det| against
the dense Jacobian, jacfwd/jacrev and jax.grad against central differences)
and writes ``corpus.md`` (and ``corpus.json``) to ``DIR`` (default
``experiments/results``): per source the programs inverted, refused and
inverted wrongly, the pass rate over the programs that have a closed-form or
provably unique inverse, every refusal with ppinv's reason grouped by the
mechanism it lacks, and every silent wrong answer. ``--quick`` runs only the
default-tier set of ``tests/test_corpus.py`` and the refusals.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import warnings
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the test suite's settings, so the report is what tests/test_corpus.py sees: CPU, float64, and the
# fast-compile XLA flags where this jaxlib accepts them (probed there); before JAX starts
import tests.conftest  # noqa: E402, F401

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)

from tests.corpus import check_program  # noqa: E402
from tests.corpus.programs import MECHANISMS, PROGRAMS, REFUSAL_KINDS  # noqa: E402


def run(programs):
    rows = []
    for p in programs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            o = check_program(p, n_points=5, dense_points=2, grad_points=2)
        rows.append(dict(name=p.name, project=p.project, source=p.source, expect=p.expect, status=o.status,
                         error_type=o.error_type, message=o.message, n_theta=o.n_theta, seconds=round(o.seconds, 2),
                         recorded_mechanism=p.today.mechanism if p.today else None,
                         recorded_wrong=p.wrong_today or None, why=p.why or None, note=p.note or None))
        print(f"{p.name:34s} {p.expect:6s} -> {o.status:8s} {o.seconds:6.1f}s  {o.message[:120]}", flush=True)
    return rows


PIECE_PREFIX = "so the program cannot be inverted on that piece: "
COUPLED_LEAD = re.compile(r"cannot reorient the program: these relations are coupled and no single rule solves any of "
                          r"them, and the remaining freedom \(\d+ θ dimensions\) does not allow freeing another "
                          r"variable without over-determining them: ")
LOCATION = re.compile(r" at \S*/(\w+\.py):(\d+):\d+ \([^)]*\)")


def first_line(message, width=320):
    """A message on one line, from its innermost reason: a refusal inside nested cases of a where
    repeats "case k ... cannot be inverted ..." once per level before saying why."""
    line = " ".join(message.split())
    if PIECE_PREFIX in line:
        line = "(in a case of a where) " + line.rsplit(PIECE_PREFIX, 1)[1]
    line = COUPLED_LEAD.sub("coupled relations, no rule solves any of: ", line)
    line = LOCATION.sub(r" (\1:\2)", line)
    return line if len(line) <= width else line[: width - 1] + "…"


def _md_escape(text):
    return text.replace("|", "\\|")


def summary_by_source(rows):
    table = defaultdict(Counter)
    for r in rows:
        c = table[r["project"]]
        c["programs"] += 1
        if r["expect"] == "invert":
            c["invertible"] += 1
            c[r["status"]] += 1
        else:
            c["non_invertible"] += 1
            c["refused_correctly" if r["status"] == "refused" else "not_refused"] += 1
    return table


def markdown(rows, machine, seconds):
    table = summary_by_source(rows)
    out = ["# ppinv on programs written by other projects", ""]
    out += [
        "Every program of `tests/corpus/programs.py` (bijectors, inverse-function pairs, simulators and model "
        "fragments, each as its project writes it, translated to `jax.numpy`) run through "
        "`tests.corpus.check_program`: soundness at the PGF's θ and away from it, PGF round trip, log|det| "
        "against the dense Jacobian, jacfwd/jacrev and jax.grad against central differences (5 points; the "
        "dense and derivative checks at the first two). Regenerate with `python experiments/corpus_report.py`.",
        "",
        f"Machine: {machine.get('cpu')}, {machine.get('usable_cores')} usable cores, jax {machine.get('jax')}, "
        f"ppinv commit {machine.get('ppinv_commit')}{' (dirty)' if machine.get('ppinv_dirty') else ''}, "
        f"{machine.get('date')}; {len(rows)} programs in {seconds:.0f} s.",
        "",
        "## Pass rate by source",
        "",
        "*Invertible*: a closed-form or provably unique parametric inverse exists. *Pass rate* = inverted / "
        "invertible. *Wrong*: ppinv built an inverse that failed a check. *Error*: an exception other than "
        "`InversionError`. The last column counts the non-invertible programs ppinv refused with an "
        "`InversionError`, as it must.",
        "",
        "| source | programs | invertible | inverted | refused | wrong | error | pass rate | non-invertible refused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    total = Counter()
    for project in sorted(table, key=lambda k: (-table[k]["programs"], k)):
        c = table[project]
        total.update(c)
        out.append(_row(project, c))
    out.append(_row("**all**", total, bold=True))
    out += ["", "## Invertible programs ppinv refuses, by the mechanism it lacks", ""]
    refused = [r for r in rows if r["expect"] == "invert" and r["status"] == "refused"]
    by_mech = defaultdict(list)
    for r in refused:
        by_mech[r["recorded_mechanism"] or "unclassified"].append(r)
    for mech in sorted(by_mech, key=lambda m: (-len(by_mech[m]), m)):
        out += [f"### {mech} ({len(by_mech[mech])}) — {MECHANISMS.get(mech, 'not yet classified in the corpus')}", ""]
        out += ["| program | source | ppinv's reason (opening) |", "|---|---|---|"]
        for r in by_mech[mech]:
            out.append(f"| `{r['name']}` | {_md_escape(r['source'])} | {r['error_type']}: "
                       f"{_md_escape(first_line(r['message']))} |")
        out.append("")
    out += ["## Wrong answers (an inverse was built and failed a check: wrong values, or derivatives that are wrong or raise)", ""]
    wrong = [r for r in rows if r["status"] == "wrong"]
    if not wrong:
        out.append("None.")
    else:
        out += ["| program | source | first failures |", "|---|---|---|"]
        for r in wrong:
            out.append(f"| `{r['name']}` | {_md_escape(r['source'])} | {_md_escape(r['message'][:400])} |")
    out += ["", "## Errors other than InversionError", ""]
    errors = [r for r in rows if r["status"] == "error"]
    out += ["None."] if not errors else [f"* `{r['name']}` ({r['source']}): {_md_escape(first_line(r['message']))}"
                                         for r in errors]
    out += ["", "## Non-invertible programs (must be refused)", "",
            "| program | source | why no inverse | ppinv | ppinv's reason (opening) |", "|---|---|---|---|---|"]
    for r in rows:
        if r["expect"] == "refuse":
            kind = (r["why"] or "").split(":", 1)[0]
            out.append(f"| `{r['name']}` | {_md_escape(r['source'])} | {kind} ({REFUSAL_KINDS.get(kind, '?')}) | "
                       f"{r['status']} | {r['error_type']}: {_md_escape(first_line(r['message']))} |")
    stale = [r for r in rows if r["expect"] == "invert" and (
        (r["recorded_mechanism"] and r["status"] != "refused") or (r["recorded_wrong"] and r["status"] != "wrong")
        or (not r["recorded_mechanism"] and not r["recorded_wrong"] and r["status"] != "inverted"))]
    out += ["", "## Corpus records that no longer match ppinv", ""]
    out += ["None: every refusal and wrong answer recorded in the corpus is what ppinv does now."] if not stale else [
        f"* `{r['name']}`: recorded {r['recorded_mechanism'] or r['recorded_wrong'] or 'inverted'}, now {r['status']}"
        for r in stale]
    return "\n".join(out) + "\n"


def _row(project, c, bold=False):
    inv = c["invertible"]
    rate = f"{100.0 * c['inverted'] / inv:.0f} %" if inv else "–"
    if bold:
        rate = f"**{rate}**"
    non = c["non_invertible"]
    return (f"| {project} | {c['programs']} | {inv} | {c['inverted']} | {c['refused']} | {c['wrong']} | "
            f"{c['error']} | {rate} | {c['refused_correctly']}/{non} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="only the default-tier set and the refusals")
    ap.add_argument("--only", default="", help="comma-separated program names")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results"))
    ap.add_argument("--render", default="", help="only rewrite the markdown from this corpus.json")
    args = ap.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        text = markdown(saved["rows"], saved["machine"], saved["seconds"])
        Path(args.render).with_suffix(".md").write_text(text)
        print(text)
        return saved["rows"]
    programs = PROGRAMS
    if args.only:
        wanted = set(args.only.split(","))
        programs = [p for p in PROGRAMS if p.name in wanted]
    elif args.quick:
        from tests.test_corpus import FAST

        programs = [p for p in PROGRAMS if p.name in FAST or p.expect == "refuse" or p.today]
    from experiments.machine import machine_info

    machine = machine_info()
    start = time.perf_counter()
    rows = run(programs)
    seconds = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if (args.quick or args.only) else ""
    (out / f"corpus{suffix}.json").write_text(json.dumps(dict(machine=machine, seconds=seconds, rows=rows), indent=1))
    text = markdown(rows, machine, seconds)
    (out / f"corpus{suffix}.md").write_text(text)
    print(text)
    return rows


if __name__ == "__main__":
    main()
