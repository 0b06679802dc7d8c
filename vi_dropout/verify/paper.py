r"""The equivalence report on the paper's MLP: does the full ELBO of the MC dropout family reduce
to the dropout loss?

The reference problem (:class:`VerifyProblem`, float64): 64 points in 3-D, a 3-16-16-1 ReLU
network, keep probabilities (0.9, 0.8, 0.8) on the inputs of the three layers, prior
length-scale :math:`l = 0.5`, precision :math:`\tau = 5`. It is a
`~vi_dropout.verify.problem.ModuleProblem` of the paper:class:`~vi_dropout.verify.problem.ModuleProblem` of the paper's MLP, so the gradient, value and
trajectory rows are those of :func:`~vi_dropout.verify.network.verify_network` (one
implementation for every network). What only the paper's setting has: Pyro's vectorised
``Trace_ELBO`` gradient in expectation (:func:`check_pyro_gradient`), the KL against its Monte
Carlo truth (:func:`check_kl`) and Concrete dropout's learned keep probability
(:func:`check_concrete`, :func:`check_concrete_maximiser`).

Each check returns tidy rows (:func:`~vi_dropout.verify.report.report_row`); :func:`run_verify`
collects them and :func:`~vi_dropout.verify.report.format_table` prints them. ``python -m
vi_dropout verify`` runs everything and exits with code 1 if any row fails its tolerance.

Example:
    >>> problem = VerifyProblem(num_data=16)
    >>> [layer.keep_prob for layer in problem.layers]
    [0.9, 0.8, 0.8]
"""

from __future__ import annotations

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyro
import torch
from pyro.infer import Trace_ELBO

from vi_dropout.distributions import DropoutNormal
from vi_dropout.guides import DropoutGuide
from vi_dropout.infer.elbo import negative_elbo
from vi_dropout.kl import binary_entropy, kl_gap, kl_large_width, kl_monte_carlo
from vi_dropout.models import MLP, BayesianMLP
from vi_dropout.network import Architecture
from vi_dropout.verify.network import verify_network
from vi_dropout.verify.problem import ModuleProblem
from vi_dropout.verify.report import report_row

__all__ = [
    "VerifyProblem",
    "check_pyro_gradient",
    "check_kl",
    "check_concrete",
    "check_concrete_maximiser",
    "run_verify",
]

DTYPE = torch.float64


class VerifyProblem(ModuleProblem):
    r"""The paper's reference problem as a :class:`~vi_dropout.verify.problem.ModuleProblem` of
    the paper's MLP (:class:`~vi_dropout.models.mlp.MLP`): the same checks, objectives and
    masks as for any network.

    Data: ``num_data`` points :math:`\mathbf{x} \sim \mathcal{N}(0, I)`,
    :math:`y = \sin(\mathbf{x}^\top\mathbf{w}) + 0.1\,\epsilon`; means Glorot-uniform, biases
    :math:`0.1\,\mathcal{N}(0, 1)` (non-zero, so that every gradient block is exercised), all
    from ``seed``, in float64.

    Args:
        num_data: :math:`N`.
        architecture: the MLP (default 3-16-16-1, ReLU).
        keep_probs: one per layer.
        prior_length_scale: :math:`l`.
        tau: :math:`\tau`.
        seed: the seed of the data and the means.
    """

    #: the gap over every column, from its own generator (seed 0): small enough to afford, and
    #: the Monte Carlo stream of the records made with this problem (the pitfalls' exact_elbo)
    gap_separation = math.inf
    gap_seed = 0

    def __init__(self, num_data: int = 64, architecture: Architecture | None = None,
                 keep_probs=(0.9, 0.8, 0.8), prior_length_scale: float = 0.5, tau: float = 5.0,
                 seed: int = 0):
        architecture = architecture or Architecture((3, 16, 16, 1), "relu")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(num_data, architecture.in_features, generator=g, dtype=DTYPE)
        w_true = torch.randn(architecture.in_features, architecture.out_features, generator=g,
                             dtype=DTYPE)
        y = torch.sin(x @ w_true) + 0.1 * torch.randn(num_data, architecture.out_features,
                                                       generator=g, dtype=DTYPE)
        means, biases = architecture.init_params(generator=g, dtype=DTYPE)
        biases = [0.1 * torch.randn(b.shape, generator=g, dtype=DTYPE) for b in biases]
        net = MLP(architecture, keep_probs, dtype=DTYPE)
        with torch.no_grad():  # nn.Dropout's convention: the module's weights are keep_prob * M
            for layer, kp, m, b in zip(net.layers, net.keep_probs, means, biases):
                layer.weight.copy_(kp * m)
                layer.bias.copy_(b)
        super().__init__(net, x, y, prior_length_scale=prior_length_scale, tau=tau,
                         keep_probs=net.keep_prob_map())
        self.architecture = architecture
        self.seed = seed

    def pyro_model_and_guide(self, theta: float):
        """The Pyro model and guide of this problem, the guide's means at the problem's
        parameters, and the ``Trace_ELBO`` to differentiate (vectorised particles)."""
        model = BayesianMLP(self.architecture, self.prior_length_scale, self.tau,
                            keep_prob=self.keep_probs, dtype=DTYPE)
        guide = DropoutGuide(model, theta, init_weights=self.weights, init_biases=self.biases)
        params = list(guide.weight_locs) + list(guide.bias_locs)
        return model, guide, params, lambda n: Trace_ELBO(
            num_particles=n, vectorize_particles=True, max_plate_nesting=1)


