r"""MC dropout vs exact GPs on the same split: accuracy, calibration, and how far apart the two
predictive distributions are, point by point.

On one split (the 1-D toy of :mod:`comparisons.datasets.toy1d` or a UCI set) :func:`run_gp_vs_dropout`

1. runs the MC dropout UCI protocol (:mod:`comparisons.protocols.uci`: grid search over
   (dropout rate, tau) by validation log-likelihood, retraining on the full training split, ``T``
   MC samples; same seeds, so the dropout numbers equal ``run_uci_cell``'s);
2. fits exact GPs on the standardised training data (float64, Cholesky):

   ====================  =====================================================================
   method                kernel and hyper-parameters
   ====================  =====================================================================
   ``gp_arccos1_prior``  arc-cosine order 1 with the hyper-parameters of the trained dropout
                         network's prior (:func:`dropout_prior_gp_hyperparameters`), **no**
                         fitting: the GP that MC dropout approximates (Gal & Ghahramani 2016)
   ``gp_rf_prior``       the same prior with ``num_hidden`` random ReLU features (the
                         finite-width network prior; exact second moment), no fitting; optional
   ``gp_arccos1``        ``ScaleKernel(arc-cosine order 1)``, constant mean, variances and
                         noise fitted by marginal likelihood
   ``gp_se``             ``ScaleKernel(RBF)`` with one length-scale per input (ARD), constant
                         mean, fitted by marginal likelihood
   ====================  =====================================================================

3. reports per method RMSE, test log-likelihood (original target scale; MC dropout's is the
   paper's MC mixture estimate, ``test_ll_gaussian`` its moment-matched Gaussian one), the
   coverage of the central 95% Gaussian interval and the mean predictive sd; and per GP the
   distances between MC dropout's moment-matched Gaussian predictive :math:`\mathcal{N}(\mu_d,
   \sigma_d^2)` and the GP's :math:`\mathcal{N}(\mu_g, \sigma_g^2)` (both include observation
   noise), averaged over test points (:func:`comparisons.metrics.distances.summarize_predictive_distances`):

   .. math::
       \text{smd} = \overline{|\mu_d - \mu_g| / \sigma_g}, \quad
       \text{var\_ratio} = \exp\overline{\log(\sigma_d^2/\sigma_g^2)}, \quad
       \text{kl} = \overline{\mathrm{KL}(\mathcal{N}_d\|\mathcal{N}_g)}, \quad
       \text{w2} = \overline{W_2}/s_y, \quad
       \text{tv} = \overline{\mathrm{TV}}

   (:math:`s_y` the training-target sd, so ``w2`` is in units of it). On the toy the distances are
   also given per region of the test grid (``kl[extrapolation]`` etc.: ``train``, ``gap``,
   ``extrapolation``).

Records are tidy dicts ``{dataset, method, split, metric, value, epochs_multiplier, num_samples,
gp_iterations}`` (:mod:`comparisons.runner.store`). :func:`run_gp_uci_cell` is the GP-only cell
function for the UCI summary (methods ``gp_arccos1``, ``gp_se``, metrics named like the dropout
ones).

Example:
    >>> result = run_gp_vs_dropout("toy1d", epochs_multiplier=0.01, num_samples=100,
    ...                            gp_iterations=5, max_grid=1)  # doctest: +SKIP
    >>> print(records_markdown(result.records))  # doctest: +SKIP
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import gpytorch
import numpy as np
import torch
from gpytorch.constraints import GreaterThan
from linear_operator.utils.errors import NanError, NotPSDError

from comparisons.datasets.toy1d import TOY1D_NAME, load_toy1d
from comparisons.datasets.uci import (
    StandardizedSplit,
    UCISplit,
    load_uci,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)
from comparisons.gp.mlls import CholeskyMarginalLogLikelihood
from comparisons.gp.models import (
    ExactGPModel,
    GPNotPSDError,
    dropout_prior_hyperparameters,
    fit_exact_gp,
    gp_predict,
    make_kernel,
)
from comparisons.metrics.distances import (
    DISTANCE_METRICS,
    interval_coverage,
    moment_match_samples,
    summarize_predictive_distances,
)
from comparisons.metrics.gaussian import gaussian_log_likelihood
from comparisons.protocols.uci import (
    UCIProtocol,
    hyperparameter_grid,
    parse_splits,
    score_networks,
    train_grid,
)
from comparisons.report.plots import finish_toy_axes, plot_predictive_band, toy_ylim
from comparisons.report.styles import method_label
from comparisons.runner.executors import Cell
from vi_dropout.predict import mc_predict, regression_summary, standard_dropout_predict
from vi_dropout.validation import (
    check_keep_prob,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = [
    "GP_METHODS",
    "FITTED_GP_METHODS",
    "PRIOR_GP_METHODS",
    "GPFit",
    "DropoutFit",
    "GPvsDropoutResult",
    "dropout_prior_gp_hyperparameters",
    "fit_mc_dropout",
    "OPTIMIZERS",
    "fit_gp",
    "random_feature_posterior",
    "run_gp_vs_dropout",
    "GPUCIConfig",
    "gp_uci_cells",
    "run_gp_uci_cell",
    "records_markdown",
    "plot_toy1d_comparison",
]

PRIOR_GP_METHODS = ("gp_arccos1_prior", "gp_rf_prior")
FITTED_GP_METHODS = ("gp_arccos1", "gp_se")
GP_METHODS = PRIOR_GP_METHODS + FITTED_GP_METHODS
DROPOUT_METHOD = "mc_dropout"
_MAX_CHOLESKY = 100_000  # always Cholesky (GPyTorch switches to CG above 800 points by default)
_MIN_NOISE = 1e-6


# ----------------------------------------------------------------------------- MC dropout


@dataclass(frozen=True, eq=False)
class DropoutFit:
    """MC dropout trained by the UCI protocol, and its test predictions (original scale).

    Attributes:
        dropout_rate, tau: the selected grid point (tau on the original scale).
        validation_ll: its validation log-likelihood.
        weights, biases: the final network (inverted-dropout weights, float32/64 per protocol).
        mean, var: moment-matched predictive mean and variance (``1/tau`` + MC variance) at the
            test inputs, original scale, float64, ``(n_test,)``.
        summary: the :class:`vi_dropout.predict.RegressionSummary` of the test samples.
        wall_time_s: grid search + retraining + prediction.
    """

    dropout_rate: float
    tau: float
    validation_ll: float
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    mean: np.ndarray
    var: np.ndarray
    summary: object
    diverged_grid_points: int
    wall_time_s: float

    @property
    def keep_prob(self) -> float:
        """``1 - dropout_rate``."""
        return 1.0 - self.dropout_rate


def fit_mc_dropout(raw: UCISplit, protocol: UCIProtocol, progress: bool = False) -> DropoutFit:
    r"""Run the MC dropout protocol of :func:`comparisons.protocols.uci.run_uci_cell` on ``raw``
    and keep the final network and its test predictions.

    Same grid, seeds (``seed0 = seed * 1_000_003 + split * 1_000``), training and MC sample
    streams as ``run_uci_cell``, so ``rmse``, ``rmse_standard`` and ``test_ll`` are identical
    (the tests check this). The test predictive is moment-matched:
    :math:`\mu = \overline{\tilde y_t}`, :math:`\sigma^2 = 1/\tau + \widehat{\operatorname{Var}}
    (\tilde y_t)` (:func:`comparisons.metrics.distances.moment_match_samples`).

    Args:
        raw: a split on the original scale (``load_uci(...)`` or ``load_toy1d(...).source``);
            ``raw.split`` enters the seeds.
        protocol: the protocol settings.
        progress: print the stages.

    Returns:
        :class:`DropoutFit`.

    Example:
        >>> fit = fit_mc_dropout(load_uci("yacht", 0),
        ...                      UCIProtocol(epochs_multiplier=0.05, num_samples=20, max_grid=2))
        >>> fit.mean.shape, fit.var.shape, fit.dropout_rate in (0.005, 0.01)
        ((31,), (31,), True)
    """
    t0 = time.perf_counter()
    grid = hyperparameter_grid(raw, protocol)
    epochs = max(1, int(round(raw.n_epochs * protocol.epochs_multiplier)))
    torch.manual_seed(protocol.seed)
    seed0 = protocol.seed * 1_000_003 + raw.split * 1_000
    if progress:
        print(f"[mc_dropout] grid search: {len(grid)} networks x {epochs} epochs", flush=True)
    val = validation_split(raw, fraction=protocol.validation_fraction)
    std_val = standardize(val)
    res, kps = train_grid(std_val, grid, epochs, protocol, seed0, raw.n_hidden)
    scores = score_networks(res, kps, grid, std_val, std_val.x_test, val.y_test, protocol, seed0 + 1)
    valid = [(float(s.mean_log_likelihood), e) for e, s in enumerate(scores) if s is not None]
    if not valid:
        raise RuntimeError(f"{raw.name} split {raw.split}: every grid point diverged (NaN loss)")
    best_ll, best = max(valid)
    best_pair = grid[best]
    if progress:
        print(f"[mc_dropout] selected dropout rate {best_pair[0]}, tau {best_pair[1]}; "
              f"retraining on the full training split", flush=True)
    std = standardize(raw)
    res_full, kps_full = train_grid(std, [best_pair], epochs, protocol, seed0 + 500, raw.n_hidden)
    if int(res_full.diverged_epoch[0]) >= 0:
        raise RuntimeError(f"{raw.name} split {raw.split}: the final training diverged "
                           f"(dropout rate {best_pair[0]}, tau {best_pair[1]})")
    # The test samples: exactly the stream of uci_protocol.score_networks for one network.
    dtype = getattr(torch, protocol.dtype)
    ws = [w[0] for w in res_full.weights]
    bs = [b[0] for b in res_full.biases]
    x = torch.tensor(std.x_test, dtype=dtype)
    gen = torch.Generator().manual_seed(seed0 + 501)
    samples = mc_predict(x, ws, bs, kps_full[0], protocol.num_samples, inverted=True,
                         generator=gen).double()
    standard = standard_dropout_predict(x, ws, bs, kps_full[0], inverted=True).double()
    y_test = torch.tensor(raw.y_test, dtype=torch.float64)
    summary = regression_summary(samples, y_test, best_pair[1], std.y_mean, std.y_std, standard)
    mean, var = moment_match_samples(samples[..., 0], noise_var=1.0 / best_pair[1],
                                     y_mean=std.y_mean, y_std=std.y_std)
    return DropoutFit(
        dropout_rate=best_pair[0], tau=best_pair[1], validation_ll=best_ll, weights=ws,
        biases=bs, mean=mean, var=var, summary=summary,
        diverged_grid_points=sum(s is None for s in scores),
        wall_time_s=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------- exact GPs


def dropout_prior_gp_hyperparameters(prior_length_scale: float, keep_prob: float, tau: float,
                                     y_std: float, input_dim: int, num_hidden: int
                                     ) -> dict[str, float]:
    r"""GP hyper-parameters (standardised target scale) of the prior of a dropout network
    trained by the UCI protocol (Keras code, inverted dropout, targets standardised by ``y_std``,
    ``tau`` on the original scale).

    The protocol minimises :math:`\mathrm{MSE} + r\|\mathbf{W}'\|^2` with
    :math:`r = l^2 p/(2N\tau)` on the inverted-dropout weights :math:`\mathbf{W}' = p\mathbf{M}`
    and standardised targets. Halving it gives the seed's data term plus
    :math:`\lambda\|\mathbf{M}\|^2` with :math:`\lambda = l^2 p^3 / (4 N\tau)`; the derivation
    (README, "The math") has :math:`\lambda = p\,l_\text{eff}^2/(2 N \tau_s)` with the precision
    of the *standardised* targets :math:`\tau_s = \tau s_y^2`. Hence

    .. math::
        l_\text{eff} = \frac{l\,p\,s_y}{\sqrt 2}, \qquad \tau_s = \tau s_y^2,

    and the hyper-parameters are :func:`comparisons.gp.models.dropout_prior_hyperparameters`
    ``(l_eff, tau_s, p, input_dim, num_hidden)``: ``weight_variance`` :math:`= Q/l_\text{eff}^2`,
    ``bias_variance`` :math:`= 1/l_\text{eff}^2`, ``outputscale`` :math:`= K/l_\text{eff}^2`,
    ``noise`` :math:`= 1/\tau_s`. The Keras code puts no penalty on the biases (an improper flat
    prior); the :math:`\mathcal{N}(0, l_\text{eff}^{-2})` bias prior of Gal & Ghahramani's
    derivation is used instead, and the output bias is left out (see
    ``dropout_prior_hyperparameters``).

    Returns:
        the dict of ``dropout_prior_hyperparameters`` plus ``effective_length_scale`` and
        ``tau_standardized``.

    Example:
        >>> h = dropout_prior_gp_hyperparameters(1e-2, 0.95, 0.5, 9.0, 13, 50)
        >>> round(h["effective_length_scale"], 5), round(h["noise"], 6)
        (0.06046, 0.024691)
    """
    length = check_positive(prior_length_scale, "prior_length_scale")
    keep_prob = check_keep_prob(keep_prob)
    tau = check_positive(tau, "tau")
    y_std = check_positive(y_std, "y_std")
    l_eff = length * keep_prob * y_std / math.sqrt(2.0)
    tau_s = tau * y_std**2
    hyper = dropout_prior_hyperparameters(l_eff, tau_s, keep_prob, input_dim, num_hidden)
    return {**hyper, "effective_length_scale": l_eff, "tau_standardized": tau_s}


@dataclass(eq=False)
class GPFit:
    """A fitted (or fixed) exact GP and its predictions.

    Attributes:
        method: one of :data:`GP_METHODS`.
        model, likelihood: the GPyTorch objects (float64).
        hyperparameters: final values (``outputscale``, ``noise``, kernel variances or
            length-scales, ``mean_constant``), standardised scale.
        losses: marginal-likelihood losses per Adam step (empty when not fitted).
        fit_time_s: time spent fitting.
    """

    method: str
    model: ExactGPModel
    likelihood: gpytorch.likelihoods.GaussianLikelihood
    hyperparameters: dict[str, float]
    losses: list[float] = field(default_factory=list)
    fit_time_s: float = 0.0

    def predict(self, x: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Predictive mean and variance of :math:`y_*` (noise included) at standardised inputs
        ``x`` (``M x Q``), standardised scale, float64 ``(M,)`` each.

        ``gp_rf_prior`` is predicted in weight space (:func:`random_feature_posterior`), the
        others with GPyTorch (Cholesky)."""
        xt = torch.as_tensor(np.array(x, dtype=np.float64))
        if self.method == "gp_rf_prior":
            kernel = self.model.covar_module
            with torch.no_grad():
                mean, var = random_feature_posterior(
                    kernel.base_kernel.features(self.model.train_inputs[0]),
                    self.model.train_targets, kernel.base_kernel.features(xt),
                    float(kernel.outputscale), float(self.likelihood.noise))
            return mean.numpy().copy(), var.numpy().copy()
        with gpytorch.settings.max_cholesky_size(_MAX_CHOLESKY):
            mean, var = gp_predict(self.model, self.likelihood, xt)
        return mean.numpy().copy(), var.numpy().copy()


