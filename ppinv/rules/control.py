"""Rules for control flow: ``scan`` (and ``fori_loop``), ``cond``/``switch``, ``while``.

``scan`` is inverted by scheduling its *body* once and running that schedule
in a ``lax.scan`` of its own — forwards when the initial carry is known (each
step solves its unknown ``xs`` from the observed ``ys``), backwards when the
final carry is known (each step solves the previous carry). Per-step θ is
stacked along the scan axis, so trace and compile time do not depend on the
number of iterations. Carry components that depend only on known values (a
loop counter) are computed by a forward pre-pass and treated as known.

``cond`` inverts every branch with the same knowledge pattern and switches on
the index; when the index depends on unknowns it is drawn from θ as a
discrete choice and re-checked on the recovered values (the scheduler turns
its defining relation into a check).

Bodies are imported in their *distinct* inputs (``_ir.body_inputs``): JAX
passes a value a branch closes over as one more operand, so ``lax.cond(p,
lambda v: v * a, ..., a)`` hands the branch ``a`` twice; inverted as two
unknowns, the two could come back different. Operands holding one variable
share one body input, and so do ``xs`` of a loop that scan one array; an
unknown at two carry places of a loop run backwards is refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from numpyro.distributions import constraints

from .._compat import CALL_PRIMITIVES, COND_P, CUSTOM_VJP_P, SCAN_P, WHILE_P, Literal, call_name, jaxpr_parts, scan_counts
from ..errors import InversionError, NoRuleError, OverdeterminedError
from ..graph import ancestors
from ..theta import ThetaSpec, is_constrained
from .table import DEFAULT_RULES
from ._base import Solution, Solver

_body_cache: dict = {}


def _keep_call(table):
    def keep(eqn):
        name = call_name(eqn.primitive, eqn.params)
        return name is not None and table.function_rule(name) is not None

    return keep


def _body_program(closed, table, operands, mergeable, inline_consts=True):
    """The body of a higher-order relation applied to ``operands``, as a program in their
    distinct variables (``_ir.body_inputs``), and each operand's slot among them."""
    from .._ir import body_inputs, import_jaxpr

    layout = []
    for i, (o, merge) in enumerate(zip(operands, mergeable)):
        if o.is_const and inline_consts:
            layout.append(("const", id(o)))
        elif merge:
            layout.append(next(j for j in range(i + 1) if mergeable[j] and operands[j] is o))
        else:
            layout.append(i)
    refs = tuple(o for o in operands if o.is_const)
    key = (id(closed), id(table), tuple(layout), inline_consts)
    hit = _body_cache.get(key)
    if hit is None or hit[0] is not closed or any(a is not b for a, b in zip(hit[1], refs)):
        jaxpr, _ = jaxpr_parts(closed)
        inputs, slots = body_inputs(jaxpr.invars, operands, mergeable, inline_consts)
        hit = (closed, refs, import_jaxpr(closed, keep_call=_keep_call(table), inputs=inputs), slots)
        _body_cache[key] = hit
    return hit[2], hit[3]


def _scan_body(eqn, table):
    """A loop body in its distinct inputs: ``xs`` positions scanning one array share one input
    (their slices are equal at every step). Returns the body and each ``xs`` position's index
    among the distinct ``xs``."""
    nc, nk = scan_counts(eqn.params)
    mergeable = [i >= nc + nk for i in range(len(eqn.ins))]
    body, slots = _body_program(eqn.params["jaxpr"], table, eqn.ins, mergeable, inline_consts=False)
    return body, [s - nc - nk for s in slots[nc + nk :]]




def _stack_spec(spec, length):
    return ThetaSpec((length,) + tuple(spec.shape), spec.dtype, spec.support, spec.kind, spec.origin)


def _observable(v, known_inputs, seen):
    return v.is_float and not v.is_const and v not in known_inputs and v not in seen


