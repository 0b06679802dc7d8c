r"""The equivalence report on a user's own network: does the full ELBO of the MC dropout family,
built from the module, reduce to the module's dropout loss as :math:`\theta \to 0`?

The network is converted (:func:`~vi_dropout.conversion.convert_module`), every covered weight
and bias gets the family, and one weight is drawn per example
(:func:`~vi_dropout.forward.module_forward`), as dropout draws one mask per example.
All rows run in float64.

**Why the thetas are chosen per network.** With the same masks and the same standard normals
(common random numbers), the gradient of :math:`-\mathrm{ELBO}/(N\tau)` differs from the
gradient of the dropout loss by :math:`C\theta` where the network is smooth, with a constant
:math:`C` that grows with the size of the activations (a unit's jitter is
:math:`\theta\sqrt{\lVert\mathbf{h}\rVert^2 + 1}`: about :math:`100\theta` behind the 9,216
inputs of the PyTorch MNIST example's ``fc1``). A ReLU whose pre-activation lies within the
jitter of its kink, or a max-pool window whose two largest inputs lie that close, switches
branch, and that example's gradient changes by :math:`O(1)`: the pathwise difference is then
not :math:`O(\theta)` at all, although its expectation is. A network with :math:`10^5`
rectified units per example has such crossings down to :math:`\theta \approx 10^{-8}`, so no
fixed range of :math:`\theta` and no fixed multiple :math:`c\theta` suits every network.

The gradient rows therefore *look* for the :math:`O(\theta)` regime: starting at
``scan_from`` they compute the gradient difference one decade of :math:`\theta` at a time
until every parameter's relative difference has shrunk by a factor in
:math:`[10^{0.8}, 10^{1.2}]` per decade over :data:`WINDOW` consecutive decades (or lies
below the float64 floor :data:`FLOOR`), down to :data:`SMALLEST_THETA`. The decades above the
regime are reported with what the :class:`~vi_dropout.verify.kinks.BranchRecorder` saw there
("5,377 units changed branch in 200 examples ..."); if no window is found, every gradient row
fails and says why. A wrong implementation (a missing :math:`1/\pi`, a wrong KL scale, a mask
not applied, a wrong :math:`N/B`) leaves an :math:`O(1)` difference that does not shrink with
:math:`\theta`, so no window exists and the report fails (tested on the example networks).
``thetas=`` fixes the decades instead of searching (``--thetas`` on the command line).

The rows:

* **gradient**: per covered weight and bias, the log-log slope of the relative difference over
  the window (in [0.8, 1.2]), and the whole gradient's relative difference at the smallest
  :math:`\theta` (at most :math:`10^{-4}`);
* **value**: :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}` minus the constant
  the theory predicts (:func:`~vi_dropout.infer.elbo.elbo_dropout_offset`, exact KL), over
  the window: the residual must shrink like :math:`\theta` as well (or sit at the float64
  floor of the constant);
* **pyro**: ``Trace_ELBO`` of :class:`~vi_dropout.models.ModuleBNN` and its
  :class:`~vi_dropout.guides.DropoutGuide` (Pyro's own sampling, plates and the exact
  mixture density :math:`\log q`), one draw at a time: the draw's masks are read back from its
  weights, and its gradient is compared with the gradient of the dropout loss under those
  masks (shared by the minibatch, as one draw is) and the prior's decay on the kept columns;
  the difference must shrink like :math:`\theta` over the window's two smallest decades;
* **trajectory**: SGD on the module itself, in training mode with its own dropout and torch's
  ``weight_decay``, against SGD on the per-example ELBO at :data:`SMALLEST_THETA`, same
  initialisation and masks (tolerance :math:`10^{-6}` on the parameters). This row is the one
  that compares with the module's *own* dropout (``nn.Dropout``'s :math:`1/\pi` rescaling, its
  random stream), not with the toolkit's dropout loss; the convergence in :math:`\theta` is the
  other rows' job, so it runs where the jitter's drift over the steps (:math:`O(\theta)` per
  step) is far below the tolerance and no unit crosses a kink.

Parameters the family does not cover (BatchNorm, LayerNorm, embeddings) are held fixed.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
    ...                           torch.nn.Linear(8, 1))
    >>> x, y = torch.randn(32, 2), torch.randn(32, 1)
    >>> rows = verify_network(net, x, y, quick=True)  # doctest: +SKIP

Why one module of this size: the four checks of the report and :func:`verify_network`, which
runs them on one scan window; the problem they share is :mod:`vi_dropout.verify.problem`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from vi_dropout.conversion import without_disabled_dropout
from vi_dropout.forward import module_forward, run_module
from vi_dropout.infer.elbo import (
    inverted_weight_decay,
)
from vi_dropout.inputs import Inputs, batch_size, call, take
from vi_dropout.likelihoods import data_term
from vi_dropout.verify.kinks import BranchRecorder, BranchReport, branch_changes
from vi_dropout.verify.problem import (
    DTYPE,
    GradientDifferences,
    ModuleProblem,
    relative_difference,
)
from vi_dropout.verify.report import report_row

__all__ = ["check_network_gradients", "check_network_values", "check_network_pyro",
           "check_module_trajectory", "verify_network", "conversion_summary", "check_thetas",
           "SCAN_FROM", "SMALLEST_THETA", "LARGEST_THETA", "WINDOW", "FLOOR"]

#: the largest jitter the gradient scan tries
SCAN_FROM = 1e-4
#: the smallest jitter the scan tries: below it the O(theta) difference nears float64 rounding
SMALLEST_THETA = 1e-12
#: the largest jitter a fixed ``thetas`` may hold
LARGEST_THETA = 1e-2
#: consecutive decades of O(theta) convergence the scan needs
WINDOW = 3
#: relative differences below this are float64 rounding (sums of up to ~1e6 terms), not signal
FLOOR = 1e-11
#: a decade must shrink the difference by a factor within these bounds (10 ** (1 -+ 0.2))
RATIO_BOUNDS = (10**0.8, 10**1.2)


def check_thetas(thetas: Sequence[float]) -> tuple[float, ...]:
    """``thetas`` as distinct decreasing values in ``[SMALLEST_THETA, LARGEST_THETA]``, at least
    two; a ValueError says what is wrong."""
    try:
        values = [float(t) for t in thetas]
    except (TypeError, ValueError):
        raise ValueError(f"thetas must be numbers, got {thetas!r}") from None
    window = tuple(sorted(set(values), reverse=True))
    if len(window) < 2:
        raise ValueError(f"thetas must hold at least 2 distinct values, got {thetas!r}")
    bad = [t for t in window if not SMALLEST_THETA <= t <= LARGEST_THETA]
    if bad:
        raise ValueError(
            f"thetas must lie in [{SMALLEST_THETA:g}, {LARGEST_THETA:g}], got {bad}: below, the "
            f"O(theta) difference drowns in float64 rounding; above, theta is no longer the "
            f"small jitter of the dropout limit")
    return window


def _shrinks(upper: float, lower: float, ratio: float) -> bool:
    """Whether a difference went from ``upper`` to ``lower`` as theta shrank by ``ratio``, as
    O(theta) predicts (or ``lower`` is at the float64 floor)."""
    if lower <= FLOOR:
        return True
    if not (math.isfinite(upper) and math.isfinite(lower)) or lower <= 0:
        return False
    per_decade = (upper / lower) ** (1.0 / math.log10(ratio))
    return RATIO_BOUNDS[0] <= per_decade <= RATIO_BOUNDS[1]


def _linear(values: Sequence[float], thetas: Sequence[float]) -> bool:
    return all(_shrinks(values[i], values[i + 1], thetas[i] / thetas[i + 1])
               for i in range(len(values) - 1))


def _slope(values: Sequence[float], thetas: Sequence[float]) -> float:
    pts = [(t, v) for t, v in zip(thetas, values) if v > FLOOR and math.isfinite(v)]
    if len(pts) < 2:
        return 1.0 if all(v <= FLOOR for v in values) else math.nan
    return float(np.polyfit(np.log([t for t, _ in pts]), np.log([v for _, v in pts]), 1)[0])


def _decades(start: float, stop: float) -> list[float]:
    out, k = [], 0
    while start * 10.0 ** (-k) >= stop * (1 - 1e-9):
        out.append(float(f"{start * 10.0 ** (-k):.3g}"))
        k += 1
    return out


def check_network_gradients(problem: ModuleProblem, thetas: Sequence[float] | None = None,
                            scan_from: float = SCAN_FROM, seed: int = 1
                            ) -> tuple[list[dict], tuple[float, ...]]:
    r"""The gradient rows (module docstring). Returns ``(rows, window)``: the decades of
    :math:`\theta` where the difference is :math:`O(\theta)` (the given ``thetas``, or the
    scan's window; empty if none was found)."""
    masks, noise = problem.masks(seed), seed + 1
    names = problem.param_names
    diffs: dict[float, list[float]] = {}
    totals: dict[float, float] = {}
    measured = GradientDifferences(problem, masks, noise)

    def measure(theta):
        diffs[theta], totals[theta] = measured(theta)

    def params_linear(ts):
        return all(_linear([diffs[t][i] for t in ts], ts) for i in range(len(names)))

    reports: dict[float, str] = {}

    def why(theta) -> str:
        """The branch changes at ``theta`` (two forward passes; once per theta)."""
        if theta not in reports:
            reports[theta] = problem.branch_report(masks, theta, noise).describe()
        return reports[theta]

    rows: list[dict] = []
    if thetas is not None:
        window = check_thetas(thetas)
        for t in window:
            measure(t)
        scanned: list[float] = []
    else:
        scanned, window = [], ()
        for t in _decades(scan_from, SMALLEST_THETA):
            measure(t)
            scanned.append(t)
            if len(scanned) >= WINDOW and params_linear(scanned[-WINDOW:]):
                window = tuple(scanned[-WINDOW:])
                break
        where = "before the O(theta) regime" if window else "not O(theta)"
        for t in scanned[:len(scanned) - len(window)]:
            rows.append(report_row(
                "gradient", f"theta={t:g} (scan, all parameters)", totals[t], "reported", True,
                where + (f": {why(t)}" if why(t) else "")))
    if not window:
        last = scanned[-WINDOW:]
        causes = [f"theta {t:g}: rel. diff {totals[t]:.2e}"
                  + (f", {why(t)}" if why(t) else ", no unit changed branch") for t in last]
        rows.append(report_row(
            "gradient", f"O(theta) regime, theta {scan_from:g} .. {SMALLEST_THETA:g}",
            totals[last[-1]], "found", False,
            "the difference does not shrink like theta down to "
            f"{SMALLEST_THETA:g}: " + "; ".join(causes) + ". With no unit changing branch, "
            "this is an error in the ELBO or in the conversion, not a property of the network"))
        return rows, ()
    for i, name in enumerate(names):
        vals = [diffs[t][i] for t in window]
        ok = _linear(vals, window) and vals[-1] <= 1e-4
        slope = _slope(vals, window)
        detail = "rel. diff " + ", ".join(f"{v:.2e}" for v in vals) + (
            f" at theta {window[0]:g} .. {window[-1]:g}")
        if ok and vals[-1] > FLOOR:
            detail += f" (= {vals[-1] / window[-1]:.3g} theta)"
        if not ok:
            changes = [f"theta {t:g}: {why(t)}" for t in window if why(t)]
            detail += ("; not O(theta): " + "; ".join(changes) if changes else
                       "; not O(theta), and no unit changed branch: an error in the ELBO or the "
                       "conversion")
        rows.append(report_row("gradient", f"{name}, theta {window[0]:g} .. {window[-1]:g}",
                               slope, "O(theta): slope in [0.8, 1.2], last <= 1e-4", ok,
                               detail))
    smallest = window[-1]
    rows.append(report_row(
        "gradient", f"all parameters, theta={smallest:g}", totals[smallest], "<= 0.0001",
        totals[smallest] <= 1e-4,
        "the whole gradient; log-log slope over the window "
        f"{_slope([totals[t] for t in window], window):.3f}"))
    return rows, window


def check_network_values(problem: ModuleProblem, thetas: Sequence[float], seed: int = 1,
                         gap_samples: int = 256) -> list[dict]:
    r""":math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_{\text{dropout}}` minus the predicted
    constant at each :math:`\theta` of the window. The residual is :math:`O(\theta)`; the rows
    pass when it shrinks like :math:`\theta` from decade to decade or lies within the float64
    rounding of the terms (:math:`10^{-12}` times the constant and the loss), and the last
    residual is at most :math:`10^{-4}`."""
    masks, noise = problem.masks(seed), seed + 1
    ws, bs = problem.params(requires_grad=False)
    with torch.no_grad():
        loss = float(problem.dropout_loss(ws, bs, masks))
        vals = [float(problem.scaled_negative_elbo(ws, bs, masks, t, noise, gap_samples))
                for t in thetas]
    consts = [problem.offset(t) for t in thetas]
    resid = [abs(v - loss - c) for v, c in zip(vals, consts)]
    floors = [1e-12 * max(1.0, abs(c), abs(loss)) for c in consts]
    rows = []
    for i, t in enumerate(thetas):
        if resid[i] <= floors[i]:
            ok, how = True, f"is within float64 rounding ({floors[i]:.1e})"
        elif i + 1 < len(thetas):
            ok = resid[i + 1] <= floors[i + 1] or _shrinks(resid[i], resid[i + 1],
                                                           t / thetas[i + 1])
            how = "shrinks like theta to the next" if ok else "does NOT shrink like theta"
        else:
            ok = _shrinks(resid[i - 1], resid[i], thetas[i - 1] / t) and resid[i] <= 1e-4
            how = ("shrank like theta from the last" if ok else
                   "did NOT shrink like theta from the last, or exceeds 1e-4")
        rows.append(report_row(
            "value", f"theta={t:g}", resid[i], "O(theta)", ok,
            f"-ELBO/(N tau) - loss = {vals[i] - loss:.6f}, predicted constant {consts[i]:.6f}; "
            f"the residual {how}"))
    return rows


def _pyro_branch_report(problem: ModuleProblem, x, weights, gates) -> BranchReport:
    """Branch changes between the network with the draw's weights ``W`` (jitter included) and
    with ``M diag(z)`` (no jitter): the pathwise cause of a failed Pyro row."""
    recs = []
    for jitter in (False, True):
        values = {}
        for layer, w, m, z in zip(problem.layers, weights, problem.weights, gates):
            values[f"{layer.name}.weight"] = layer.from_columns(w if jitter else m * z)
        rec = BranchRecorder(batch_size(x), problem.copy)
        with torch.no_grad(), rec:
            run_module(problem.copy, x, values)
        recs.append(rec)
    return branch_changes(*recs)


def check_network_pyro(problem: ModuleProblem, start: float = SCAN_FROM, num_draws: int = 2,
                       num_examples: int | None = None, seed: int = 2) -> list[dict]:
    r"""Pyro's ``Trace_ELBO`` of :class:`~vi_dropout.models.ModuleBNN` under its
    :class:`~vi_dropout.guides.DropoutGuide`, one draw at a time, against the dropout loss with
    that draw's masks.

    One draw :math:`\mathbf{W} = \mathbf{M}\operatorname{diag}(\mathbf{z}) + \theta\mathbf{E}`
    is shared by the minibatch. Its ``Trace_ELBO`` gradient in :math:`\mathbf{M}`, divided by
    :math:`N\tau`, tends as :math:`\theta \to 0` to the gradient of

    .. math::
        \frac1n\sum_n \ell(\mathbf{y}_n, f(\mathbf{x}_n; \mathbf{M}\operatorname{diag}
        \mathbf{z})) + \frac{l^2}{2N\tau}\Big(\sum_a z_a\lVert\mathbf{m}_a\rVert^2 +
        \lVert\mathbf{b}\rVert^2\Big)

    (the log density of the draw under :math:`q` does not depend on :math:`\mathbf{M}` when the
    components are separated, and the prior's gradient is :math:`l^2 z_a\mathbf{m}_a`; in
    expectation over :math:`z_a` this is the dropout loss's decay :math:`\pi l^2`). Both are
    computed for ``num_draws`` seeded draws on the first ``num_examples`` examples, from
    ``start`` down, one decade at a time (to :data:`SMALLEST_THETA`), until the
    largest relative difference shrinks like :math:`\theta` over a decade (or is at the float64
    floor) and is at most :math:`10^{-4}`. The draw's weight noise differs from the per-example
    jitter of the other rows, so its branch changes are looked for separately. Going down has a
    limit the other rows do not have: autograd of the exact :math:`\log q` adds and cancels
    terms :math:`(\mathbf{w}_a - \mathbf{m}_a)/\theta^2` of size :math:`\epsilon/\theta`
    around the :math:`O(1)` gradient of the likelihood, whose float64 rounding grows like
    :math:`10^{-16}/\theta`; the first decade pair that shows :math:`O(\theta)` is taken,
    before that floor."""
    import pyro
    from pyro import poutine
    from pyro.infer import Trace_ELBO

    from vi_dropout.guides import DropoutGuide
    from vi_dropout.models import ModuleBNN

    n = problem.num_data if num_examples is None else min(num_examples, problem.num_data)
    x, y = take(problem.x, slice(0, n)), problem.y[:n]
    keep = {layer.name: layer.keep_prob for layer in problem.layers}
    l2 = problem.prior_length_scale ** 2
    n_tau = problem.num_data * problem.tau  # -ELBO / (N tau) is the dropout loss's scale
    seen: list[tuple[float, float]] = []
    last_draw = None
    for t in _decades(start, SMALLEST_THETA):
        pyro.clear_param_store()
        model = ModuleBNN(problem.module, prior_length_scale=problem.prior_length_scale,
                          tau=problem.tau, likelihood=problem.likelihood, keep_probs=keep,
                          uncovered_dropout=problem.conversion.uncovered_dropout)
        guide = DropoutGuide(model, theta=t)
        params = list(guide.weight_locs) + [b for b in guide.bias_locs if b is not None]
        worst = 0.0
        for d in range(num_draws):
            pyro.set_rng_seed(seed + d)
            tr = poutine.trace(guide).get_trace(x, y)
            weights = [tr.nodes[f"{layer.name}.weight"]["value"].detach()
                       for layer in problem.layers]
            gates = [((w - m.detach()).norm(dim=0) < w.norm(dim=0)).to(DTYPE)
                     for w, m in zip(weights, guide.weight_locs)]
            pyro.set_rng_seed(seed + d)
            loss = Trace_ELBO().differentiable_loss(model, guide, x, y, problem.num_data)
            g_pyro = torch.autograd.grad(loss / n_tau, params)
            ws, bs = problem.params()
            masks = []
            for layer, z, shape in zip(problem.layers, gates, problem.input_shapes):
                if layer.kind == "linear":
                    masks.append(z.expand(n, *shape[1:]).clone())
                else:
                    masks.append(z.reshape(1, -1, *([1] * (len(shape) - 2)))
                                 .expand(n, *([-1] * (len(shape) - 1))).clone())
            out = module_forward(problem.copy, problem.layers, ws, problem._all_biases(bs), x,
                                 masks=masks, theta=0.0)
            ref = data_term(y, out, problem.likelihood)  # the plate scales n examples to N
            for z, w in zip(gates, ws):
                ref = ref + l2 / (2 * n_tau) * (z * w.square().sum(0)).sum()
            for b in bs:
                ref = ref + l2 / (2 * n_tau) * b.square().sum()
            g_ref = torch.autograd.grad(ref, ws + bs)
            diff = relative_difference(torch.cat([g.flatten() for g in g_pyro]),
                        torch.cat([g.flatten() for g in g_ref]))
            if diff >= worst:
                worst, last_draw = diff, (weights, gates)
        seen.append((t, worst))
        if len(seen) >= 2 and seen[-1][1] <= 1e-4 and _shrinks(
                seen[-2][1], seen[-1][1], seen[-2][0] / seen[-1][0]):
            break
    (t0, d0), (t1, d1) = seen[-2] if len(seen) >= 2 else seen[-1], seen[-1]
    ok = len(seen) >= 2 and d1 <= 1e-4 and _shrinks(d0, d1, t0 / t1)
    detail = (f"{num_draws} draws on {n} examples (ModuleBNN + DropoutGuide, exact log q), "
              "largest rel. diff " + ", ".join(f"{d:.2e} at {t:g}" for t, d in seen))
    if not ok:
        why = _pyro_branch_report(problem, x, *last_draw).describe()
        detail += "; not O(theta): " + (why or "no unit changed branch: an error in the Pyro "
                                               "model, the guide or the likelihood scaling")
    return [report_row("pyro", f"Trace_ELBO per draw, theta {t0:g} -> {t1:g}", d1,
                       "O(theta), <= 0.0001", ok, detail)]


def check_module_trajectory(problem: ModuleProblem, num_steps: int = 100, lr: float = 0.05,
                            theta: float = SMALLEST_THETA, seed: int = 3,
                            num_examples: int | None = None) -> list[dict]:
    r"""``num_steps`` of full-batch SGD on (a) the module itself, in training mode with its own
    dropout and torch's ``weight_decay``, and (b) :math:`-\mathrm{ELBO}/(N\tau)` (one weight draw
    per example at ``theta``), from the same initialisation and with the same masks (the
    global generator is reseeded before (a)'s forward and (b)'s masks are drawn from it in the
    order the dropout layers run, with ``nn.Dropout``'s own draw), on the first
    ``num_examples`` examples. (a)'s weights are mapped by :math:`\mathbf{M} = \mathbf{W}'/\pi`,
    its step sizes are :math:`\eta\pi^2` and its decays :math:`2\lambda/\pi^2` (see
    :func:`~vi_dropout.infer.elbo.inverted_weight_decay`). Uncovered parameters are fixed.
    Tolerance: max parameter difference :math:`\le 10^{-6}`."""
    n = problem.num_data if num_examples is None else min(num_examples, problem.num_data)
    x, y = take(problem.x, slice(0, n)), problem.y[:n]
    # the module with its own covered dropout acting, and the dropout the conversion switched
    # off (uncovered_dropout="disable") off here too
    net = without_disabled_dropout(problem.module, problem.conversion).train()
    for prm in net.parameters():
        prm.requires_grad_(False)
    groups = []
    for layer, (wd, bd) in zip(problem.layers, problem.decays()):
        sub = net.get_submodule(layer.name)
        sub.weight.requires_grad_(True)
        groups.append({"params": [sub.weight], "lr": lr * layer.keep_prob**2,
                       "weight_decay": 2 * inverted_weight_decay(wd, layer.keep_prob)})
        if sub.bias is not None:
            sub.bias.requires_grad_(True)
            groups.append({"params": [sub.bias], "lr": lr, "weight_decay": 2 * bd})
    opt_a = torch.optim.SGD(groups, lr=lr)
    ws, bs = problem.params()
    opt_b = torch.optim.SGD(ws + bs, lr=lr)
    # The module's loss is the mean over its minibatch of n examples; the ELBO's data term is
    # scaled to N = problem.num_data by the (N/n)-weighted mean, so both see the same problem.
    def difference() -> float:
        diff = 0.0
        with torch.no_grad():
            b_iter = iter(bs)
            for layer, w in zip(problem.layers, ws):
                sub = net.get_submodule(layer.name)
                diff = max(diff, float((layer.means_from_module(sub.weight) - w).abs().max()))
                if sub.bias is not None:
                    diff = max(diff, float((sub.bias - next(b_iter)).abs().max()))
        return diff

    diffs = []
    for step in range(num_steps):
        torch.manual_seed(seed * 100_003 + step)
        out = call(net, x)
        if problem.likelihood == "gaussian":
            loss_a = 0.5 * (y - out).pow(2).sum(-1).mean()
        else:
            loss_a = nn.functional.cross_entropy(out, y)
        opt_a.zero_grad()
        loss_a.backward()
        opt_a.step()
        torch.manual_seed(seed * 100_003 + step)
        masks = problem.masks(None, n)
        loss_b = problem.scaled_negative_elbo(ws, bs, masks, theta, seed + step, gap_samples=0,
                                              x=x, y=y)
        opt_b.zero_grad()
        loss_b.backward()
        opt_b.step()
        diffs.append(difference())
    diff = diffs[-1]
    with torch.no_grad():
        moved = max(float((w - w0).abs().max()) for w, w0 in zip(ws, problem.weights))
    detail = f"parameters moved up to {moved:.3f}; difference after step 1: {diffs[0]:.2e}"
    if diff > 1e-6:
        first = next(i for i, d in enumerate(diffs) if d > 1e-6)
        detail += (
            "; the FIRST step already differs: the module's own dropout or weight decay is not "
            "what the ELBO models (another mask, a missing 1/keep_prob, another random stream)"
            if first == 0 else
            f"; it passed 1e-6 at step {first + 1} and grew from there (the two trajectories "
            f"part by rounding amplified by the training dynamics, or a unit crossing its kink)")
    return [report_row("trajectory", f"{num_steps} SGD steps, theta={theta:g}, {n} examples",
                       diff, "<= 1e-06", diff <= 1e-6, detail)]


def conversion_summary(problem: ModuleProblem) -> dict:
    """The conversion as plain data for the report's JSON: every covered layer (its kind, shape,
    keep_prob and the dropout feeding it), every dropout switched off with why, and the
    parameters left as point estimates."""
    covered = {f"{c.name}.{attr}" for c in problem.layers for attr in ("weight", "bias")}
    return {
        "covered": [{"layer": c.name, "kind": c.kind, "weight_shape": list(c.weight_shape),
                     "columns": c.num_cols, "keep_prob": c.keep_prob, "bias": c.has_bias,
                     "dropout": c.dropout} for c in problem.layers],
        "disabled_dropout": [{"name": d.name, "kind": d.kind, "keep_prob": d.keep_prob,
                              "reason": d.reason} for d in problem.conversion.disabled],
        "uncovered_dropout": problem.conversion.uncovered_dropout,
        "point_estimates": [name for name, _ in problem.copy.named_parameters()
                            if name not in covered],
    }


def verify_network(module: nn.Module, x: Inputs, y, *, likelihood: str = "gaussian",
                   prior_length_scale: float = 1.0, tau: float = 1.0,
                   keep_probs: Mapping[str, float] | None = None, quick: bool = False,
                   thetas: Sequence[float] | None = None,
                   uncovered_dropout: str = "refuse", show_progress: bool = False,
                   problem: ModuleProblem | None = None) -> list[dict]:
    """The equivalence report (gradient, value, pyro and trajectory rows) on the user's
    ``module`` and data; see the module docstring.

    Args:
        module, x, y, likelihood, prior_length_scale, tau, keep_probs, uncovered_dropout: the
            problem (:class:`ModuleProblem`).
        quick: the Pyro row on 32 examples and the trajectory on 64 examples for 20 steps
            (instead of every example for 100 steps); the same tolerances.
        thetas: fix the decades of the gradient, value and Pyro rows (at least 2) instead of
            searching for the O(theta) regime.
        problem: an already built :class:`ModuleProblem` (the other problem arguments are
            then ignored).

    Returns the rows (:func:`vi_dropout.verify.report.format_table`); a first ``conversion`` row
    states what is covered and any dropout switched off."""
    from tqdm.auto import tqdm

    if thetas is not None:
        thetas = check_thetas(thetas)
    if problem is None:
        problem = ModuleProblem(module, x, y, likelihood=likelihood,
                                prior_length_scale=prior_length_scale, tau=tau,
                                keep_probs=keep_probs, uncovered_dropout=uncovered_dropout)
    layers = problem.layers
    disabled = problem.conversion.disabled
    summary = conversion_summary(problem)
    point = summary["point_estimates"]
    rows: list[dict] = [report_row(
        "conversion", f"{len(layers)} covered layers", len(layers), "reported", True,
        ", ".join(f"{c.name} ({c.kind}, keep_prob {c.keep_prob:g})" for c in layers)
        + ("; NO DROPOUT in the network: every covered layer has keep_prob 1 (a Gaussian "
           "family around its weights), and the report checks that limit"
           if all(c.keep_prob == 1 for c in layers) else "")
        + ("; DROPOUT SWITCHED OFF (uncovered_dropout='disable'): "
           + problem.conversion.describe_disabled() if disabled else "")
        + (f"; point estimates (not covered): {len(point)} tensors, e.g. "
           + ", ".join(point[:4]) if point else "; no point estimates"))]
    with tqdm(total=4, desc="verify", disable=not show_progress) as bar:
        grad_rows, window = check_network_gradients(problem, thetas=thetas)
        rows += grad_rows
        bar.update()
        if window:
            rows += check_network_values(problem, window)
        bar.update()
        rows += check_network_pyro(problem, start=max(thetas) if thetas else SCAN_FROM,
                                   num_examples=32 if quick else None)
        bar.update()
        rows += check_module_trajectory(
            problem, num_steps=20 if quick else 100,
            theta=SMALLEST_THETA,
            num_examples=64 if quick else None)
        bar.update()
    return rows
