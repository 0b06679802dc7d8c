r"""The known pitfalls of MC dropout as approximate inference, each as a reproducible experiment.

1. **Improper KL** (Hron, Matthews & Ghahramani 2018). The exact variational family
   :math:`q_\theta(\mathbf{W})` (a mixture of two Gaussians of standard deviation :math:`\theta`
   per column) has a KL to the Gaussian prior that grows like :math:`-\log\theta` as
   :math:`\theta \to 0`: the full ELBO diverges, while its *gradient* converges to the dropout-loss gradient. Measured
   on the equivalence report's problem (:class:`vi_dropout.verify.paper.VerifyProblem`):
   :func:`improper_kl_records`.
2. **Non-concentration** (Osband 2016). With a fixed keep probability the spread of the MC
   dropout predictions comes from the masks, and the masks do not care how much data there is:
   the epistemic variance at a fixed input does not shrink as :math:`N` grows, while a Bayesian
   posterior's does: the exact GP with the network's prior, and NUTS on the network itself with
   the same prior (:func:`~comparisons.reference.nuts.run_nuts`, for the small :math:`N`).
   Beside them two LEARNED-rate methods answer whether learning the dropout rate fixes this:
   Concrete dropout (``concrete_dropout``: keep_probs and :math:`\tau` learned, :math:`\theta
   \to 0`) and the full ELBO (``full_elbo``: keep_probs, :math:`\theta` and :math:`\tau`
   learned), both with :func:`vi_dropout.infer.concrete.fit_concrete`
   (:func:`learned_rate_records`). :func:`non_concentration_records`.
3. **Sensitivity to keep_prob.** The predictive variance of MC dropout is set by the dropout
   rate, a hyper-parameter usually tuned for accuracy: :func:`keep_prob_sensitivity` trains the
   same network on the same toy data with ``keep_prob`` in {0.5, 0.8, 0.9, 0.95, 0.99} and sets
   the predictive sd across the input range next to the GP's.

:func:`run` runs the three with one :class:`PitfallSettings` and returns a
:class:`PitfallResult`; every part gives tidy records ``(dataset, method, split, metric, value)``
(``split`` carries the experiment's x-axis: theta, N or keep_prob). No file is written here
(except the NUTS chain cache, when asked for): the figures and tables are
:func:`comparisons.report.pitfalls.write_report`'s. The networks are the Keras-convention ones of :func:`vi_dropout.train_batched` (inverted
dropout on the input and the hidden layer, L2 :math:`\lambda = l^2\,\text{keep\_prob}/(2N\tau)`),
trained on the standardised toy data of :func:`comparisons.datasets.toy1d.load_toy1d` with
:math:`\tau` the true noise precision on that scale; the GP is the arc-cosine (order 1) GP whose
hyper-parameters are FIXED by the network's prior
(:func:`comparisons.gp.priors.dropout_prior_hyperparameters`, no fitting).

Example:
    >>> settings = PitfallSettings(steps=50, num_samples=20, sizes=(10, 40), hmc=None)
    >>> result = run(settings)                       # doctest: +SKIP
    >>> write_report(result, "outputs/pitfalls")     # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import arviz as az
import gpytorch
import numpy as np
import torch

from comparisons.datasets.toy1d import load_toy1d
from comparisons.gp.fit import exact_cholesky, gp_predict
from comparisons.gp.models import ExactGPModel, make_kernel
from comparisons.gp.priors import dropout_prior_hyperparameters
from comparisons.reference.nuts import HMCDiagnosticsWarning, hmc_summary, run_nuts
from vi_dropout.infer.concrete import fit_concrete
from vi_dropout.infer.elbo import weight_decay
from vi_dropout.network import local_reparam_forward, mlp_forward
from vi_dropout.predict import mc_predict
from vi_dropout.training import train_batched
from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = [
    "PitfallSettings",
    "PitfallHMCSettings",
    "PitfallResult",
    "improper_kl_records",
    "non_concentration_records",
    "keep_prob_sensitivity",
    "KeepProbSensitivity",
    "LEARNED_RATE_METHODS",
    "LearnedRateFitWarning",
    "learned_rate_records",
    "run",
]

DATASET = "toy1d"

#: method ids of the learned-rate curves of the non-concentration experiment
LEARNED_RATE_METHODS = ("concrete_dropout", "full_elbo")
#: Adam step size of the learned-rate fits (means, keep_prob logits, log theta and log tau alike)
LEARNED_RATE_LR = 1e-2
#: Concrete temperature of the learned-rate fits (Gal, Hron & Kendall 2017)
LEARNED_RATE_TEMPERATURE = 0.1
#: initial keep_prob of the input and of the hidden layer
LEARNED_RATE_INITIAL_KEEP_PROB = 0.9
#: initial tau of the learned-rate fits (standardised scale)
LEARNED_RATE_INITIAL_TAU = 1.0
#: concrete_dropout's FIXED theta: the theta -> 0 limit, numerically (its jitter noise adds at
#: most theta^2 (||h||^2 + 1) to a variance, below 1e-9 here: negligible)
CONCRETE_THETA = 1e-6
#: full_elbo's initial theta
FULL_ELBO_INITIAL_THETA = 1e-2
#: the learned-rate fits draw from ``torch.Generator().manual_seed(1000 seed + 700 + k)`` (k = 0,
#: 1 for the two methods) and their test samples from that seed + 1: streams of their own, apart
#: from the other methods'
LEARNED_RATE_SEED_OFFSET = 700


class LearnedRateFitWarning(UserWarning):
    """A learned-rate fit of the non-concentration experiment failed (a keep_prob ran to a bound,
    a parameter became NaN): its records are left out, the other methods' are kept."""