def _flat_grads(loss, params):
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def check_pyro_gradient(problem: VerifyProblem, theta: float = 1e-6, num_particles: int = 2048,
                        num_batches: int = 16, num_mask_draws: int = 400, seed: int = 2) -> list[dict]:
    r"""Pyro's ``Trace_ELBO`` gradient (vectorised particles, one weight draw per particle, exact
    mixture log density in the KL) against the expected dropout-loss gradient.

    Both are Monte Carlo averages: the Pyro gradient over ``num_batches x num_particles``
    particles, the dropout gradient over ``num_mask_draws`` draws of per-example masks. Their
    standard errors give the expected relative error :math:`\sigma`; the row passes when the
    cosine similarity is :math:`\ge 0.99` and the relative error is :math:`\le 3\sigma`.
    ``theta`` is small so the comparison is not blurred by the :math:`O(\theta)` terms or the gap
    (a column with :math:`\|\mathbf{m}_a\| \lesssim \theta` makes the exact-KL gradient differ:
    see the README)."""
    pyro.set_rng_seed(seed)
    pyro.clear_param_store()
    model, guide, params, make_elbo = problem.pyro_model_and_guide(theta)
    elbo = make_elbo(num_particles)
    n_tau = problem.num_data * problem.tau
    t0 = time.perf_counter()
    g_pyro = torch.stack([
        _flat_grads(elbo.differentiable_loss(model, guide, problem.x, problem.y) / n_tau, params)
        for _ in range(num_batches)])
    t_pyro = time.perf_counter() - t0
    g_drop = []
    for k in range(num_mask_draws):
        ws, bs = problem.params()
        g_drop.append(_flat_grads(problem.dropout_loss(ws, bs, problem.masks(10_000 + k)), ws + bs))
    g_drop = torch.stack(g_drop)
    mp, md = g_pyro.mean(0), g_drop.mean(0)
    se_p = g_pyro.std(0) / math.sqrt(num_batches)
    se_d = g_drop.std(0) / math.sqrt(num_mask_draws)
    cos = float(mp @ md / (mp.norm() * md.norm()))
    rel = float((mp - md).norm() / md.norm())
    sigma = float(torch.sqrt(se_p.pow(2).sum() + se_d.pow(2).sum()) / md.norm())
    n_part = num_particles * num_batches
    return [
        report_row("pyro", f"cosine, {n_part} particles, theta={theta:g}", cos, ">= 0.99", cos >= 0.99,
             f"{t_pyro:.1f} s for the Pyro gradients"),
        report_row("pyro", "relative error", rel, f"<= 3 sigma = {3 * sigma:.3g}", rel <= 3 * sigma,
             f"Monte Carlo sigma = {sigma:.3g}"),
    ]