# --- scan ------------------------------------------------------------------------------------
class _ScanSolver(Solver):
    def __init__(self, pat, mode):
        from ..schedule import build_schedule

        eqn = pat.eqn
        params = eqn.params
        self.length = int(params["length"])
        self.orig_reverse = bool(params["reverse"])
        nc, nk = scan_counts(params)
        self.nc, self.nk = nc, nk
        body, self.x_slots = _scan_body(eqn, pat.table)
        self.body = body
        self.x_first = _first_positions(self.x_slots)  # one xs position per distinct array
        b_consts, b_carry, b_xs = body.invars[:nc], body.invars[nc : nc + nk], body.invars[nc + nk :]
        b_cout, b_ys = body.outvars[:nk], body.outvars[nk:]
        kin, kout = pat.known_in, pat.known_out
        self.kx = kx = tuple(kin[nc + nk + i] for i in self.x_first)
        self.ky = ky = kout[nk:]
        self.kfinal = kout[:nk]
        self.mode = mode
        if mode == "forward":
            self.kfwd = tuple(range(nk))
        else:
            self.kfwd = _known_forward(body, nc, nk, kin[nc : nc + nk], kx)
        kfwd = set(self.kfwd)
        known = list(b_consts) + [b_carry[j] for j in self.kfwd] + [x for x, k in zip(b_xs, kx) if k]
        unknown = [b_carry[j] for j in range(nk) if j not in kfwd] + [x for x, k in zip(b_xs, kx) if not k]
        known_set = set(known)
        observed, seen = [], set()
        self.obs_carry = []  # carry components solved backwards (observed at each step)
        if mode == "backward":
            for j in range(nk):
                if j in kfwd:
                    continue
                v = b_cout[j]
                if not _observable(v, known_set, seen):
                    raise InversionError(
                        f"cannot run the loop at {eqn.source} backwards: carry component {j} "
                        f"({v!r}) is {'discrete' if not v.is_float else 'passed through unchanged'}; "
                        "only continuous carries computed in the body can be solved step by step."
                    )
                observed.append(v)
                seen.add(v)
                self.obs_carry.append(j)
        self.obs_ys, self.check_ys = [], []
        for j, (v, k) in enumerate(zip(b_ys, ky)):
            if not k:
                continue
            if _observable(v, known_set, seen):
                observed.append(v)
                seen.add(v)
                self.obs_ys.append(j)
            elif not v.is_float or v.is_const:
                self.check_ys.append(j)
            else:  # a continuous y equal to a known value: over-determined
                raise OverdeterminedError(
                    f"loop at {eqn.source}: observed output {j} of each step equals a value already "
                    "known at that step, so observing it over-determines the loop."
                )
        extra = [b_cout[j] for j in range(nk)] + list(b_ys)
        self.sub = build_schedule(body, known, unknown, observed, {}, pat.table, {}, extra)
        if mode == "backward" and self.kfwd:
            pre_known = list(b_consts) + [b_carry[j] for j in self.kfwd] + [x for x, k in zip(b_xs, kx) if k]
            self.pre = build_schedule(body, pre_known, [], [], {}, pat.table, {}, [b_cout[j] for j in self.kfwd])
        else:
            self.pre = None
        self.theta_names = list(self.sub.theta)
        # When every step's carry out is determined by that step's observed outputs alone (a
        # simulator whose whole trajectory is observed), the carries in are known data and the
        # steps are independent: the inverse runs them all at once (vmap), not in sequence.
        self.parallel = mode == "forward" and nk > 0 and self._carry_out_ignores_carry_in(body, b_xs, b_ys)
        self.theta_names = list(self.sub.theta)
        self.theta = tuple(_stack_spec(s, self.length) for s in self.sub.theta.values())
        self.theta_hints = tuple(f"scan_{n}" for n in self.theta_names)
        how = "forwards" if mode == "forward" else "backwards"
        if self.parallel:
            how = "on all steps at once (every step's carry is fixed by the observations)"
        self.description = f"invert the loop body once; run it {how} over {self.length} steps"

    # -- helpers -------------------------------------------------------------------------------
    def _split_ins(self, ins):
        """Consts, initial carry and the distinct scanned arrays; the carry in the body's dtypes
        (a loop's carry keeps its type, whatever type the value it starts from was given)."""
        nc, nk = self.nc, self.nk
        carry = _typed(ins[nc : nc + nk], self.body.invars[nc : nc + nk])
        return ins[:nc], carry, [ins[nc + nk + i] for i in self.x_first]

    def solve(self, ins, outs, theta):
        from ..schedule import run_schedule_extra

        consts, init, xs = self._split_ins(ins)
        nk = self.nk
        xs_known = [x for x, k in zip(xs, self.kx) if k]
        ys_known = [y for y, k in zip(outs[nk:], self.ky) if k]
        kfwd = self.kfwd
        # 1. carries that depend on known values only: a forward pre-pass
        if self.mode == "backward" and self.pre is not None:
            def pre_body(carry, xk):
                _, _, _, extra = run_schedule_extra(self.pre, list(consts) + list(carry) + list(xk), [], {})
                return tuple(extra), tuple(carry)

            fwd_final, fwd_stacked = lax.scan(
                pre_body, tuple(init[j] for j in kfwd), tuple(xs_known), length=self.length, reverse=self.orig_reverse
            )
        else:
            fwd_final, fwd_stacked = (), ()
        obs_carry = self.obs_carry

        def step(carry, per_step):
            xk, yk, fk, th = per_step
            if self.mode == "forward":
                known = list(consts) + list(carry) + list(xk)
                observed = [yk[self.ky_index(j)] for j in self.obs_ys]
            else:
                known = list(consts) + list(fk) + list(xk)
                observed = list(carry) + [yk[self.ky_index(j)] for j in self.obs_ys]
            solved, ld, ok, extra = run_schedule_extra(self.sub, known, observed, dict(zip(self.theta_names, th)))
            couts, ys_all = extra[:nk], extra[nk:]
            for j in self.check_ys:
                ok = jnp.logical_and(ok, jnp.all(ys_all[j] == yk[self.ky_index(j)]))
            if self.mode == "forward":
                new_carry = tuple(couts)
                xs_u = solved
            else:
                n_c = len(obs_carry)
                new_carry = tuple(solved[:n_c])
                xs_u = solved[n_c:]
            ys_u = [ys_all[j] for j in range(len(ys_all)) if not self.ky[j]]
            return new_carry, (tuple(xs_u), tuple(ys_u), ld, ok)

        if self.parallel:
            return self._solve_parallel(ins, outs, init, xs_known, ys_known, theta, step)
        if self.mode == "forward":
            carry0 = tuple(init)
            reverse = self.orig_reverse
        else:
            carry0 = _typed([outs[j] for j in obs_carry], [self.body.invars[self.nc + j] for j in obs_carry])
            reverse = not self.orig_reverse
        per_step = (tuple(xs_known), tuple(ys_known), tuple(fwd_stacked), tuple(theta))
        final, (xs_u, ys_u, lds, oks) = lax.scan(step, carry0, per_step, length=self.length, reverse=reverse)
        new_ins, new_outs = self._with_solved(ins, outs, xs_u, ys_u)
        if self.mode == "forward":
            for j in range(nk):
                new_outs[j] = final[j]
        else:
            for j, val in zip(obs_carry, final):
                new_ins[self.nc + j] = val
            for j, val in zip(kfwd, fwd_final):
                new_outs[j] = val
        return Solution(new_ins, new_outs, jnp.sum(lds), jnp.all(oks))

    def _with_solved(self, ins, outs, xs_u, ys_u):
        """The scan's places with the solved per-step inputs and outputs filled in."""
        new_ins, new_outs = list(ins), list(outs)
        unknown_x = [j for j, k in enumerate(self.kx) if not k]
        for j, val in zip(unknown_x, xs_u):
            for i, slot in enumerate(self.x_slots):  # every position scanning that array
                if slot == j:
                    new_ins[self.nc + self.nk + i] = val
        unknown_y = [j for j, k in enumerate(self.ky) if not k]
        for j, val in zip(unknown_y, ys_u):
            new_outs[self.nk + j] = val
        return new_ins, new_outs

    def _carry_out_ignores_carry_in(self, body, b_xs, b_ys):
        """Whether the inverted step's carry out does not depend on its carry in (traced once)."""
        from ..schedule import run_schedule_extra

        nc, nk = self.nc, self.nk

        def carry_out(consts, carry, xk, yk, th):
            known = list(consts) + list(carry) + list(xk)
            observed = [yk[self.ky_index(j)] for j in self.obs_ys]
            extra = run_schedule_extra(self.sub, known, observed, dict(zip(self.theta_names, th)))[3]
            return extra[:nk]

        def aval(v):
            return jax.ShapeDtypeStruct(v.shape, v.dtype)

        args = (
            [aval(v) for v in body.invars[:nc]],
            [aval(v) for v in body.invars[nc : nc + nk]],
            [aval(x) for x, k in zip(b_xs, self.kx) if k],
            [aval(y) for y, k in zip(b_ys, self.ky) if k],
            [jax.ShapeDtypeStruct(s.shape, s.dtype) for s in self.sub.theta.values()],
        )
        try:
            closed = jax.make_jaxpr(carry_out)(*args)
        except Exception:  # pragma: no cover - keep the sequential inverse
            return False
        jaxpr = closed.jaxpr
        tainted = set(jaxpr.invars[nc : nc + nk])
        for e in jaxpr.eqns:  # nested jaxprs count as depending on all their inputs
            if any(not isinstance(a, Literal) and a in tainted for a in e.invars):
                tainted.update(e.outvars)
        return not any(not isinstance(a, Literal) and a in tainted for a in jaxpr.outvars)

    def _solve_parallel(self, ins, outs, init, xs_known, ys_known, theta, step):
        """Forward mode with carries fixed by the observations: all steps at once."""
        nk = self.nk
        per_step = (tuple(xs_known), tuple(ys_known), (), tuple(theta))
        # pass 1: every step's carry out (independent of the carry in, so any value will do)
        dummy = tuple(jnp.zeros((self.length,) + jnp.shape(c), jnp.result_type(c)) for c in init)
        couts = jax.vmap(step)(dummy, per_step)[0]
        carries_in, finals = [], []
        for c0, co in zip(init, couts):
            first = jnp.expand_dims(jnp.asarray(c0, co.dtype), 0)
            if self.orig_reverse:  # steps run from the end: step t's carry comes from step t + 1
                carries_in.append(jnp.concatenate([co[1:], first]))
                finals.append(co[0])
            else:
                carries_in.append(jnp.concatenate([first, co[:-1]]))
                finals.append(co[-1])
        # pass 2: the steps with their true carries in
        _, (xs_u, ys_u, lds, oks) = jax.vmap(step)(tuple(carries_in), per_step)
        new_ins, new_outs = self._with_solved(ins, outs, xs_u, ys_u)
        for j in range(nk):
            new_outs[j] = finals[j]
        return Solution(new_ins, new_outs, jnp.sum(lds), jnp.all(oks))

    def ky_index(self, j):
        """Position of ys[j] among the known ys."""
        return sum(1 for i in range(j) if self.ky[i])

    def pgf(self, ins, outs):
        from ..schedule import theta_from_env

        if not self.theta_names:
            return ()
        consts, init, xs = self._split_ins(ins)
        body = self.body

        def step(carry, x_t):
            _, env = body.evaluate(*consts, *carry, *x_t, record=True)
            th = theta_from_env(self.sub, env)
            couts = [v.value if v.is_const else env[v] for v in body.outvars[: self.nk]]
            return tuple(couts), tuple(th[n] for n in self.theta_names)

        _, stacked = lax.scan(step, tuple(init), tuple(xs), length=self.length, reverse=self.orig_reverse)
        return stacked