@dataclass(frozen=True)
class PitfallHMCSettings:
    """NUTS settings of the HMC curve of :func:`non_concentration_records`.

    Attributes:
        max_train: run HMC only for training-set sizes :math:`N \\le` ``max_train`` (every
            NUTS iteration costs up to ``2^max_tree_depth - 1`` gradients of an
            :math:`O(N)` potential).
        chains, warmup, samples: NUTS chains, warmup and kept iterations per chain.
        processes: worker processes for the chains (1: in this process; > 1 needs an
            ``if __name__ == "__main__":`` guard in a calling script).
        max_tree_depth: NUTS maximum tree depth.
        target_accept_prob: NUTS target acceptance.
    """

    max_train: int = 300
    chains: int = 4
    warmup: int = 300
    samples: int = 300
    processes: int = 2
    max_tree_depth: int = 10
    target_accept_prob: float = 0.8

    def __post_init__(self):
        for name in ("max_train", "chains", "samples", "processes", "max_tree_depth"):
            check_positive_int(getattr(self, name), name)
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"warmup must be an integer >= 0, got {self.warmup!r}")
        if not 0 < float(self.target_accept_prob) < 1:
            raise ValueError(f"target_accept_prob must be in (0, 1), got "
                             f"{self.target_accept_prob!r}")


@dataclass(frozen=True)
class PitfallSettings:
    """Settings of :func:`run`: the network, prior and training settings shared by the toy
    pitfall experiments, and the plan of the non-concentration experiment.

    Attributes:
        hidden: hidden units of the one-hidden-layer ReLU network (and of the GP's prior).
        prior_length_scale: :math:`l` of the prior :math:`\\mathcal{N}(0, l^{-2})`.
        steps: Adam steps per network (epochs are ``ceil(steps / minibatches per epoch)``).
        batch_size: minibatch size.
        num_samples: MC dropout samples :math:`T`.
        seed: seed of the data, the networks and the masks.
        sizes: training-set sizes :math:`N` of the non-concentration experiment.
        keep_prob: the non-concentration experiment's fixed keep probability.
        hmc: :class:`PitfallHMCSettings` of its HMC curve, ``None``: no HMC.
        learned_rates: the learned-rate curves (``concrete_dropout``, ``full_elbo``; ``steps``
            full-batch Adam steps each) of :func:`learned_rate_records`.

    The last four are left out of the ``repr`` (the report states them on their own lines).

    Example:
        >>> PitfallSettings(steps=50, sizes=(10, 40), hmc=None).sizes
        (10, 40)
    """

    hidden: int = 50
    prior_length_scale: float = 1.0
    steps: int = 4000
    batch_size: int = 128
    num_samples: int = 1000
    seed: int = 0
    sizes: tuple[int, ...] = field(default=(10, 30, 100, 300, 1000, 3000, 10000), repr=False)
    keep_prob: float = field(default=0.9, repr=False)
    hmc: PitfallHMCSettings | None = field(default=PitfallHMCSettings(), repr=False)
    learned_rates: bool = field(default=True, repr=False)

    def __post_init__(self):
        for name in ("hidden", "steps", "batch_size", "num_samples"):
            check_positive_int(getattr(self, name), name)
        check_positive(self.prior_length_scale, "prior_length_scale")
        sizes = tuple(check_positive_int(n, f"sizes[{i}]") for i, n in enumerate(self.sizes))
        if not sizes:
            raise ValueError("sizes must hold at least one training-set size, got ()")
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "keep_prob", check_keep_prob(self.keep_prob))
        if self.hmc is not None and not isinstance(self.hmc, PitfallHMCSettings):
            raise ValueError(f"hmc must be a PitfallHMCSettings or None, got "
                             f"{type(self.hmc).__name__}")
        if not isinstance(self.learned_rates, bool):
            raise ValueError(f"learned_rates must be True or False, got {self.learned_rates!r}")


def _record(method, split, metric, value) -> dict:
    value = float(value)
    if not math.isfinite(value):
        raise RuntimeError(f"pitfalls: {method} at {split}: metric {metric} is not finite ({value})")
    return {"dataset": DATASET, "method": method, "split": split, "metric": metric, "value": value}