def check_kl(widths=(1, 2, 4, 16, 64, 256, 1024), thetas=(1e-1, 1e-2), keep_probs=(0.5, 0.9),
             num_cols: int = 8, prior_length_scale: float = 1.0, num_samples: int = 20_000,
             gap_samples: int = 4_000, seed: int = 4,
             progress: Callable | None = None) -> list[dict]:
    r"""Exact KL by Monte Carlo vs Proposition 1 vs the gap, for ``K`` rows, ``num_cols`` columns,
    means :math:`\mathbf{m} \sim \mathcal{N}(0, I)` (nested: the ``K``-row matrix is the first
    ``K`` rows of one draw, so each column's norm, and hence its separation
    :math:`\|\mathbf{m}_a\|/\theta`, grows with ``K``). Each row passes when
    :math:`|\text{MC} - \text{Prop.1} - \text{gap}| \le 4\sqrt{SE_{MC}^2 + SE_{gap}^2}` and the gap
    is :math:`\ge -4\,SE_{gap}` and :math:`\le Q\,H(\pi)`; a row per (theta, keep_prob) checks
    the gap does not grow with ``K`` (within 4 SE)."""
    rows = []
    gen = torch.Generator().manual_seed(seed)
    for theta in thetas:
        for kp in keep_probs:
            gaps = []
            # nested means: the first K rows of one draw, so column norms grow with K
            loc_full = torch.randn(max(widths), num_cols, generator=gen, dtype=DTYPE)
            for k in widths:
                loc = loc_full[:k]
                q = DropoutNormal(loc, kp, theta)
                mc = kl_monte_carlo(q, prior_length_scale, num_samples, generator=gen)
                p1 = float(kl_large_width(q, prior_length_scale))
                gap = kl_gap(q, gap_samples, generator=gen)
                est, se = float(mc.estimate), float(mc.stderr)
                g, gse = float(gap.estimate), float(gap.stderr)
                tol = 4 * math.sqrt(se**2 + gse**2)
                upper = num_cols * float(binary_entropy(torch.tensor(kp, dtype=DTYPE)))
                ok = abs(est - p1 - g) <= tol + 1e-9 and g >= -4 * gse and g <= upper + 1e-12
                gaps.append((g, gse))
                rows.append(report_row(
                    "kl", f"K={k} theta={theta:g} keep_prob={kp:g}", est - p1 - g, f"|.| <= {tol:.3g}",
                    ok, f"MC {est:.4f} ± {se:.4f}; Prop.1 {p1:.4f}; gap {g:.3e} ± {gse:.1e}"))
                if progress is not None:
                    progress()
            shrink = all(b[0] <= a[0] + 4 * math.hypot(a[1], b[1]) + 1e-12 for a, b in zip(gaps, gaps[1:]))
            rows.append(report_row("kl", f"gap shrinks with K, theta={theta:g} keep_prob={kp:g}",
                             gaps[-1][0], "non-increasing", shrink,
                             "gaps " + ", ".join(f"{g:.2e}" for g, _ in gaps)))
    return rows