def _known_forward(body, nc, nk, known_init, kx):
    """Carry components computable forwards from known values alone (a loop counter)."""
    b_consts, b_carry, b_xs = body.invars[:nc], body.invars[nc : nc + nk], body.invars[nc + nk :]
    b_cout = body.outvars[:nk]
    fwd = {j for j in range(nk) if known_init[j]}
    known_base = set(b_consts) | {x for x, k in zip(b_xs, kx) if k}
    deps = [ancestors(body, [b_cout[j]]) for j in range(nk)]
    changed = True
    while changed:
        changed = False
        allowed = known_base | {b_carry[j] for j in fwd}
        for j in list(fwd):
            if not deps[j] <= allowed:
                fwd.discard(j)
                changed = True
    return tuple(sorted(fwd))


def _typed(values, variables):
    """``values`` in the dtypes of ``variables`` (``None``, a place not known yet, stays)."""
    return tuple(x if x is None else jnp.asarray(x, v.dtype) for x, v in zip(values, variables))


def _first_positions(slots):
    return [slots.index(j) for j in range(max(slots, default=-1) + 1)]


def _shared_unknown(pat, nc, nk):
    """An unknown variable the loop takes at two places that are not both scanned arrays
    (``(a, a)`` as the initial carry), or ``None``. Solved step by step, the two places would
    be solved separately and could disagree."""
    places = {}
    for i, (v, k) in enumerate(zip(pat.eqn.ins, pat.known_in)):
        if not k and not v.is_const:
            places.setdefault(v, []).append(i)
    for v, where in places.items():
        if len(where) > 1 and any(i < nc + nk for i in where):
            return v
    return None