# --------------------------------------------------------------------------- 1. improper KL
def improper_kl_records(thetas: Sequence[float] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-6),
                        seed: int = 1) -> list[dict]:
    r"""The ELBO's divergence and its gradient's convergence as :math:`\theta \to 0`.

    On :class:`vi_dropout.verify.paper.VerifyProblem` (float64, common random numbers) records, per
    ``theta``:

    * ``elbo_minus_dropout_loss``: :math:`-\mathrm{ELBO}/(N\tau) - \mathcal{L}_\text{dropout}`,
      which grows like :math:`-\log\theta` (about :math:`K` nats per :math:`e`-fold of
      :math:`\theta`, summed over columns, scaled by :math:`1/(N\tau)`);
    * ``predicted_offset``: the constant of :func:`vi_dropout.infer.elbo.elbo_dropout_offset`;
    * ``gradient_relative_difference``: :math:`\|\nabla(-\mathrm{ELBO}/(N\tau)) -
      \nabla\mathcal{L}_\text{dropout}\| / \|\nabla\mathcal{L}_\text{dropout}\|` over all
      parameters, which goes to 0 like :math:`\theta`.

    Example:
        >>> recs = improper_kl_records(thetas=(1e-2, 1e-4))  # doctest: +SKIP
    """
    from vi_dropout.verify.paper import VerifyProblem
    from vi_dropout.verify.problem import GradientDifferences

    thetas = [check_positive(t, "thetas[i]") for t in thetas]
    problem = VerifyProblem()
    masks, noise = problem.masks(seed), seed + 1
    ws, bs = problem.params(requires_grad=False)
    with torch.no_grad():
        loss = float(problem.dropout_loss(ws, bs, masks))
    gradients = GradientDifferences(problem, masks, noise)
    records = []
    for theta in thetas:
        with torch.no_grad():
            val = float(problem.scaled_negative_elbo(ws, bs, masks, theta, noise))
        records += [
            _record("exact_elbo", theta, "elbo_minus_dropout_loss", val - loss),
            _record("exact_elbo", theta, "predicted_offset", problem.offset(theta)),
            _record("exact_elbo", theta, "gradient_relative_difference", gradients(theta)[1]),
        ]
    return records


# --------------------------------------------------------------------- shared toy machinery
def _toy(num_train: int, seed: int):
    data = load_toy1d(num_train=num_train, seed=seed)
    tau = (data.y_std / data.noise_std) ** 2  # true noise precision on the standardised scale
    return data, tau


def _train_mc(data, tau, keep_probs: Sequence[float], settings: PitfallSettings, seed: int):
    """Train one network per keep_prob on ``data`` (one batched call); return MC samples
    ``len(keep_probs) x T x M`` at ``data.x_test`` (standardised scale)."""
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train, dtype=torch.float64)
    n = x.shape[0]
    steps_per_epoch = math.ceil(n / settings.batch_size)
    epochs = max(1, math.ceil(settings.steps / steps_per_epoch))
    regs = [weight_decay(settings.prior_length_scale, kp, n, tau) for kp in keep_probs]
    res = train_batched(x, y, keep_prob=list(keep_probs), reg=regs,
                        seeds=[seed * 1000 + i for i in range(len(keep_probs))],
                        hidden=(settings.hidden,), epochs=epochs,
                        batch_size=settings.batch_size)
    if bool(res.diverged.any()):
        bad = [keep_probs[i] for i in res.diverged.nonzero().flatten().tolist()]
        raise RuntimeError(f"pitfalls: training diverged (NaN loss) for keep_prob {bad}")
    xt = torch.tensor(data.x_test, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed + 17)
    out = []
    for e, kp in enumerate(keep_probs):
        s = mc_predict(xt, [w[e] for w in res.weights], [b[e] for b in res.biases], kp,
                       settings.num_samples, inverted=True, generator=gen)
        out.append(s[..., 0])
    return torch.stack(out)


def _gp_latent(data, tau, settings: PitfallSettings, keep_prob: float):
    """Posterior mean and LATENT variance (no noise) of the dropout-prior arc-cosine GP."""
    h = dropout_prior_hyperparameters(settings.prior_length_scale, tau, keep_prob,
                                      input_dim=1, num_hidden=settings.hidden)
    kernel = make_kernel("arccos1", 1, h["weight_variance"], h["bias_variance"],
                         outputscale=h["outputscale"])
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train[:, 0], dtype=torch.float64)
    likelihood = gpytorch.likelihoods.GaussianLikelihood().double()
    likelihood.noise = h["noise"]
    model = ExactGPModel(x, y, likelihood, kernel).double()
    # Exact Cholesky at every N (GPyTorch switches to CG / Lanczos above 800 points).
    with exact_cholesky():
        mean, var = gp_predict(model, likelihood, torch.tensor(data.x_test, dtype=torch.float64))
    return mean, var - h["noise"]