def check_concrete(temperatures=(0.5, 0.2, 0.1, 0.05), num_batches: int = 20,
                   per_batch: int = 5_000, seed: int = 1) -> list[dict]:
    r"""Concrete dropout (:mod:`vi_dropout.infer.concrete`): the relaxed gradient against the exact one.

    Network 2-3-1 (tanh), dropout on the 3 hidden units only, two data points, no jitter noise:
    the 8 masks are enumerated, so the derivative of the expected objective in the keep_prob
    logit is exact (autograd through the Bernoulli-weighted sum). The relaxed estimator's
    gradient is averaged over ``num_batches * per_batch`` draws (common seeds for every
    temperature), with standard error SE = std of the batch means / sqrt(``num_batches``).

    Rows: the bias at each temperature (it may not grow by more than 3 combined SE from the
    previous temperature; at the lowest it must be within 4 SE of zero), and the entropy term's
    derivative against its closed form (tolerance 1e-12):

    .. math::
        \frac{d}{d\pi}\big[-Q H(\pi)\big] = Q \log\frac{\pi}{1 - \pi}.
    """
    import itertools

    from vi_dropout.infer.concrete import ConcreteDropoutObjective
    from vi_dropout.network import Architecture

    g = torch.Generator().manual_seed(seed)
    arch = Architecture((2, 3, 1), "tanh")
    x = torch.randn(2, 2, generator=g, dtype=DTYPE)
    y = torch.randn(2, 1, generator=g, dtype=DTYPE)
    obj = ConcreteDropoutObjective(arch, [None, 0.6], theta=1e-3, tau=2.0, generator=g)
    logit = obj.keep_prob_logit(1)
    z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=DTYPE)
    kp = torch.sigmoid(logit)
    weights = (kp**z * (1 - kp) ** (1 - z)).prod(-1)
    masks = [torch.ones(8, 2, 2, dtype=DTYPE), z[:, None, :].expand(8, 2, 3)]
    noise = [torch.zeros(8, 2, 3, dtype=DTYPE), torch.zeros(8, 2, 1, dtype=DTYPE)]
    (exact,) = torch.autograd.grad((weights * obj(x, y, masks=masks, noise=noise)).sum(), logit)
    zero_noise = [torch.zeros(per_batch, 2, 3, dtype=DTYPE),
                  torch.zeros(per_batch, 2, 1, dtype=DTYPE)]
    rows, prev = [], None
    for i, t in enumerate(temperatures):
        gen = torch.Generator().manual_seed(seed + 6)
        grads = torch.stack([
            torch.autograd.grad(obj(x, y, masks=obj.sample_masks(2, t, (per_batch,), generator=gen),
                                    noise=zero_noise).mean(), logit)[0]
            for _ in range(num_batches)])
        bias, se = abs(float(grads.mean() - exact)), float(grads.std() / math.sqrt(num_batches))
        last = i == len(temperatures) - 1
        tol = 4 * se if last else (prev[0] + 3 * math.hypot(se, prev[1]) if prev else math.inf)
        rows.append(report_row("concrete", f"relaxed gradient bias, temperature={t:g}", bias,
                         f"<= {tol:.3g}" if math.isfinite(tol) else "reported", bias <= tol,
                         f"exact {float(exact):.5f}, SE {se:.2e}"))
        prev = (bias, se)
    q = 3
    pi = torch.tensor(0.7, dtype=DTYPE, requires_grad=True)
    (d_entropy,) = torch.autograd.grad(-q * binary_entropy(pi), pi)
    closed = q * math.log(0.7 / 0.3)
    err = abs(float(d_entropy) - closed)
    rows.append(report_row("concrete", "d/dpi [-Q H(pi)] vs Q log(pi/(1-pi)), pi=0.7, Q=3", err,
                     "<= 1e-12", err <= 1e-12, f"closed form {closed:.6f}"))
    return rows