def _scan_rule(pat):
    eqn = pat.eqn
    nc, nk = scan_counts(eqn.params)
    if not all(pat.known_in[:nc]):
        return None
    init_known = pat.known_in[nc : nc + nk]
    final_known = pat.known_out[:nk]
    ys_known = pat.known_out[nk:]
    x_unknown = not all(pat.known_in[nc + nk :])
    if all(init_known) and not any(final_known):
        if not (x_unknown and any(ys_known)):
            return None
        return _ScanSolver(pat, "forward")
    body, x_slots = _scan_body(eqn, pat.table)
    kx = [pat.known_in[nc + nk + i] for i in _first_positions(x_slots)]
    kfwd = set(_known_forward(body, nc, nk, init_known, kx))
    if all(final_known[j] or j in kfwd for j in range(nk)) and not all(init_known):
        if any(final_known[j] and j in kfwd for j in range(nk)):
            return None
        shared = _shared_unknown(pat, nc, nk)
        if shared is not None:
            if not pat.allow_theta:
                return None  # it may become known later; refuse only when the scheduler is stuck
            raise InversionError(
                f"the loop at {eqn.source} takes the unknown {shared!r} at several places (as more than "
                "one component of its initial carry, or as a carry and a scanned array); run backwards, "
                "the loop would solve those places separately and they could disagree. Pass the value "
                "once (close over it, or carry it once), or declare the inverse with @ppinv.custom_inverse."
            )
        return _ScanSolver(pat, "backward")
    return None