def _hmc_latent(data, tau, settings: PitfallSettings, hmc: PitfallHMCSettings, cache_dir):
    r"""NUTS on the network with the GP's prior; returns ``(f_draws, result, table)``.

    ``f_draws`` is ``chains x draws x M``: the network output :math:`f(x_*)` (no noise) of every
    draw at ``data.x_test`` on the standardised scale; ``table`` is :func:`hmc_summary` of those
    ``f`` (with the draws' divergences and energies), its warning re-issued by the caller.
    """
    res = run_nuts(data.x_train, data.y_train, hidden=(settings.hidden,),
                   prior_length_scale=settings.prior_length_scale, tau=tau,
                   num_chains=hmc.chains, num_warmup=hmc.warmup, num_samples=hmc.samples,
                   cache_dir=cache_dir, num_processes=hmc.processes, seed=settings.seed,
                   max_tree_depth=hmc.max_tree_depth,
                   target_accept_prob=hmc.target_accept_prob)
    xt = torch.tensor(data.x_test, dtype=torch.float64)
    ws = [torch.as_tensor(res.samples[f"layers.{i}.weight"]) for i in range(2)]
    bs = [torch.as_tensor(res.samples[f"layers.{i}.bias"]) for i in range(2)]
    with torch.no_grad():
        f = mlp_forward(xt, ws, bs, "relu")[..., 0].numpy()  # chain x draw x M
    stats = {k: res.sample_stats[k] for k in ("diverging", "energy") if k in res.sample_stats}
    idata = az.from_dict(posterior={"f": f}, sample_stats=stats,
                         attrs={"method": "hmc", "sampler": "nuts",
                                "num_train": int(data.x_train.shape[0])})
    return f, res, hmc_summary(idata, var_names=["f"], warn=False)


# --------------------------------------------------------------------- 2. non-concentration
def _hmc_records(data, tau, settings: PitfallSettings, hmc: PitfallHMCSettings, cache_dir,
                 regions) -> list[dict]:
    """The ``hmc`` records of one training set (see :func:`non_concentration_records`)."""
    n = int(data.x_train.shape[0])
    inside, outside = regions
    t0 = time.perf_counter()
    f, res, table = _hmc_latent(data, tau, settings, hmc, cache_dir)
    hvar = f.reshape(-1, f.shape[-1]).var(0, ddof=1)
    diag = table.attrs["diagnostics"]
    if diag["problems"]:
        warnings.warn(
            f"non-concentration, hmc at N = {n}: not a usable reference: "
            + "; ".join(diag["problems"]), HMCDiagnosticsWarning, stacklevel=3)
    return [
        _record("hmc", n, "epistemic_variance_train", hvar[inside].mean()),
        _record("hmc", n, "epistemic_variance_extrapolation", hvar[outside].mean()),
        _record("hmc", n, "wall_time_s", time.perf_counter() - t0),
        _record("hmc", n, "hmc_max_rhat_f", diag["max_r_hat"]),
        _record("hmc", n, "hmc_min_ess_bulk_f", diag["min_ess_bulk"]),
        _record("hmc", n, "hmc_min_ess_tail_f", diag["min_ess_tail"]),
        _record("hmc", n, "hmc_num_divergent", diag["num_divergent"]),
        _record("hmc", n, "hmc_grad_evals_per_draw", res.grad_evals_per_draw),
        _record("hmc", n, "hmc_chain_wall_time_sum_s", float(np.sum(res.chain_wall_times_s))),
    ]


def _failed_parameter(message: str) -> str:
    """The learned parameter a :func:`~vi_dropout.infer.concrete.fit_concrete` error names, in the
    records' words (``keep_prob_input``, ``keep_prob_hidden``, ``theta``, ``tau``)."""
    match = re.match(r"keep_probs\[(\d+)\]|(tau|theta)\b", message)
    if match is None:
        return "the negative ELBO" if "non-finite" in message else "unknown parameter"
    if match.group(1) is not None:
        layer = int(match.group(1))
        return {0: "keep_prob_input", 1: "keep_prob_hidden"}.get(layer, f"keep_prob_{layer}")
    return match.group(2)