def random_feature_posterior(phi_train: torch.Tensor, y_train: torch.Tensor,
                             phi_test: torch.Tensor, outputscale: float, noise: float
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""GP posterior predictive of a rank-:math:`K` kernel :math:`a\,\Phi\Phi^\top`, computed in
    weight space (Bayesian linear regression on the features).

    With :math:`\Psi = \sqrt a\,\Phi` (``N x K``), weights :math:`\mathbf{w} \sim
    \mathcal{N}(0, I_K)` and noise variance :math:`\sigma^2`,

    .. math::
        P = I_K + \Psi^\top\Psi / \sigma^2 = L L^\top, \qquad
        \mu_* = \boldsymbol\psi_*^\top P^{-1}\Psi^\top\mathbf{y} / \sigma^2, \qquad
        v_* = \sigma^2 + \lVert L^{-1}\boldsymbol\psi_*
Vert^2 .

    This equals the function-space formula :math:`a\boldsymbol\phi_*^\top\Phi^\top(a\Phi\Phi^\top +
    \sigma^2 I)^{-1}\mathbf{y}` exactly, but stays accurate when :math:`a \gg \sigma^2` (the
    dropout prior has :math:`a pprox 10^6`): :math:`P \succeq I` and :math:`v_* \ge \sigma^2` by
    construction, whereas the Woodbury / function-space variance
    :math:`a\,k_{**} - \dots` cancels catastrophically.

    Args:
        phi_train: ``N x K`` features of the training inputs.
        y_train: ``N`` targets.
        phi_test: ``M x K`` features of the test inputs.
        outputscale: :math:`a > 0`.
        noise: :math:`\sigma^2 > 0`.

    Returns:
        ``(mean, var)``, each ``M``.

    Example:
        >>> phi = torch.eye(2, dtype=torch.float64)
        >>> m, v = random_feature_posterior(phi, torch.ones(2, dtype=torch.float64), phi, 1.0, 1.0)
        >>> [round(t, 12) for t in m.tolist()], [round(t, 12) for t in v.tolist()]
        ([0.5, 0.5], [1.5, 1.5])
    """
    a = check_positive(outputscale, "outputscale")
    s2 = check_positive(noise, "noise")
    psi, psi_s = phi_train * math.sqrt(a), phi_test * math.sqrt(a)
    k = psi.shape[-1]
    prec = torch.eye(k, dtype=psi.dtype) + psi.T @ psi / s2
    chol = torch.linalg.cholesky(prec)
    w = torch.cholesky_solve((psi.T @ y_train.reshape(-1, 1)) / s2, chol)
    mean = (psi_s @ w).reshape(-1)
    half = torch.linalg.solve_triangular(chol, psi_s.T, upper=False)
    return mean, half.pow(2).sum(0) + s2


def _hyperparameters(model: ExactGPModel, likelihood) -> dict[str, float]:
    out = {"noise": float(likelihood.noise.detach().reshape(-1)[0])}
    kernel = model.covar_module
    if isinstance(kernel, gpytorch.kernels.ScaleKernel):
        out["outputscale"] = float(kernel.outputscale.detach())
        kernel = kernel.base_kernel
    for attr in ("weight_variance", "bias_variance"):
        if hasattr(kernel, attr):
            out[attr] = float(getattr(kernel, attr).detach().reshape(-1)[0])
    if isinstance(kernel, gpytorch.kernels.RBFKernel):
        ls = kernel.lengthscale.detach().reshape(-1)
        out.update({f"lengthscale_{i}": float(v) for i, v in enumerate(ls)})
    if hasattr(model.mean_module, "constant"):
        out["mean_constant"] = float(model.mean_module.constant.detach().reshape(-1)[0])
    return out


OPTIMIZERS = ("lbfgs", "adam")


def _fit_lbfgs(model: ExactGPModel, likelihood, max_iter: int) -> list[float]:
    """Minimise :math:`-\\log p(\\mathbf{y}|X)/N` with full-batch L-BFGS (strong Wolfe line
    search); returns the loss at every function evaluation."""
    model.train()
    likelihood.train()
    mll = CholeskyMarginalLogLikelihood(likelihood, model)
    x, y = model.train_inputs[0], model.train_targets
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=max_iter,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20)
    history: list[float] = []

    def closure():
        opt.zero_grad()
        loss = -mll(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite marginal-likelihood loss {float(loss)}")
        loss.backward()
        history.append(float(loss.detach()))
        return loss

    opt.step(closure)
    return history


def fit_gp(method: str, x_train, y_train, *, iterations: int = 200, lr: float = 0.1,
           optimizer: str = "lbfgs", prior: dict[str, float] | None = None,
           num_features: int = 50, seed: int = 0, max_fit_size: int | None = None) -> GPFit:
    r"""Build and (for the fitted methods) train one exact GP on standardised data, float64.

    Fitting maximises the exact log marginal likelihood (Cholesky at every size) over the
    kernel's variances / length-scales, the noise and the constant mean:

    .. math::
        \log p(\mathbf{y}\mid X) = -\tfrac12 (\mathbf{y} - c)^\top (K + \sigma^2 I)^{-1}
        (\mathbf{y} - c) - \tfrac12 \log|K + \sigma^2 I| - \tfrac N2 \log 2\pi.

    Args:
        method: ``"gp_arccos1"`` / ``"gp_se"`` (fitted) or ``"gp_arccos1_prior"`` /
            ``"gp_rf_prior"`` (fixed hyper-parameters ``prior``, no fitting).
        x_train: ``N x Q`` standardised inputs (array-like).
        y_train: ``N x 1`` standardised targets (a 1-D ``y_train`` is refused, as everywhere).
        iterations: L-BFGS iterations (at most ``1.25 x`` as many function evaluations) or
            Adam steps.
        lr: Adam learning rate (``optimizer="adam"`` only).
        optimizer: ``"lbfgs"`` (default; converges in 20-150 evaluations on the UCI sets, where
            200 Adam steps at ``lr=0.05`` are not converged) or ``"adam"``
            (:func:`comparisons.gp.models.fit_exact_gp`). If L-BFGS fails (non-finite loss or a
            non-positive-definite matrix at an extreme step), the GP is re-initialised and fitted
            with Adam (``lr``, ``iterations`` steps); ``hyperparameters["optimizer_fallback"]``
            is then 1.
        prior: for the prior methods, ``weight_variance``, ``bias_variance``, ``outputscale``
            and ``noise`` (e.g. from :func:`dropout_prior_gp_hyperparameters`).
        num_features: random features of ``gp_rf_prior``.
        seed: seed of the random features and of the fitting subset.
        max_fit_size: fitted methods with more than this many training points fit their
            hyper-parameters on a random subset of ``max_fit_size`` points (seeded by ``seed``)
            and then condition EXACTLY on all ``N`` points: the posterior is exact given the
            hyper-parameters, only their ML-II estimate uses the subset
            (``hyperparameters["fit_subset_size"]``). ``None``: fit on all points.

    Initial values of the fitted methods: outputscale 1, noise 0.1, arc-cosine variances 1,
    RBF length-scales 1 (one per input), constant mean 0. Cost: one Cholesky of the ``N x N``
    matrix plus its backward pass per evaluation, :math:`O(N^3)`.

    Returns:
        :class:`GPFit` (``hyperparameters`` also hold ``final_loss`` and ``evaluations`` for
        fitted methods).

    Example:
        >>> x, y = np.random.default_rng(0).normal(size=(30, 2)), np.zeros((30, 1))
        >>> fit = fit_gp("gp_se", x, y, iterations=3)
        >>> sorted(fit.hyperparameters)[:3]
        ['evaluations', 'final_loss', 'lengthscale_0']
    """
    if method not in GP_METHODS:
        raise ValueError(f"method must be one of {list(GP_METHODS)}, got {method!r}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    x = torch.as_tensor(np.array(x_train, dtype=np.float64))
    if x.dim() != 2:
        raise ValueError(f"x_train must have shape N x Q, got {tuple(x.shape)}")
    y = check_targets(torch.as_tensor(np.array(y_train, dtype=np.float64)), "y_train",
                      num_rows=x.shape[0], num_outputs=1)[:, 0]  # GPyTorch takes N targets
    q = x.shape[1]

    def new_likelihood():
        return gpytorch.likelihoods.GaussianLikelihood(
            noise_constraint=GreaterThan(_MIN_NOISE)).double()

    if method in PRIOR_GP_METHODS:
        if prior is None:
            raise ValueError(f"method {method!r} needs prior= (weight_variance, bias_variance, "
                             f"outputscale, noise), e.g. from dropout_prior_gp_hyperparameters")
        missing = [k for k in ("weight_variance", "bias_variance", "outputscale", "noise")
                   if k not in prior]
        if missing:
            raise ValueError(f"prior lacks {missing}; got keys {sorted(prior)}")
        name = "arccos1" if method == "gp_arccos1_prior" else "random-features"
        values = {k: check_positive(prior[k], f"prior[{k!r}]")
                  for k in ("weight_variance", "bias_variance", "outputscale", "noise")}
        kernel = make_kernel(name, q, values["weight_variance"], values["bias_variance"],
                             outputscale=values["outputscale"],
                             num_features=check_positive_int(num_features, "num_features"),
                             generator=torch.Generator().manual_seed(int(seed))).double()
        # (Re)set as float64 tensors: the setters turn a Python float into a float32 tensor
        # first, which would round e.g. an outputscale of 965057.946 to 965057.938.
        f64 = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
        kernel.outputscale = f64["outputscale"]
        kernel.base_kernel.weight_variance = f64["weight_variance"]
        kernel.base_kernel.bias_variance = f64["bias_variance"]
        likelihood = new_likelihood()
        likelihood.noise = f64["noise"]
        model = ExactGPModel(x, y, likelihood, kernel, mean="zero").double()
        return GPFit(method, model, likelihood, _hyperparameters(model, likelihood))
    iterations = check_positive_int(iterations, "iterations")
    lr = check_positive(lr, "lr")
    n = x.shape[0]
    x_fit, y_fit = x, y
    if max_fit_size is not None and n > check_positive_int(max_fit_size, "max_fit_size"):
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
        idx = idx[:max_fit_size].sort().values
        x_fit, y_fit = x[idx], y[idx]

    def new_model():
        if method == "gp_arccos1":
            kernel = make_kernel("arccos1", q, 1.0, 1.0, outputscale=1.0)
        else:
            kernel = make_kernel("se", q, lengthscale=1.0, outputscale=1.0, ard_num_dims=q)
        likelihood = new_likelihood()
        likelihood.noise = torch.tensor(0.1, dtype=torch.float64)
        return (ExactGPModel(x_fit, y_fit, likelihood, kernel.double(), mean="constant").double(),
                likelihood)

    model, likelihood = new_model()
    t0 = time.perf_counter()
    fallback = 0.0
    with gpytorch.settings.max_cholesky_size(_MAX_CHOLESKY):
        if optimizer == "lbfgs":
            try:
                losses = _fit_lbfgs(model, likelihood, iterations)
            except (FloatingPointError, NotPSDError, NanError, GPNotPSDError):
                fallback = 1.0
                model, likelihood = new_model()
        if optimizer == "adam" or fallback:
            losses = fit_exact_gp(model, likelihood, num_iters=iterations, lr=lr)
    if x_fit is not x:
        model.set_train_data(x, y, strict=False)  # condition on all N points
    hyper = _hyperparameters(model, likelihood)
    hyper.update(final_loss=losses[-1], evaluations=float(len(losses)),
                 fit_subset_size=float(x_fit.shape[0]))
    if optimizer == "lbfgs":
        hyper["optimizer_fallback"] = fallback
    return GPFit(method, model, likelihood, hyper, losses, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- the runner


@dataclass(eq=False)
class GPvsDropoutResult:
    """Everything :func:`run_gp_vs_dropout` computed.

    Attributes:
        dataset: ``"toy1d"`` or the canonical UCI name.
        split: split index (the data seed for the toy).
        data: the standardised split (:class:`~comparisons.datasets.toy1d.Toy1DData` for the toy,
            else :class:`~comparisons.datasets.uci.StandardizedSplit`).
        dropout: the :class:`DropoutFit`.
        gps: ``{method: GPFit}``.
        predictions: ``{method: (mean, var)}`` at the test inputs, original scale, ``(n_test,)``
            float64 (MC dropout's moment-matched).
        records: the tidy records.
        settings: the settings used.
    """

    dataset: str
    split: int
    data: object
    dropout: DropoutFit
    gps: dict[str, GPFit]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]
    records: list[dict]
    settings: dict


def _load(dataset: str, split: int, toy_num_train: int):
    if dataset.lower() == TOY1D_NAME:
        data = load_toy1d(num_train=toy_num_train, seed=split)
        return TOY1D_NAME, data.source, data
    raw = load_uci(dataset, split)
    return raw.name, raw, standardize(raw)


def _method_metrics(mean, var, y, wall) -> dict[str, float]:
    """rmse, test_ll (Gaussian), coverage_95, mean_pred_sd on the original scale."""
    ll = gaussian_log_likelihood(*(torch.tensor(np.asarray(a, dtype=np.float64)) for a in (mean, var, y)))
    out = {
        "rmse": float(np.sqrt(np.mean((y - mean) ** 2))),
        "test_ll": float(ll.mean()),
        "coverage_95": interval_coverage(mean, var, y, level=0.95),
        "mean_pred_sd": float(np.mean(np.sqrt(var))),
        "wall_time_s": float(wall),
    }
    return out


def run_gp_vs_dropout(
    dataset: str = TOY1D_NAME,
    split: int = 0,
    *,
    epochs_multiplier: float = 10.0,
    num_samples: int = 10_000,
    gp_iterations: int = 200,
    gp_optimizer: str = "lbfgs",
    gp_lr: float = 0.1,
    max_grid: int | None = None,
    seed: int = 0,
    toy_num_train: int = 200,
    random_features: bool = True,
    methods: Sequence[str] | None = None,
    progress: bool = False,
) -> GPvsDropoutResult:
    r"""MC dropout (UCI protocol) vs exact GPs on one split; see the module docstring.

    Args:
        dataset: ``"toy1d"`` or a UCI name / alias.
        split: UCI split index, or the toy's data seed.
        epochs_multiplier, num_samples, max_grid, seed: the MC dropout protocol
            (:class:`comparisons.protocols.uci.UCIProtocol`; defaults as ``python -m comparisons
            uci``).
        gp_iterations, gp_optimizer, gp_lr: fitting of the marginal-likelihood GPs (L-BFGS
            iterations or Adam steps; see :func:`fit_gp`).
        toy_num_train: training points of the toy.
        random_features: also run ``gp_rf_prior`` (``num_hidden`` random ReLU features).
        methods: GP methods to run (default: all of :data:`GP_METHODS`, less ``gp_rf_prior``
            when ``random_features`` is False).
        progress: print the stages.

    Returns:
        :class:`GPvsDropoutResult`; ``records`` holds, for ``mc_dropout`` and every GP,
        ``rmse``, ``test_ll``, ``coverage_95``, ``mean_pred_sd``, ``wall_time_s`` (MC dropout
        also ``test_ll_gaussian``, ``rmse_standard``, ``best_dropout_rate``, ``best_tau``), and
        for every GP the distances ``smd``, ``var_ratio``, ``kl``, ``w2``, ``tv`` (toy: also
        per region, e.g. ``kl[gap]``) and its hyper-parameters (``hp_*``).

    Timing (defaults, one torch thread on a shared 2-core machine, measured for split 0): toy1d
    25-50 s, yacht 10 s, bostonHousing 24 s, energy 45 s, concrete 47 s, wine-quality-red 170 s
    (see ``docs/gp_vs_dropout``); the exact GPs cost :math:`O(N^3)` per marginal-likelihood
    evaluation, so sets with more than a few thousand rows are impractical.

    Example:
        >>> r = run_gp_vs_dropout("toy1d", epochs_multiplier=0.01, num_samples=50,
        ...                       gp_iterations=2, max_grid=1)  # doctest: +SKIP
        >>> sorted({rec["method"] for rec in r.records})  # doctest: +SKIP
        ['gp_arccos1', 'gp_arccos1_prior', 'gp_rf_prior', 'gp_se', 'mc_dropout']
    """
    if not isinstance(dataset, str):
        raise ValueError(f"dataset must be 'toy1d' or a UCI name, got {dataset!r}")
    if methods is None:
        methods = [m for m in GP_METHODS if random_features or m != "gp_rf_prior"]
    unknown = [m for m in methods if m not in GP_METHODS]
    if unknown:
        raise ValueError(f"methods must be a subset of {list(GP_METHODS)}, got unknown {unknown}")
    gp_iterations = check_positive_int(gp_iterations, "gp_iterations")
    gp_lr = check_positive(gp_lr, "gp_lr")
    if gp_optimizer not in OPTIMIZERS:
        raise ValueError(f"gp_optimizer must be one of {list(OPTIMIZERS)}, got {gp_optimizer!r}")
    protocol = UCIProtocol(epochs_multiplier=epochs_multiplier, num_samples=num_samples,
                           seed=seed, max_grid=max_grid)
    name, raw, data = _load(dataset, split, toy_num_train)
    std = data if isinstance(data, StandardizedSplit) else standardize(raw)
    y_test = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    y_mean, y_std = float(std.y_mean), float(std.y_std)
    settings = {"epochs_multiplier": float(epochs_multiplier), "num_samples": int(num_samples),
                "gp_iterations": gp_iterations, "gp_optimizer": gp_optimizer}
    base = {"dataset": name, "split": int(split), **settings}
    records: list[dict] = []

    def add(method, metrics):
        for k, v in metrics.items():
            records.append(dict(base, method=method, metric=k, value=float(v)))

    drop = fit_mc_dropout(raw, protocol, progress=progress)
    predictions = {DROPOUT_METHOD: (drop.mean, drop.var)}
    drop_metrics = _method_metrics(drop.mean, drop.var, y_test, drop.wall_time_s)
    drop_metrics["test_ll_gaussian"] = drop_metrics["test_ll"]
    drop_metrics["test_ll"] = float(drop.summary.mean_log_likelihood)  # the paper's MC estimate
    drop_metrics.update(rmse_standard=float(drop.summary.rmse_standard),
                        best_dropout_rate=drop.dropout_rate, best_tau=drop.tau,
                        diverged_grid_points=float(drop.diverged_grid_points))
    add(DROPOUT_METHOD, drop_metrics)

    prior = dropout_prior_gp_hyperparameters(protocol.prior_length_scale, drop.keep_prob,
                                             drop.tau, y_std, raw.n_features, raw.n_hidden)
    regions = {}
    if name == TOY1D_NAME:
        regions = {r: data.region_mask(r) for r in ("train", "gap", "extrapolation")}
    gps: dict[str, GPFit] = {}
    for method in methods:
        if progress:
            how = ("fixed dropout-prior hyper-parameters" if method in PRIOR_GP_METHODS else
                   f"marginal likelihood, {gp_optimizer}, up to {gp_iterations} iterations")
            print(f"[{method}] {how}", flush=True)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
            fit = fit_gp(method, std.x_train, std.y_train, iterations=gp_iterations, lr=gp_lr,
                         optimizer=gp_optimizer, prior=prior, num_features=raw.n_hidden,
                         seed=protocol.seed + split)
            m_std, v_std = fit.predict(std.x_test)
        wall = time.perf_counter() - t0
        mean, var = y_mean + y_std * m_std, y_std**2 * v_std
        gps[method] = fit
        predictions[method] = (mean, var)
        metrics = _method_metrics(mean, var, y_test, wall)
        metrics.update(summarize_predictive_distances(drop.mean, drop.var, mean, var,
                                                      scale=y_std))
        for region, mask in regions.items():
            if mask.any():
                d = summarize_predictive_distances(drop.mean, drop.var, mean, var, scale=y_std,
                                                   mask=mask)
                metrics.update({f"{k}[{region}]": v for k, v in d.items()})
        metrics.update({f"hp_{k}": v for k, v in fit.hyperparameters.items()})
        add(method, metrics)
    for rec in records:
        if not math.isfinite(rec["value"]):
            raise RuntimeError(f"{name} split {split}: {rec['method']} {rec['metric']} is not "
                               f"finite ({rec['value']})")
    return GPvsDropoutResult(name, int(split), data, drop, gps, predictions, records, settings)


# ----------------------------------------------------------------------------- UCI cells


@dataclass(frozen=True)
class GPUCIConfig:
    """Settings of :func:`run_gp_uci_cell` (recorded with every result).

    Attributes:
        gp_iterations: L-BFGS iterations (or Adam steps) on the exact marginal likelihood.
        gp_optimizer: ``"lbfgs"`` or ``"adam"`` (see :func:`fit_gp`).
        gp_lr: Adam learning rate.
        methods: fitted GP methods (subset of :data:`FITTED_GP_METHODS`).
        max_train_size: refuse larger training sets (the exact posterior needs a dense
            ``N x N`` Cholesky factor: 1.2 GB in float64 at 12,000 points).
        max_fit_size: fit the hyper-parameters on a seeded random subset of this many
            training points when ``N`` is larger, then condition exactly on all ``N`` (see
            :func:`fit_gp`); the records carry ``fit_subset_size``.
    """

    gp_iterations: int = 200
    gp_optimizer: str = "lbfgs"
    gp_lr: float = 0.1
    methods: tuple[str, ...] = FITTED_GP_METHODS
    max_train_size: int = 12_000
    max_fit_size: int = 3_000

    def __post_init__(self):
        check_positive_int(self.gp_iterations, "gp_iterations")
        check_positive(self.gp_lr, "gp_lr")
        if self.gp_optimizer not in OPTIMIZERS:
            raise ValueError(f"gp_optimizer must be one of {list(OPTIMIZERS)}, got "
                             f"{self.gp_optimizer!r}")
        check_positive_int(self.max_train_size, "max_train_size")
        check_positive_int(self.max_fit_size, "max_fit_size")
        bad = [m for m in self.methods if m not in FITTED_GP_METHODS]
        if bad or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {list(FITTED_GP_METHODS)}, "
                             f"got {list(self.methods)}")
        object.__setattr__(self, "methods", tuple(self.methods))


def gp_uci_cells(datasets: Sequence[str], splits: str, config: GPUCIConfig) -> list[Cell]:
    """One :class:`~comparisons.runner.executors.Cell` (method ``"gp"``) per (data set, split), for
    :func:`comparisons.runner.executors.run_cells` with :func:`run_gp_uci_cell`.

    Example:
        >>> [c.cell_id for c in gp_uci_cells(["yacht"], "0-1", GPUCIConfig())][0][:18]
        'yacht/gp/split-00/'
    """
    cells = []
    for name in datasets:
        name = resolve_uci_name(name)
        for split in parse_splits(splits, uci_info(name).n_splits):
            cells.append(Cell(name, split, "gp", asdict(config)))
    return cells


def run_gp_uci_cell(cell: Cell) -> list[dict]:
    """Fit the marginal-likelihood GPs (``gp_arccos1``, ``gp_se``) on one UCI (data set, split)
    and return tidy records for the UCI summary table.

    Metrics per method, named like the MC dropout ones: ``rmse``, ``test_ll`` (Gaussian
    predictive on the original scale), ``coverage_95``, ``wall_time_s`` (fit + predict); the
    records also carry ``gp_iterations``. Standardisation, initial values and fitting are those
    of :func:`run_gp_vs_dropout`, so the numbers agree.

    Time (defaults: L-BFGS, up to 200 iterations, float64 Cholesky, one torch thread; measured on
    split 0 through :func:`run_gp_vs_dropout`, fit + predict per method, arc-cosine / SE): yacht
    (N = 277) 2 / 3 s, bostonHousing (455) 5 / 8 s, energy (691) 7 / 29 s, concrete (927)
    12 / 7 s, wine-quality-red (1439) 32 / 119 s (there the SE fit degenerates: L-BFGS hits a
    non-positive-definite matrix and falls back to 200 Adam steps; see below). Above
    ``max_fit_size`` (3000) training rows the hyper-parameters are fitted on a random subset and
    the posterior conditions on all rows: kin8nm, power-plant and naval (7,400-10,700 rows) took
    46-173 s per method and split (one worker, loaded box). Protein exceeds the default
    ``max_train_size`` (12,000) and is refused.

    Caveat: wine-quality-red contains exact duplicate (x, y) rows (172 groups in the training
    rows of split 0; 51 of its 160 test rows repeat a training row). The exact marginal
    likelihood is then unbounded as the noise goes to 0, and the SE GP's fit drives the noise to
    its floor (1e-6): its test log-likelihood rewards memorised duplicates.

    Args:
        cell: a :class:`~comparisons.runner.executors.Cell` from :func:`gp_uci_cells` (its ``config`` is a
            :class:`GPUCIConfig` as a dict).

    Returns:
        list of record dicts.

    Example:
        >>> cell = gp_uci_cells(["yacht"], "0", GPUCIConfig(gp_iterations=5))[0]
        >>> sorted({(r["method"], r["metric"]) for r in run_gp_uci_cell(cell)})[:4]
        [('gp_arccos1', 'coverage_95'), ('gp_arccos1', 'rmse'), ('gp_arccos1', 'test_ll'), ('gp_arccos1', 'wall_time_s')]
    """
    config = GPUCIConfig(**dict(cell.config))
    raw = load_uci(cell.dataset, cell.split)
    n = raw.x_train.shape[0]
    if n > config.max_train_size:
        raise ValueError(f"{raw.name} split {raw.split} has N={n} training rows > max_train_size="
                         f"{config.max_train_size}: an exact GP needs O(N^3) per step; raise "
                         f"max_train_size if you mean it")
    std = standardize(raw)
    y_test = np.asarray(raw.y_test, dtype=np.float64)[:, 0]
    records = []
    for method in config.methods:
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
            fit = fit_gp(method, std.x_train, std.y_train, iterations=config.gp_iterations,
                         lr=config.gp_lr, optimizer=config.gp_optimizer,
                         max_fit_size=config.max_fit_size, seed=raw.split)
            m_std, v_std = fit.predict(std.x_test)
        wall = time.perf_counter() - t0
        mean, var = std.y_mean + std.y_std * m_std, std.y_std**2 * v_std
        metrics = _method_metrics(mean, var, y_test, wall)
        metrics.pop("mean_pred_sd")
        for k, v in metrics.items():
            if not math.isfinite(v):
                raise RuntimeError(f"{raw.name} split {raw.split}: {method} {k} is not finite")
            records.append({"dataset": raw.name, "method": method, "split": raw.split,
                            "metric": k, "value": float(v),
                            "gp_iterations": config.gp_iterations,
                            "gp_optimizer": config.gp_optimizer,
                            "fit_subset_size": int(fit.hyperparameters["fit_subset_size"])})
    return records


# ----------------------------------------------------------------------------- output


_PERF = ("rmse", "test_ll", "coverage_95", "mean_pred_sd", "wall_time_s")


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    a = abs(v)
    if a != 0 and (a >= 1e4 or a < 1e-3):
        return f"{v:.2e}"
    return f"{v:.3f}"


def _table(rows: list[str], cols: list[str], cell) -> list[str]:
    lines = ["| method | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(_fmt(cell(r, c)) for c in cols) + " |")
    return lines


def records_markdown(records: Sequence[dict]) -> str:
    """Markdown tables of one :func:`run_gp_vs_dropout` run: accuracy / calibration per method,
    the distances of MC dropout's predictive from every GP's, and (toy) the distances per region.

    Args:
        records: the run's tidy records (one data set and split).

    Returns:
        Markdown text (no trailing newline).

    Example:
        >>> recs = [{"dataset": "d", "method": "mc_dropout", "split": 0, "metric": "rmse",
        ...          "value": 1.0}]
        >>> records_markdown(recs).splitlines()[2]
        '| mc_dropout | 1.000 | – | – | – | – |'
    """
    values = {(r["method"], r["metric"]): float(r["value"]) for r in records}
    methods = list(dict.fromkeys(r["method"] for r in records))
    gps = [m for m in methods if m != DROPOUT_METHOD]
    lines = _table(methods, list(_PERF), lambda m, c: values.get((m, c)))
    if gps and any((gps[0], d) in values for d in DISTANCE_METRICS):
        lines += ["", "Distance of MC dropout's moment-matched predictive from each GP's "
                  "(mean over test points; var_ratio: geometric mean of var_dropout / var_gp; "
                  "w2 in units of the training-target sd):", ""]
        lines += _table(gps, list(DISTANCE_METRICS), lambda m, c: values.get((m, c)))
        regions = [r for r in ("train", "gap", "extrapolation") if (gps[0], f"kl[{r}]") in values]
        if regions:
            cols = [f"{d}[{r}]" for d in ("smd", "var_ratio", "kl") for r in regions]
            lines += ["", "Per region of the test grid:", ""]
            lines += _table(gps, cols, lambda m, c: values.get((m, c)))
    return "\n".join(lines)


def plot_toy1d_comparison(result: GPvsDropoutResult, ax, gp_method: str = "gp_arccos1",
                          num_sd: float = 2.0, ylim: tuple[float, float] | None = None):
    """Draw the toy data, MC dropout's and one GP's predictive means with ``±num_sd`` sd bands,
    the true function, and shade the gap and the extrapolation regions.

    Args:
        result: a toy1d :class:`GPvsDropoutResult`.
        ax: a matplotlib ``Axes``.
        gp_method: the GP to draw next to MC dropout (a key of ``result.predictions``).
        num_sd: half-width of the bands in predictive standard deviations.
        ylim: y-limits (default: the true function's range plus half of it on each side, so a
            huge prior band does not flatten the picture).

    Returns:
        ``ax`` (two mean lines, two bands, the true function, the data, the shaded regions).

    Example:
        >>> fig, ax = plt.subplots()  # doctest: +SKIP
        >>> plot_toy1d_comparison(result, ax, "gp_arccos1_prior")  # doctest: +SKIP
    """
    if result.dataset != TOY1D_NAME:
        raise ValueError(f"plot_toy1d_comparison needs a toy1d result, got {result.dataset!r}")
    if gp_method not in result.predictions:
        raise ValueError(f"gp_method must be one of {sorted(result.predictions)}, got "
                         f"{gp_method!r}")
    num_sd = check_positive(num_sd, "num_sd")
    data = result.data
    x = data.x_test_raw
    lo_t, hi_t = data.train_bounds
    for (_, a), (b, _) in zip(data.train_intervals[:-1], data.train_intervals[1:]):
        ax.axvspan(a, b, color="0.85", alpha=0.6, lw=0, label="gap")
    ax.axvspan(x[0], lo_t, color="0.93", lw=0, label="extrapolation")
    ax.axvspan(hi_t, x[-1], color="0.93", lw=0)
    if ylim is None:
        ylim = toy_ylim(data)
    for method in (DROPOUT_METHOD, gp_method):
        mean, var = result.predictions[method]
        plot_predictive_band(ax, x, mean, var, method, ylim, num_sd=num_sd,
                             label=f"{method_label(method)} mean ± {num_sd:g} sd")
    return finish_toy_axes(ax, data, x, ylim, f"MC dropout vs {method_label(gp_method)}")