DEFAULT_RULES.register(SCAN_P, _scan_rule)


# --- cond / switch ---------------------------------------------------------------------------
def _held_value(spec):
    """The value a discrete θ leaf of one branch is held at while another branch runs."""
    return np.asarray(spec.support.feasible_like(jnp.zeros(spec.shape, spec.dtype)), spec.dtype)


def _theta_signature(specs):
    return [(tuple(s.shape), np.dtype(s.dtype).name, repr(s.support)) for _, s in specs]


class _CondSolver(Solver):
    """Every branch inverted with the index known; the index picks which runs.

    Each branch is scheduled as a relation in the cond's *distinct* operand variables: a value
    closed over by a branch and also passed as an operand is one unknown, not two. The branches
    share one continuous θ space (their leaves, or one flat real vector when the leaves differ
    only in shape) and their discrete θ of the same kind; a discrete leaf only some branches
    have is held at a fixed value while another branch runs, so that every ``x`` is reached by
    exactly one θ.
    """

    n_index = 1  # the cond's first input is the branch index; the operands follow

    def __init__(self, pat):
        eqn = pat.eqn
        ops = eqn.ins[self.n_index:]
        self.branches = []
        for closed in self._bodies(eqn):
            body, slots = _body_program(closed, pat.table, ops, [True] * len(ops))
            self.branches.append(body)
        self.slots = slots
        n_vars = len(self.branches[0].invars)
        self.first = [slots.index(j) for j in range(n_vars)]  # first operand holding each variable
        self.kops, self.kout = pat.known_in[self.n_index:], pat.known_out
        self.kvar = [self.kops[i] for i in self.first]
        self.unknown_vars = [j for j in range(n_vars) if not self.kvar[j]]
        self.subs = [self._schedule_branch(k, body, pat) for k, body in enumerate(self.branches)]
        self._lay_out_theta(eqn)
        self.description = f"invert each of {len(self.branches)} branches; switch on the index"

    def _bodies(self, eqn):
        return eqn.params["branches"]

    def _where(self, k, eqn):
        return f"branch {k} of the cond at {eqn.source}"

    def _schedule_branch(self, k, body, pat):
        from ..schedule import build_schedule

        known = [v for v, kk in zip(body.invars, self.kvar) if kk]
        unknown = [v for v, kk in zip(body.invars, self.kvar) if not kk]
        observed = [v for v, kk in zip(body.outvars, self.kout) if kk]
        try:
            return build_schedule(body, known, unknown, observed, {}, pat.table, {}, list(body.outvars))
        except InversionError as err:  # the same error, saying where
            err.args = (f"{self._where(k, pat.eqn)}: {err}",) + err.args[1:]
            raise err from None

    def _lay_out_theta(self, eqn):
        per_branch = [list(sub.theta.items()) for sub in self.subs]
        specs, hints = [], []
        # per branch: its θ name -> (position in self.theta, offset, shape); offset None: the whole leaf
        self.leaf_index = [{} for _ in self.subs]
        self._lay_out_continuous([[(n, s) for n, s in items if not s.discrete] for items in per_branch],
                                 specs, hints, eqn)
        self._lay_out_discrete([[(n, s) for n, s in items if s.discrete] for items in per_branch], specs, hints)
        self.theta = tuple(specs)
        self.theta_hints = tuple(hints)

    def _lay_out_continuous(self, cont, specs, hints, eqn):
        """One continuous θ space for every branch: leaf by leaf when the branches' leaves agree,
        else one flat real vector each branch splits into its own leaves (when all are real)."""
        if all(_theta_signature(c) == _theta_signature(cont[0]) for c in cont[1:]):
            for i, (name, spec) in enumerate(cont[0]):
                for k, group in enumerate(cont):
                    self.leaf_index[k][group[i][0]] = (len(specs), None, None)
                specs.append(spec)
                hints.append(f"cond_{name}")
            return
        sizes = [sum(s.continuous_size for _, s in c) for c in cont]
        dtypes = {np.dtype(s.dtype) for c in cont for _, s in c}
        if len(set(sizes)) != 1 or len(dtypes) != 1 or any(is_constrained(s.support) for c in cont for _, s in c):
            raise InversionError(
                f"the branches of the cond at {eqn.source} need different continuous parameters θ "
                f"({[_theta_signature(c) for c in cont]}); ppinv requires every branch to be invertible "
                "with continuous θ of one size, and of the same supports where any is constrained. Rewrite "
                "the branches to have the same structure, or declare the inverse with @ppinv.custom_inverse."
            )
        for k, group in enumerate(cont):
            offset = 0
            for name, spec in group:
                self.leaf_index[k][name] = (len(specs), offset, tuple(spec.shape))
                offset += spec.continuous_size
        specs.append(ThetaSpec((sizes[0],), dtypes.pop(), constraints.real_vector, "value", eqn.describe()))
        hints.append("cond_values")

    def _lay_out_discrete(self, disc, specs, hints):
        """The j-th discrete leaf of a kind in one branch shares a slot with the j-th of that kind
        in the others; a branch holds the slots it does not use at a fixed value."""
        slots = []  # (signature, position, users)
        for k, group in enumerate(disc):
            used = {}
            for name, spec in group:
                (sig,) = _theta_signature([(name, spec)])
                same_kind = [slot for slot in slots if slot[0] == sig]
                j = used[sig] = used.get(sig, -1) + 1
                if j < len(same_kind):
                    slot = same_kind[j]
                else:
                    slot = (sig, len(specs), [])
                    slots.append(slot)
                    specs.append(spec)
                    hints.append(f"cond_branch{k}_{name}")
                slot[2].append(k)
                self.leaf_index[k][name] = (slot[1], None, None)
        self.held = [[] for _ in self.subs]  # per branch: (position, value) of the slots it leaves unused
        for _, i, users in slots:
            if len(users) == len(self.subs):
                hints[i] = "cond_" + hints[i].split("_", 2)[2]
            for k in range(len(self.subs)):
                if k not in users:
                    self.held[k].append((i, _held_value(specs[i])))

    def _branch_theta(self, k, theta):
        """Branch ``k``'s θ leaves, by its own names, from the cond's θ."""
        own = {}
        for name, (i, offset, shape) in self.leaf_index[k].items():
            if offset is None:
                own[name] = theta[i]
            else:
                size = int(np.prod(shape, dtype=np.int64))
                own[name] = jnp.reshape(theta[i][offset : offset + size], shape)
        return own

    def _cond_theta(self, k, own):
        """The cond's θ from branch ``k``'s leaves (the inverse of ``_branch_theta``)."""
        out, pieces = [None] * len(self.theta), {}
        for name, (i, offset, _) in self.leaf_index[k].items():
            if offset is None:
                out[i] = own[name]
            else:
                pieces.setdefault(i, []).append((offset, jnp.ravel(own[name])))
        for i, parts in pieces.items():
            out[i] = jnp.concatenate([p for _, p in sorted(parts, key=lambda part: part[0])])
        for i, value in self.held[k]:
            out[i] = value
        return tuple(jnp.asarray(v, s.dtype) for v, s in zip(out, self.theta))

    def _variable_values(self, ops):
        return [ops[i] for i in self.first]

    def solve(self, ins, outs, theta):
        from ..schedule import run_schedule_extra

        index, ops = ins[: self.n_index], ins[self.n_index :]
        known = [x for x, k in zip(self._variable_values(ops), self.kvar) if k]
        observed = [o for o, k in zip(outs, self.kout) if k]

        def branch(k):
            def run(known, observed, theta):
                own = self._branch_theta(k, theta)
                solved, ld, ok, extra = run_schedule_extra(self.subs[k], list(known), list(observed), own)
                for i, value in self.held[k]:
                    ok = jnp.logical_and(ok, jnp.all(theta[i] == value))
                return tuple(solved), tuple(extra), ld, ok

            return run

        solved, extra, ld, ok = self._run_branch(index, [branch(k) for k in range(len(self.branches))],
                                                 known, observed, tuple(theta))
        by_var = dict(zip(self.unknown_vars, solved))
        new_ins, new_outs = list(ins), list(outs)
        for i, (k, slot) in enumerate(zip(self.kops, self.slots)):
            if not k:
                new_ins[self.n_index + i] = by_var[slot]
        for j, k in enumerate(self.kout):
            if not k:
                new_outs[j] = extra[j]
        return Solution(new_ins, new_outs, ld, ok)

    def pgf(self, ins, outs):
        from ..schedule import theta_from_env

        if not self.theta:
            return ()
        index, ops = ins[: self.n_index], ins[self.n_index :]

        def branch(k):
            def run(values):
                _, env = self.branches[k].evaluate(*values, record=True)
                return self._cond_theta(k, theta_from_env(self.subs[k], env))

            return run

        n = len(self.branches)
        return lax.switch(jnp.clip(index[0], 0, n - 1), [branch(k) for k in range(n)],
                          tuple(self._variable_values(ops)))

    def _run_branch(self, index, branches, *args):
        """The chosen branch's ``(solved, extra, log|det|, ok)``; an index out of range is outside the domain."""
        n = len(branches)
        solved, extra, ld, ok = lax.switch(jnp.clip(index[0], 0, n - 1), branches, *args)
        return solved, extra, ld, jnp.logical_and(ok, (index[0] >= 0) & (index[0] < n))