@contextlib.contextmanager
def _one_thread():
    """Run tiny tensor work on one thread (a shared thread pool makes each step ~7x slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class _ConcreteToy:
    """The toy problem of :func:`check_concrete_maximiser` (float64, fixed means)."""

    num_data: int = 6
    tau: float = 5.0
    theta: float = 1e-2
    prior_length_scale: float = 1.0
    seed: int = 0

    def __post_init__(self):
        g = torch.Generator().manual_seed(self.seed)
        self.architecture = Architecture((1, 3, 1), "tanh")
        self.x = torch.linspace(-1.5, 1.5, self.num_data, dtype=DTYPE)[:, None]
        self.y = torch.sin(2 * self.x) + 0.1 * torch.randn(self.num_data, 1, generator=g,
                                                           dtype=DTYPE)
        self.weights, self.biases = self.architecture.init_params(generator=g, dtype=DTYPE)
        q = self.architecture.layer_shapes[1][1]
        self.z = torch.tensor(list(itertools.product([0.0, 1.0], repeat=q)), dtype=DTYPE)
        m = len(self.z)
        self.masks = [torch.ones(m, self.num_data, 1, dtype=DTYPE),
                      self.z[:, None, :].expand(m, self.num_data, q)]

    def zero_noise(self, lead: int) -> list[torch.Tensor]:
        """Standard normals of the local reparameterisation set to zero (``lead x N x out``)."""
        return [torch.zeros(lead, self.num_data, out, dtype=DTYPE)
                for out, _ in self.architecture.layer_shapes]

    def exact(self, logit: float) -> float:
        r"""The expected negative ELBO at keep_prob :math:`\sigma(\text{logit})` on the hidden
        units, the 8 masks enumerated (:func:`~vi_dropout.infer.elbo.negative_elbo` of the MLP,
        the local reparameterisation's normals set to zero)."""
        kp = 1.0 / (1.0 + math.exp(-logit))
        prob = (kp**self.z * (1.0 - kp) ** (1.0 - self.z)).prod(-1)
        model = BayesianMLP(self.architecture, self.prior_length_scale, self.tau,
                            keep_prob=[1.0, kp], dtype=DTYPE)
        net = model.dropout_free_module()
        noise = [torch.zeros(self.num_data, out, dtype=DTYPE)
                 for out, _ in self.architecture.layer_shapes]
        values = torch.stack([negative_elbo(
            net, model.layers, self.weights, self.biases, self.x, self.y,
            masks=[m[k] for m in self.masks], theta=self.theta,
            prior_length_scale=self.prior_length_scale, tau=self.tau, noise=noise)
            for k in range(len(self.z))])
        return float((prob * values).sum())

    def objective(self, keep_prob: float):
        """A :class:`~vi_dropout.infer.concrete.ConcreteDropoutObjective` whose only free parameter is
        the hidden units' keep_prob logit (means, theta and tau fixed)."""
        from vi_dropout.infer.concrete import ConcreteDropoutObjective

        obj = ConcreteDropoutObjective(
            self.architecture, [None, keep_prob], theta=self.theta, tau=self.tau,
            prior_length_scale=self.prior_length_scale, learn_theta=False, learn_tau=False,
            weights=self.weights, biases=self.biases)
        for p in [*obj.weights, *obj.biases]:
            p.requires_grad_(False)
        return obj


def _exact_minimiser(f: Callable[[float], float], grid_size: int = 49):
    """Global minimiser of ``f`` over the logit of ``(0, 1)``: a grid in the keep_prob, then
    bounded Brent between the neighbours of the best grid point. Returns ``(logit, f', f'',
    grid keep_prob)`` with the derivatives by central differences."""
    from scipy.optimize import minimize_scalar

    grid = np.linspace(0.02, 0.98, grid_size)
    logits = np.log(grid) - np.log1p(-grid)
    i = int(np.argmin([f(v) for v in logits]))
    lo, hi = logits[max(i - 1, 0)], logits[min(i + 1, grid_size - 1)]
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    phi, h1, h2 = float(res.x), 1e-4, 1e-3
    d1 = (f(phi + h1) - f(phi - h1)) / (2 * h1)
    d2 = (f(phi + h2) - 2 * f(phi) + f(phi - h2)) / h2**2
    return phi, d1, d2, float(grid[i]), 0 < i < grid_size - 1


def _adam_on_logit(obj, toy: _ConcreteToy, temperature, steps, num_samples, lr, lr_end,
                   gen) -> torch.Tensor:
    """Adam on the keep_prob logit alone, step size decaying geometrically from ``lr`` to
    ``lr_end``; returns the trace of the logit (``steps``)."""
    logit = obj.keep_prob_logit(1)
    opt = torch.optim.Adam([logit], lr=lr)
    noise = toy.zero_noise(num_samples)
    trace = torch.empty(steps, dtype=DTYPE)
    for k in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * (lr_end / lr) ** (k / max(steps - 1, 1))
        opt.zero_grad()
        masks = obj.sample_masks(toy.num_data, temperature, (num_samples,), generator=gen)
        obj(toy.x, toy.y, masks=masks, noise=noise).mean().backward()
        opt.step()
        trace[k] = logit.detach()
    return trace


def _relaxed_gradient_bias(obj, toy: _ConcreteToy, temperature, draws: int, gen,
                          per_batch: int = 50_000) -> tuple[float, float, float]:
    """The relaxed estimator's bias in the keep_prob logit at the objective's current logit:
    its mean over ``draws`` relaxed draws minus the exact derivative of the SAME objective with
    its 8 Bernoulli masks enumerated (autograd through the weighted sum). Returns ``(bias,
    standard error by batch means (at least 4 batches), exact derivative)``."""
    logit = obj.keep_prob_logit(1)
    kp = torch.sigmoid(logit)
    prob = (kp**toy.z * (1 - kp) ** (1 - toy.z)).prod(-1)
    values = obj(toy.x, toy.y, masks=toy.masks, noise=toy.zero_noise(len(toy.z)))
    (exact,) = torch.autograd.grad((prob * values).sum(), logit)
    num_batches = max(4, draws // per_batch)
    per_batch = max(1, draws // num_batches)
    noise = toy.zero_noise(per_batch)
    grads = torch.stack([
        torch.autograd.grad(obj(toy.x, toy.y, noise=noise, masks=obj.sample_masks(
            toy.num_data, temperature, (per_batch,), generator=gen)).mean(), logit)[0]
        for _ in range(num_batches)])
    return (float(grads.mean() - exact), float(grads.std() / math.sqrt(num_batches)),
            float(exact))


def check_concrete_maximiser(temperature: float = 0.1, steps: int = 400,
                             num_samples: int = 512, lr: float = 0.05, lr_end: float = 0.005,
                             bias_draws: int = 400_000, init_keep_prob: float = 0.9,
                             seed: int = 5) -> list[dict]:
    r"""Concrete dropout (:mod:`vi_dropout.infer.concrete`): the learned keep_prob of a toy problem
    against the maximiser of the exactly enumerated ELBO.

    Network 1-3-1 (tanh), 6 points, float64, the means fixed (Glorot), :math:`\theta = 10^{-2}`,
    :math:`\tau = 5`, :math:`l = 1`, dropout on the 3 hidden units with one shared keep_prob
    :math:`\pi = \sigma(\phi)`, the jitter noise set to zero (:math:`\theta` then enters the KL
    only). The per-example objective is a sum over examples, each with its own mask, so its
    expectation is exactly the sum over the 8 masks of one example's (no need for the
    :math:`8^N` joint masks):

    .. math::
        F(\phi) = \sum_{\mathbf{z} \in \{0,1\}^3} \prod_j \pi^{z_j}(1-\pi)^{1-z_j}\,
        \big[-\widehat{\mathrm{ELBO}}(\mathbf{z})\big]

    with :func:`~vi_dropout.infer.elbo.negative_elbo` (Proposition 1 KL at :math:`\pi`).
    :math:`\phi^*` minimises :math:`F` (a 49-point grid in :math:`\pi`, then bounded Brent to
    :math:`10^{-10}`; the first row checks :math:`|F'(\phi^*)| \le 10^{-6}` by central differences
    and :math:`F''(\phi^*) > 0` at an interior grid point).

    The Concrete optimisation: Adam on :math:`\phi` alone from ``init_keep_prob``, ``steps`` steps of
    ``num_samples`` relaxed draws per example at ``temperature``, step size decaying
    geometrically from ``lr`` to ``lr_end``; the learned :math:`\hat\phi` is the mean of the last
    half of the iterates, its standard error :math:`SE_{it}` by 5 batch means. The relaxed
    estimator moves the optimum: its mean gradient at :math:`\phi^*` (``bias_draws`` draws) minus
    the exact derivative of the Concrete objective itself (its 8 Bernoulli masks enumerated, as in
    :func:`check_concrete`) is a bias :math:`b \pm SE_b`, which shifts the stationary point by
    :math:`-b/F''(\phi^*)`. (Measured against the Concrete objective's own derivative, not against
    :math:`F'(\phi^*) = 0`, so that a disagreement between the two objectives moves the learned
    point without widening the tolerance.) The second row passes when

    .. math::
        |\hat\phi - \phi^*| \le \frac{|b|}{F''(\phi^*)}
        + 4\sqrt{SE_{it}^2 + (SE_b / F''(\phi^*))^2},

    reported in keep_prob units (the tolerance mapped through :math:`\sigma`). Torch runs on one
    thread meanwhile (restored afterwards): these steps are too small for a thread pool.

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """
    t0 = time.perf_counter()
    toy = _ConcreteToy()
    with _one_thread():
        phi, d1, d2, grid_kp, interior = _exact_minimiser(toy.exact)
        kp_star = 1.0 / (1.0 + math.exp(-phi))
        ok = abs(d1) <= 1e-6 and d2 > 0 and interior
        rows = [report_row(
            "concrete", "exact maximiser of the enumerated ELBO in keep_prob (1-3-1 tanh, 6 points)",
            abs(d1), "<= 1e-06, F'' > 0, interior", ok,
            f"keep_prob* {kp_star:.5f} (grid {grid_kp:.2f}), dF/dlogit {d1:.1e}, "
            f"d2F/dlogit2 {d2:.4f}")]
        gen = torch.Generator().manual_seed(seed)
        obj = toy.objective(init_keep_prob)
        trace = _adam_on_logit(obj, toy, temperature, steps, num_samples, lr, lr_end, gen)
        tail = trace[steps // 2:]
        tail = tail[: len(tail) // 5 * 5]
        phi_hat = float(tail.mean())
        se_it = float(tail.reshape(5, -1).mean(1).std() / math.sqrt(5))
        with torch.no_grad():
            obj.keep_prob_logit(1).fill_(phi)
        bias, se_b, d1_concrete = _relaxed_gradient_bias(obj, toy, temperature, bias_draws, gen)
    tol_phi = abs(bias) / d2 + 4 * math.hypot(se_it, se_b / d2)
    kp_hat = 1.0 / (1.0 + math.exp(-phi_hat))
    sig = [1.0 / (1.0 + math.exp(-(phi + s * tol_phi))) for s in (1, -1)]
    tol = max(sig[0] - kp_star, kp_star - sig[1])
    err = abs(kp_hat - kp_star)
    rows.append(report_row(
        "concrete", f"learned keep_prob vs exact maximiser, temperature={temperature:g}", err,
        f"<= {tol:.3g}", err <= tol,
        f"learned {kp_hat:.5f} vs {kp_star:.5f} (logit {phi_hat:+.4f} ± {se_it:.4f} vs "
        f"{phi:+.4f}); at the maximiser: exact Concrete-objective derivative "
        f"{d1_concrete:.1e}, relaxed gradient bias {bias:+.4f} ± {se_b:.4f} -> logit shift "
        f"{-bias / d2:+.4f}; {steps} Adam steps x {num_samples} draws, "
        f"{time.perf_counter() - t0:.1f} s"))
    return rows


def run_verify(quick: bool = False, show_progress: bool = True) -> list[dict]:
    """Run every check on :class:`VerifyProblem`: the rows of
    :func:`~vi_dropout.verify.network.verify_network` (conversion, gradients, values, Pyro per
    draw, trajectory), then Pyro's gradient in expectation, the KL and Concrete dropout;
    ``quick`` uses fewer Monte Carlo samples (same tolerances)."""
    from tqdm.auto import tqdm

    problem = VerifyProblem()
    rows = verify_network(problem.module, problem.x, problem.y, problem=problem, quick=quick,
                          show_progress=show_progress)
    steps = ["pyro in expectation", "kl", "concrete", "concrete maximiser"]
    with tqdm(total=len(steps), desc="verify (paper)", disable=not show_progress) as bar:
        if quick:
            rows += check_pyro_gradient(problem, num_particles=1024, num_batches=8,
                                        num_mask_draws=200)
        else:
            rows += check_pyro_gradient(problem)
        bar.update()
        if quick:
            rows += check_kl(num_samples=4_000, gap_samples=1_000)
        else:
            rows += check_kl()
        bar.update()
        rows += check_concrete()
        bar.update()
        if quick:
            rows += check_concrete_maximiser()
        else:
            rows += check_concrete_maximiser(steps=1000, num_samples=1024, bias_draws=1_600_000)
        bar.update()
    return rows