def _jitter_samples(x: torch.Tensor, weights, biases, keep_probs: Sequence[float], theta: float,
                    num_samples: int, generator: torch.Generator,
                    max_rows: int = 16384) -> torch.Tensor:
    r"""``T x M`` draws of :math:`f(x_*)` under the full variational family: EXACT Bernoulli masks
    at ``keep_probs`` and the jitter :math:`\theta` by local reparameterisation (the exact
    marginal at each test point; the paper's convention, kept units not rescaled).

    .. math::
        \mathbf{W}_{i,t} = \mathbf{M}_i \operatorname{diag}(\mathbf{z}_{i,t})
        + \theta\mathbf{E}_{i,t}, \quad z \sim \operatorname{Bernoulli}(\pi_i),\quad
        E \sim \mathcal{N}(0, 1)

    Args:
        x: ``M x Q`` test inputs; weights, biases: the means (``out x in``, ``out``) per layer.
        keep_probs: :math:`\pi_i` per layer; theta: :math:`\theta`.
        num_samples: :math:`T`; generator: the source of the masks and the noise.
        max_rows: samples x points per vectorised pass.
    """
    m = x.shape[0]
    chunk = max(1, max_rows // m)
    out = []
    for start in range(0, num_samples, chunk):
        t = min(chunk, num_samples - start)
        masks = [(torch.rand(t, m, w.shape[1], dtype=x.dtype, generator=generator) < kp)
                 .to(x.dtype) for w, kp in zip(weights, keep_probs)]
        noise = [torch.randn(t, m, w.shape[0], dtype=x.dtype, generator=generator)
                 for w in weights]
        out.append(local_reparam_forward(x, list(weights), list(biases), masks, theta, "relu",
                                         noise)[..., 0])
    return torch.cat(out)


def learned_rate_records(data, method: str, settings: PitfallSettings | None = None,
                         regions=None) -> list[dict]:
    r"""Fit one learned-rate network on ``data`` and return its non-concentration records.

    :func:`vi_dropout.infer.concrete.fit_concrete` on the full batch (``settings.steps`` Adam steps of
    size :data:`LEARNED_RATE_LR` on every parameter, relaxed masks at temperature
    :data:`LEARNED_RATE_TEMPERATURE`, one draw per example and step) of the per-example negative
    ELBO with the Proposition-1 KL and the prior :math:`\mathcal{N}(0, l^{-2})` of the GP and
    HMC (``l = settings.prior_length_scale``), in the paper's convention (the means are the weights,
    kept units are not rescaled). Both layers' keep_probs start at 0.9 and :math:`\tau` at 1:

    * ``concrete_dropout``: keep_probs and :math:`\tau` learned, :math:`\theta` FIXED at
      :data:`CONCRETE_THETA` (``1e-6``, the :math:`\theta \to 0` limit of Concrete dropout,
      ``learn_theta=False``; its jitter noise is negligible and left out of the predictions);
    * ``full_elbo``: keep_probs, :math:`\theta` (from :data:`FULL_ELBO_INITIAL_THETA`) and
      :math:`\tau` learned.

    The epistemic variance is that of :math:`f(x_*)` over ``settings.num_samples`` draws with
    EXACT Bernoulli masks at the learned keep_probs
    (:func:`vi_dropout.predict.mc_predict`, ``inverted=False``); for ``full_elbo`` the jitter
    :math:`\theta` is included by local reparameterisation, and the masks-only variance is
    recorded beside it (``epistemic_variance_masks_only_*``) to show its share.

    .. math::
        \widehat{\operatorname{Var}}(x_*) = \frac{1}{T-1}\sum_t (f_t(x_*) - \bar f(x_*))^2,
        \qquad f_t = f(x_*;\ \mathbf{M}\operatorname{diag}(\mathbf{z}_t) + \theta\mathbf{E}_t)

    Args:
        data: a :class:`~comparisons.datasets.toy1d.Toy1DData` (standardised arrays).
        method: ``"concrete_dropout"`` or ``"full_elbo"``.
        settings: :class:`PitfallSettings` (``hidden``, ``prior_length_scale``, ``steps``,
            ``num_samples``, ``seed``).
        regions: ``(train, extrapolation)`` boolean masks over the test points (default:
            ``data.region_mask``).

    Returns:
        records ``(toy1d, method, split = N, metric, value)``: ``epistemic_variance_train``,
        ``epistemic_variance_extrapolation``, ``learned_keep_prob_input``,
        ``learned_keep_prob_hidden``, ``learned_tau`` (standardised scale), ``final_loss`` (the
        negative ELBO per data point, mean over the last 10% of the steps), ``wall_time_s``; for
        ``full_elbo`` also ``learned_theta`` and ``epistemic_variance_masks_only_{train,
        extrapolation}``. A failed fit (``fit_concrete`` raises ``ValueError`` when a keep_prob
        runs to within 1e-6 of 0 or 1 or a parameter becomes NaN or leaves its range) issues a
        :class:`LearnedRateFitWarning` naming :math:`N`, the method and the parameter, and
        returns ``[]``.

    Example:
        >>> data, _ = _toy(20, 0)                                              # doctest: +SKIP
        >>> recs = learned_rate_records(data, "full_elbo", PitfallSettings(steps=50))  # doctest: +SKIP
    """
    settings = settings or PitfallSettings()
    if method not in LEARNED_RATE_METHODS:
        raise ValueError(f"method must be one of {', '.join(LEARNED_RATE_METHODS)}, got "
                         f"{method!r}")
    inside, outside = regions or (data.region_mask("train"), data.region_mask("extrapolation"))
    x = torch.tensor(data.x_train, dtype=torch.float64)
    y = torch.tensor(data.y_train, dtype=torch.float64)
    n = int(x.shape[0])
    full = method == "full_elbo"
    seed = settings.seed * 1000 + LEARNED_RATE_SEED_OFFSET + LEARNED_RATE_METHODS.index(method)
    t0 = time.perf_counter()
    try:
        fit = fit_concrete(
            x, y, (settings.hidden,), keep_probs=LEARNED_RATE_INITIAL_KEEP_PROB,
            theta=FULL_ELBO_INITIAL_THETA if full else CONCRETE_THETA,
            tau=LEARNED_RATE_INITIAL_TAU, prior_length_scale=settings.prior_length_scale,
            learn_theta=full, learn_tau=True, steps=settings.steps, lr=LEARNED_RATE_LR,
            temperature=LEARNED_RATE_TEMPERATURE, seed=seed)
        kps = [float(kp) for kp in fit.keep_probs]
        xt = torch.tensor(data.x_test, dtype=torch.float64)
        gen = torch.Generator().manual_seed(seed + 1)
        var_masks = mc_predict(xt, fit.weights, fit.biases, kps, settings.num_samples,
                               inverted=False, generator=gen)[..., 0].var(0).numpy()
        var = var_masks
        if full:
            var = _jitter_samples(xt, fit.weights, fit.biases, kps, float(fit.theta),
                                  settings.num_samples, gen).var(0).numpy()
        if not (np.isfinite(var).all() and np.isfinite(var_masks).all()):
            raise ValueError("the predictive variance is not finite")
    except ValueError as err:
        warnings.warn(f"non-concentration, {method} at N = {n}: the fit failed "
                      f"({_failed_parameter(str(err))}): {err}; its records are left out, the "
                      "other methods' are kept", LearnedRateFitWarning, stacklevel=3)
        return []
    tail = fit.losses[-max(1, len(fit.losses) // 10):]
    records = [
        _record(method, n, "epistemic_variance_train", var[inside].mean()),
        _record(method, n, "epistemic_variance_extrapolation", var[outside].mean()),
        _record(method, n, "learned_keep_prob_input", kps[0]),
        _record(method, n, "learned_keep_prob_hidden", kps[1]),
        _record(method, n, "learned_tau", float(fit.tau)),
        _record(method, n, "final_loss", float(tail.mean()) / n),
    ]
    if full:
        records += [
            _record(method, n, "learned_theta", float(fit.theta)),
            _record(method, n, "epistemic_variance_masks_only_train", var_masks[inside].mean()),
            _record(method, n, "epistemic_variance_masks_only_extrapolation",
                    var_masks[outside].mean()),
        ]
    return records + [_record(method, n, "wall_time_s", time.perf_counter() - t0)]


def non_concentration_records(
    num_train: Sequence[int] = (10, 30, 100, 300, 1000, 3000, 10000),
    keep_prob: float = 0.9,
    settings: PitfallSettings | None = None,
    gp_max_train: int = 10000,
    progress: bool = False,
    hmc: PitfallHMCSettings | None = PitfallHMCSettings(),
    cache_dir: str | os.PathLike | None = None,
    learned_rates: bool = True,
) -> list[dict]:
    r"""Epistemic predictive variance vs training-set size: MC dropout with a fixed rate, the
    exact GP, HMC and the two learned-rate methods.

    For each :math:`N` a fresh toy data set (same seed family) is drawn, one network with fixed
    ``keep_prob`` is trained (the prior-derived weight decay :math:`\propto 1/N`, as the derivation
    prescribes), and the epistemic variance is averaged over the test points inside the training
    intervals (``train``) and outside all of them (``extrapolation``):

    .. math::
        \widehat{\operatorname{Var}}_\text{MC}(x_*) = \frac{1}{T-1}\sum_t
        (\hat y_t(x_*) - \bar y(x_*))^2, \quad
        \operatorname{Var}_\text{GP}[f(x_*) \mid \mathcal{D}], \quad
        \widehat{\operatorname{Var}}_\text{HMC}(x_*) = \frac{1}{S-1}\sum_s
        (f_s(x_*) - \bar f(x_*))^2,

    on the standardised scale (no :math:`\tau^{-1}`). All share one model: the 1-50-1 ReLU
    network with :math:`\mathcal{N}(0, l^{-2})` on every weight and bias (``l =
    settings.prior_length_scale``) and Gaussian noise of precision :math:`\tau` (the toy's true
    one; the learned-rate methods learn theirs). The GP is that prior's arc-cosine kernel
    (:func:`~comparisons.gp.priors.dropout_prior_hyperparameters`; it leaves out the output bias,
    a constant :math:`l^{-2}` in the prior covariance, against an outputscale of
    :math:`K l^{-2} = 50\,l^{-2}`); HMC is NUTS (:func:`~comparisons.reference.nuts.run_nuts`) on
    the finite network itself, the :math:`S` = chains :math:`\times` draws being the posterior
    draws of its weights and :math:`f_s` the network output (no noise). MC dropout's masks are
    the approximation, not the model. The GP's variance shrinks roughly like :math:`1/N`;
    fixed-rate dropout's levels off. ``concrete_dropout`` and ``full_elbo``
    (:func:`learned_rate_records`) learn the keep_probs (and :math:`\tau`, and for the second
    :math:`\theta`) on the same data with the same prior.

    Args:
        num_train: training-set sizes :math:`N`.
        keep_prob: MC dropout's fixed keep probability.
        settings: :class:`PitfallSettings` (network, prior, training, seed).
        gp_max_train: the GP is skipped above this many points (:math:`O(N^3)` time,
            :math:`O(N^2)` memory: about 50 s and 5 GB at :math:`N` = 10,000 on one CPU thread).
        progress: a progress bar over the sizes.
        hmc: :class:`PitfallHMCSettings` (HMC runs for :math:`N \le` ``hmc.max_train``);
            ``None``: no HMC.
        cache_dir: NUTS chain cache (e.g. ``OUT/nuts-cache``; ``None``: no cache).
        learned_rates: also the ``concrete_dropout`` and ``full_elbo`` curves.

    Returns:
        records ``(dataset, method, split = N, metric, value)``: ``epistemic_variance_train``,
        ``epistemic_variance_extrapolation`` and ``wall_time_s`` per method (``mc_dropout``,
        ``gp_arccos1_prior``, ``hmc``, ``concrete_dropout``, ``full_elbo``) and :math:`N`; for
        ``hmc`` also ``hmc_max_rhat_f``, ``hmc_min_ess_bulk_f``, ``hmc_min_ess_tail_f``
        (:func:`hmc_summary` of :math:`f` at the test inputs), ``hmc_num_divergent``,
        ``hmc_grad_evals_per_draw`` and ``hmc_chain_wall_time_sum_s`` (the chains' own warmup +
        sampling time, also when they come from the cache; ``wall_time_s`` is this call's); for
        the learned-rate methods the learned parameters of :func:`learned_rate_records`. When
        HMC's draws fail :func:`hmc_summary`'s checks an
        :class:`~comparisons.reference.nuts.HMCDiagnosticsWarning` naming :math:`N` is issued; a
        failed learned-rate fit issues a :class:`LearnedRateFitWarning` and only its records
        are missing.

    Example:
        >>> recs = non_concentration_records((10, 100), hmc=PitfallHMCSettings(
        ...     max_train=10, chains=2, warmup=20, samples=20, processes=1))  # doctest: +SKIP
    """
    from tqdm.auto import tqdm

    settings = settings or PitfallSettings()
    keep_prob = check_keep_prob(keep_prob)
    sizes = [check_positive_int(n, "num_train[i]") for n in num_train]
    if hmc is not None and not isinstance(hmc, PitfallHMCSettings):
        raise ValueError(f"hmc must be a PitfallHMCSettings or None, got {type(hmc).__name__}")
    if not isinstance(learned_rates, bool):
        raise ValueError(f"learned_rates must be True or False, got {learned_rates!r}")
    records = []
    for n in tqdm(sizes, desc="non-concentration", disable=not progress, leave=False):
        data, tau = _toy(n, settings.seed)
        regions = inside, outside = data.region_mask("train"), data.region_mask("extrapolation")
        t0 = time.perf_counter()
        s = _train_mc(data, tau, [keep_prob], settings, settings.seed)[0]
        var = s.var(0).numpy()
        records += [
            _record("mc_dropout", n, "epistemic_variance_train", var[inside].mean()),
            _record("mc_dropout", n, "epistemic_variance_extrapolation", var[outside].mean()),
            _record("mc_dropout", n, "wall_time_s", time.perf_counter() - t0),
        ]
        if n <= gp_max_train:
            t0 = time.perf_counter()
            _, gvar = _gp_latent(data, tau, settings, keep_prob)
            gvar = gvar.clamp_min(0).numpy()
            gp = "gp_arccos1_prior"  # the arc-cosine GP of the network's prior, nothing fitted
            records += [
                _record(gp, n, "epistemic_variance_train", gvar[inside].mean()),
                _record(gp, n, "epistemic_variance_extrapolation", gvar[outside].mean()),
                _record(gp, n, "wall_time_s", time.perf_counter() - t0),
            ]
        if hmc is not None and n <= hmc.max_train:
            records += _hmc_records(data, tau, settings, hmc, cache_dir, regions)
        if learned_rates:  # own generators: the streams above are untouched
            for method in LEARNED_RATE_METHODS:
                records += learned_rate_records(data, method, settings, regions)
    return records


# ------------------------------------------------------------------ 3. keep_prob sensitivity
@dataclass(frozen=True)
class KeepProbSensitivity:
    """Predictive sd curves of :func:`keep_prob_sensitivity` (original target scale).

    Attributes:
        x: test inputs, original scale, ``M``.
        keep_probs: the keep probabilities, ``K``.
        mc_sd: MC dropout predictive sd (``sqrt(1/tau + sample variance)``), ``K x M``.
        gp_sd: the dropout-prior GP's predictive sd (noise included), ``M``.
        data: the toy data (for drawing the training region).
        records: tidy records (mean sd in the training / extrapolation regions).
    """

    x: np.ndarray
    keep_probs: tuple[float, ...]
    mc_sd: np.ndarray
    gp_sd: np.ndarray
    data: object
    records: list[dict]


def keep_prob_sensitivity(
    keep_probs: Sequence[float] = (0.5, 0.8, 0.9, 0.95, 0.99),
    num_train: int = 200,
    settings: PitfallSettings | None = None,
) -> KeepProbSensitivity:
    r"""MC dropout's predictive sd on the toy data for several ``keep_prob``, next to the GP's.

    .. math::
        \mathrm{sd}(x_*) = s_y \sqrt{\tau^{-1} + \widehat{\operatorname{Var}}_t[\hat y_t(x_*)]}

    on the original scale (:math:`s_y` the target scale). The GP uses the network prior with
    ``keep_prob`` ignored (the masks belong to the approximation, not to the model), so it is one
    curve.
    """
    settings = settings or PitfallSettings()
    kps = tuple(check_keep_prob(k, f"keep_probs[{i}]") for i, k in enumerate(keep_probs))
    if not kps:
        raise ValueError("keep_probs must hold at least one value, got an empty sequence")
    data, tau = _toy(check_positive_int(num_train, "num_train"), settings.seed)
    s = _train_mc(data, tau, kps, settings, settings.seed)
    mc_sd = (s.var(1) + 1.0 / tau).sqrt().numpy() * data.y_std
    _, gvar = _gp_latent(data, tau, settings, 1.0)
    gp_sd = (gvar.clamp_min(0) + 1.0 / tau).sqrt().numpy() * data.y_std
    inside, outside = data.region_mask("train"), data.region_mask("extrapolation")
    records = []
    for kp, sd in zip(kps, mc_sd):
        records += [_record("mc_dropout", kp, "mean_sd_train", sd[inside].mean()),
                    _record("mc_dropout", kp, "mean_sd_extrapolation", sd[outside].mean())]
    records += [_record("gp_arccos1_prior", "any", "mean_sd_train", gp_sd[inside].mean()),
                _record("gp_arccos1_prior", "any", "mean_sd_extrapolation", gp_sd[outside].mean())]
    return KeepProbSensitivity(np.asarray(data.x_test_raw), kps, mc_sd, gp_sd, data, records)


# ----------------------------------------------------------------------------------- run
@dataclass(frozen=True)
class PitfallResult:
    """Everything :func:`run` produced.

    Attributes:
        settings: the :class:`PitfallSettings` used.
        improper_kl: records of :func:`improper_kl_records`.
        non_concentration: records of :func:`non_concentration_records`.
        sensitivity: the :class:`KeepProbSensitivity` of :func:`keep_prob_sensitivity`.
        hmc_warnings: the messages of the :class:`~comparisons.reference.nuts.HMCDiagnosticsWarning`
            issued by the non-concentration experiment (also re-issued as warnings).
        wall_times_s: ``{"improper_kl", "non_concentration", "keep_prob_sensitivity"}`` seconds.
        fit_warnings: the messages of the :class:`LearnedRateFitWarning` (failed learned-rate
            fits) of the non-concentration experiment (also re-issued as warnings).
    """

    settings: PitfallSettings
    improper_kl: list[dict]
    non_concentration: list[dict]
    sensitivity: KeepProbSensitivity
    hmc_warnings: tuple[str, ...]
    wall_times_s: dict[str, float]
    fit_warnings: tuple[str, ...] = ()

    @property
    def records(self) -> list[dict]:
        """All tidy records: improper KL, non-concentration, keep_prob sensitivity."""
        return self.improper_kl + self.non_concentration + self.sensitivity.records


def run(settings: PitfallSettings | None = None, *, progress: bool = False,
        cache_dir: str | os.PathLike | None = None) -> PitfallResult:
    """Run the three pitfall experiments with one set of settings.

    Args:
        settings: :class:`PitfallSettings` (default ``PitfallSettings()``).
        progress: a progress bar over the non-concentration sizes.
        cache_dir: NUTS chain cache of the non-concentration experiment (e.g.
            ``OUT/nuts-cache``; ``None``: no cache).

    Returns:
        :class:`PitfallResult`. HMC diagnostics warnings are collected in
        ``hmc_warnings``, failed learned-rate fits in ``fit_warnings``; both are re-issued.

    Example:
        >>> res = run(PitfallSettings(steps=50, num_samples=20, sizes=(10,), hmc=None))  # doctest: +SKIP
        >>> sorted(res.wall_times_s)  # doctest: +SKIP
        ['improper_kl', 'keep_prob_sensitivity', 'non_concentration']
    """
    settings = PitfallSettings() if settings is None else settings
    if not isinstance(settings, PitfallSettings):
        raise ValueError(f"settings must be a PitfallSettings, got {type(settings).__name__}")
    times = {}
    t0 = time.perf_counter()
    kl = improper_kl_records()
    times["improper_kl"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", HMCDiagnosticsWarning)
        warnings.simplefilter("always", LearnedRateFitWarning)
        nc = non_concentration_records(settings.sizes, keep_prob=settings.keep_prob,
                                       settings=settings, progress=progress, hmc=settings.hmc,
                                       cache_dir=cache_dir, learned_rates=settings.learned_rates)
    collected = {HMCDiagnosticsWarning: [], LearnedRateFitWarning: []}
    for w in caught:
        for category, messages in collected.items():
            if issubclass(w.category, category):
                messages.append(str(w.message))
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    times["non_concentration"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kps = keep_prob_sensitivity(settings=settings)
    times["keep_prob_sensitivity"] = time.perf_counter() - t0
    return PitfallResult(settings, kl, nc, kps, tuple(collected[HMCDiagnosticsWarning]), times,
                         tuple(collected[LearnedRateFitWarning]))