class _CallSolver(_CondSolver):
    """A kept call solved backwards: its body inverted as the one branch of a cond.

    A ``custom_vjp`` call is kept whole in the program (``_ir``) so that, evaluated forward, it
    keeps its reverse rule; solved backwards, its custom rule says nothing about the inverse, so
    the body is inverted like any other program (a ``while_loop`` in it is refused with its
    reason). A function rule that declines a call it does not recognise (a user's own function
    that shares a library function's name) falls back to this too.
    """

    n_index = 0

    def __init__(self, pat):
        super().__init__(pat)
        self.description = f"invert the body of {self._where(0, pat.eqn)}"

    def _bodies(self, eqn):
        return [eqn.params[CALL_PRIMITIVES[eqn.prim]]]

    def _where(self, k, eqn):
        kind = "custom_vjp function" if eqn.prim is CUSTOM_VJP_P else "function"
        return f"the {kind} {eqn.function or ''} at {eqn.source}".replace("  ", " ")

    def pgf(self, ins, outs):
        from ..schedule import theta_from_env

        if not self.theta:
            return ()
        _, env = self.branches[0].evaluate(*self._variable_values(ins), record=True)
        return self._cond_theta(0, theta_from_env(self.subs[0], env))

    def _run_branch(self, index, branches, *args):
        return branches[0](*args)


_cond_solvers: dict = {}  # (relation, what is known, table) -> the solver or the error building it


def _cond_solver(pat, kind=_CondSolver):
    """The solver for this knowledge pattern, built once (it schedules every branch)."""
    key = (id(pat.eqn), pat.known_in, pat.known_out, id(pat.table))
    hit = _cond_solvers.get(key)
    if hit is None or hit[0] is not pat.eqn:
        if len(_cond_solvers) > 512:
            _cond_solvers.clear()
        try:
            hit = (pat.eqn, kind(pat), None)
        except InversionError as err:
            hit = (pat.eqn, None, err)
        _cond_solvers[key] = hit
    if hit[2] is not None:
        raise hit[2]
    return hit[1]


def _cond_rule(pat):
    if not pat.known_in[0] or not any(pat.known_out):
        return None
    if all(pat.known_in):
        return None
    solver = _cond_solver(pat)
    if not pat.allow_theta and any(not s.discrete for s in solver.theta):
        # continuous θ frees a value inside the branches: wait until nothing else can move,
        # as for any rule that consumes θ (the value may be determined by another relation)
        return None
    return solver


DEFAULT_RULES.register(COND_P, _cond_rule)


def call_body_rule(pat):
    """Solve a kept call (``custom_vjp``, or a function whose own rule declined) through its body."""
    if not any(pat.known_out) or all(pat.known_in):
        return None  # nothing to solve; with every input known the call is evaluated forward
    solver = _cond_solver(pat, _CallSolver)
    if not pat.allow_theta and any(not s.discrete for s in solver.theta):
        return None  # as for a cond: θ waits until nothing else can move
    return solver


DEFAULT_RULES.register(CUSTOM_VJP_P, call_body_rule)


def _while_rule(pat):
    raise NoRuleError(
        f"a while_loop at {pat.eqn.source} lies between the unknown inputs and the observations; its trip "
        "count is decided at run time, so it cannot be inverted step by step. Use lax.fori_loop with "
        "static bounds or lax.scan (both are inverted), or declare the inverse with @ppinv.custom_inverse."
    )


DEFAULT_RULES.register(WHILE_P, _while_rule)
