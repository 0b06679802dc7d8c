r"""Mean-field Gaussian variational inference (Bayes by Backprop) for the toolkit's MLP, as a
baseline next to the MC dropout family.

Every weight and bias gets its own Gaussian factor,

.. math::
    q(\mathbf{W}) = \prod_j \mathcal{N}(w_j;\, \mu_j, \sigma_j^2), \qquad
    \sigma_j = \operatorname{softplus}(\rho_j) = \log(1 + e^{\rho_j}),

with the prior of :class:`~vi_dropout.models.BayesianMLP`, :math:`\mathcal{N}(0, l^{-2})` on
every weight and bias, and a Gaussian likelihood of learned precision :math:`\tau` (parametrised
by :math:`\log\tau`). The per-example negative ELBO uses one weight draw per example by local
reparameterisation: for a layer with input :math:`\mathbf{h}_n`, the pre-activation
:math:`\mathbf{W}\mathbf{h}_n + \mathbf{b}` under :math:`q` is Gaussian with independent entries,

.. math::
    \mathbf{a}_n \sim \mathcal{N}\big(\mathbf{M}\mathbf{h}_n + \mathbf{m}_b,\;
    \operatorname{diag}(\mathbf{S}^{\circ 2}\,\mathbf{h}_n^{\circ 2} + \mathbf{s}_b^{\circ 2})\big),

so it is drawn directly (exact in distribution, with a lower-variance gradient than a shared
weight draw). The KL is in closed form (:func:`vi_dropout.kl.mean_field_kl_to_prior`):

.. math::
    -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^B \Big[\frac{\tau}{2}\|\mathbf{y}_n
        - \hat{\mathbf{y}}_n\|^2 + \frac{D}{2}\log\frac{2\pi}{\tau}\Big]
        + \sum_j \tfrac12\big(l^2\mu_j^2 + l^2\sigma_j^2 - 1 - \log l^2\sigma_j^2\big).

Initialisation: the means as the other methods (Glorot-uniform weights, zero biases, from the
generator), every :math:`\sigma_j` equal to ``initial_sigma`` (default :math:`10^{-3}`: the fit
starts close to a deterministic network and learns the scales).

References:
    Graves (2011), "Practical Variational Inference for Neural Networks", NeurIPS 2011;
    Blundell, Cornebise, Kavukcuoglu & Wierstra (2015), "Weight Uncertainty in Neural
    Networks", ICML 2015;
    Kingma, Salimans & Welling (2015), "Variational Dropout and the Local Reparameterization
    Trick", NeurIPS 2015.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F

from vi_dropout.infer.fit_loop import (
    TAU_BOUND,
    as_networks,
    draw_in_chunks,
    initial_params,
    network_generators,
    network_picker,
    run_fit_loop,
)
from vi_dropout.kl import mean_field_kl_to_prior
from vi_dropout.likelihoods import negative_log_likelihood
from vi_dropout.network import Architecture, check_data, get_activation
from vi_dropout.validation import check_positive, check_positive_int

__all__ = [
    "MeanFieldObjective",
    "MeanFieldFit",
    "fit_mean_field",
    "mean_field_forward",
    "preactivation_moments",
]


def preactivation_moments(h: torch.Tensor, loc: torch.Tensor, bias_loc: torch.Tensor,
                          scale: torch.Tensor, bias_scale: torch.Tensor):
    r"""Mean and variance of the pre-activation :math:`\mathbf{W}\mathbf{h} + \mathbf{b}` of one
    layer under the factorised Gaussian :math:`q`, per example (local reparameterisation).

    .. math::
        \mathbb{E}_q[\mathbf{a}] = \mathbf{M}\mathbf{h} + \mathbf{m}_b, \qquad
        \operatorname{Var}_q[\mathbf{a}] = \mathbf{S}^{\circ 2}\mathbf{h}^{\circ 2}
        + \mathbf{s}_b^{\circ 2}

    Args:
        h: inputs, ``... x B x in``.
        loc, scale: means and standard deviations of the weights, ``... x out x in``.
        bias_loc, bias_scale: those of the biases, ``... x out``.

    Returns:
        ``(mean, var)``, each ``... x B x out``.

    References:
        Kingma, Salimans & Welling (2015), "Variational Dropout and the Local Reparameterization
        Trick", NeurIPS 2015.
    """
    mean = h @ loc.transpose(-1, -2) + bias_loc.unsqueeze(-2)
    var = h.pow(2) @ scale.pow(2).transpose(-1, -2) + bias_scale.pow(2).unsqueeze(-2)
    return mean, var


def mean_field_forward(x, weights, biases, weight_scales, bias_scales, activation, noise):
    r"""The network output for one weight draw per example (and per leading sample), by local
    reparameterisation: :math:`\mathbf{a} = \mathbb{E}_q[\mathbf{a}]
    + \sqrt{\operatorname{Var}_q[\mathbf{a}]} \odot \boldsymbol{\varepsilon}` in every layer
    (:func:`preactivation_moments`), the activation between layers.

    Args:
        x: ``... x B x Q`` inputs.
        weights, weight_scales: per layer ``... x out x in``; biases, bias_scales: ``... x out``.
        activation: name of the hidden activation.
        noise: per layer standard normals broadcastable to ``... x B x out``.

    Returns:
        ``... x B x D`` outputs.
    """
    act = get_activation(activation)
    h = x
    last = len(weights) - 1
    for i, (w, b, sw, sb) in enumerate(zip(weights, biases, weight_scales, bias_scales)):
        mean, var = preactivation_moments(h, w, b, sw, sb)
        h = mean + var.sqrt() * noise[i]
        if i < last:
            h = act(h)
    return h


def _inverse_softplus(value: float) -> float:
    """:math:`\\rho` with :math:`\\operatorname{softplus}(\\rho)` = ``value`` > 0."""
    return value + math.log(-math.expm1(-value))


class MeanFieldObjective(torch.nn.Module):
    r"""The per-example negative ELBO of a fully factorised Gaussian posterior over every weight
    and bias of an MLP, with a learned Gaussian precision :math:`\tau`.

    .. math::
        -\widehat{\mathrm{ELBO}}(\boldsymbol{\mu}, \boldsymbol{\rho}, \tau) = \frac{N}{B}
        \sum_{n=1}^B -\log\mathcal{N}\big(\mathbf{y}_n; f(\mathbf{x}_n; \mathbf{W}_n),
        \tau^{-1}\mathbf{I}\big) + \sum_j \mathrm{KL}\big(\mathcal{N}(\mu_j, \sigma_j^2)\,\|\,
        \mathcal{N}(0, l^{-2})\big), \qquad \sigma_j = \operatorname{softplus}(\rho_j)

    Parameters (all ``torch.nn.Parameter``): the means ``weights[i]`` (``out x in``) and
    ``biases[i]`` (``out``), the scale parameters ``weight_rhos[i]`` and ``bias_rhos[i]`` (same
    shapes), and ``log_tau`` (a buffer when :math:`\tau` is not learned).

    Args:
        architecture: the MLP (:class:`~vi_dropout.network.Architecture`).
        initial_sigma: initial :math:`\sigma > 0` of every weight and bias.
        tau: initial :math:`\tau > 0`; learn_tau: whether it is learned.
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        weights, biases: optional initial means (default: Glorot-uniform weights and zero
            biases from ``generator``).
        generator: source of the initial means (a sequence of ``E`` with ``num_networks``).
        num_networks: ``E`` independent networks in one batched computation (every parameter
            gets a leading ``E`` dim; inputs ``E x B x Q``, the objective has shape
            ``sample_shape x E``; network ``e`` draws only from the ``e``-th generator).

    References:
        Graves (2011); Blundell et al. (2015), "Weight Uncertainty in Neural Networks";
        Kingma, Salimans & Welling (2015) for the local reparameterisation.
    """

    def __init__(self, architecture: Architecture, initial_sigma=1e-3, tau=1.0,
                 prior_length_scale=1.0, *, learn_tau: bool = True,
                 weights: Sequence[torch.Tensor] | None = None,
                 biases: Sequence[torch.Tensor] | None = None, generator=None,
                 dtype=torch.float64, num_networks: int | None = None):
        super().__init__()
        self.architecture = architecture
        self.num_networks = None if num_networks is None else check_positive_int(
            num_networks, "num_networks")
        gens = self._generators(generator)
        shape = () if self.num_networks is None else (self.num_networks,)
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        rho = _inverse_softplus(check_positive(initial_sigma, "initial_sigma"))
        log_tau = torch.full(shape, math.log(check_positive(tau, "tau")), dtype=dtype)
        if learn_tau:
            self.log_tau = torch.nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        weights, biases = initial_params(architecture, gens, self.num_networks, dtype,
                                         weights, biases)

        def params(tensors):
            return torch.nn.ParameterList([torch.nn.Parameter(
                torch.as_tensor(t, dtype=dtype).detach().clone()) for t in tensors])

        self.weights, self.biases = params(weights), params(biases)
        self.weight_rhos = params([torch.full_like(w, rho) for w in self.weights])
        self.bias_rhos = params([torch.full_like(b, rho) for b in self.biases])

    def _generators(self, generator):
        return network_generators(generator, self.num_networks)

    # --- the learned quantities ----------------------------------------------------------------
    @property
    def weight_scales(self) -> tuple[torch.Tensor, ...]:
        r"""Per layer :math:`\operatorname{softplus}(\rho)` of the weights, ``out x in``."""
        return tuple(F.softplus(r) for r in self.weight_rhos)

    @property
    def bias_scales(self) -> tuple[torch.Tensor, ...]:
        r"""Per layer :math:`\operatorname{softplus}(\rho)` of the biases, ``out``."""
        return tuple(F.softplus(r) for r in self.bias_rhos)

    @property
    def tau(self) -> torch.Tensor:
        r""":math:`\tau = \exp(\log\tau)`."""
        return self.log_tau.exp()

    def kl(self) -> torch.Tensor:
        r"""The closed-form :math:`\mathrm{KL}(q\,\|\,p)` summed over every weight and bias
        (:func:`~vi_dropout.kl.mean_field_kl_to_prior`); a scalar, or ``E``."""
        total = self.log_tau.new_zeros(self.log_tau.shape)
        for w, b, sw, sb in zip(self.weights, self.biases, self.weight_scales, self.bias_scales):
            total = total + mean_field_kl_to_prior(w, sw, self.prior_length_scale, event_dims=2)
            total = total + mean_field_kl_to_prior(b, sb, self.prior_length_scale, event_dims=1)
        return total

    # --- the objective -------------------------------------------------------------------------
    def draw_noise(self, num_rows: int, sample_shape=(), generator=None) -> list[torch.Tensor]:
        """Standard normals of every layer, ``sample_shape x [E x] B x out``, drawn in layer
        order (per network from its own generator)."""
        gens = self._generators(generator)
        lead = tuple(sample_shape)
        dtype = self.log_tau.dtype
        noise = []
        for out, _ in self.architecture.layer_shapes:
            size = lead + (num_rows, out)
            if self.num_networks is None:
                noise.append(torch.randn(size, dtype=dtype, generator=gens))
            else:
                noise.append(torch.stack([torch.randn(size, dtype=dtype, generator=g)
                                          for g in gens], dim=len(lead)))
        return noise

    def forward(self, x: torch.Tensor, y: torch.Tensor, *, num_data: int | None = None,
                noise: Sequence[torch.Tensor] | None = None, sample_shape=(),
                generator=None) -> torch.Tensor:
        r"""The negative ELBO estimate, of shape ``sample_shape`` (``sample_shape x E`` with
        ``num_networks``).

        .. math::
            N\Big[\frac{\tau}{2B}\sum_n\|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2
            + \frac{D}{2}\log\frac{2\pi}{\tau}\Big] + \mathrm{KL}

        Args:
            x: ``B x Q`` inputs (``E x B x Q`` with ``num_networks``); y: ``[E x] B x D``
                targets; ``num_data`` is the full ``N`` (default ``B``).
            noise: optional per-layer standard normals ``... x B x out`` (their leading dims set
                the sample shape); drawn from ``generator`` otherwise.
            sample_shape: leading shape of independent draws when ``noise`` is None.
            generator: a ``torch.Generator`` (a sequence of ``E`` with ``num_networks``).
        """
        check_data(x, y, self.architecture)
        if self.num_networks is not None and (x.dim() != 3 or x.shape[0] != self.num_networks):
            raise ValueError(f"x must have shape {self.num_networks} x B x Q for num_networks="
                             f"{self.num_networks}, got {tuple(x.shape)}")
        if self.num_networks is None and x.dim() != 2:
            raise ValueError(f"x must have shape B x Q, got {tuple(x.shape)}")
        if noise is not None and len(noise) != self.architecture.num_layers:
            raise ValueError(f"noise must have {self.architecture.num_layers} entries (one per "
                             f"layer), got {len(noise)}")
        b = x.shape[-2]
        n = b if num_data is None else check_positive_int(num_data, "num_data")
        return self.negative_elbo_unchecked(x, y, n, noise=noise, sample_shape=sample_shape,
                                            generator=generator)

    def negative_elbo_unchecked(self, x: torch.Tensor, y: torch.Tensor, num_data: int, *,
                                noise=None, sample_shape=(), generator=None) -> torch.Tensor:
        """:meth:`forward` without the argument checks, for training loops that checked the
        data once (:func:`fit_mean_field`); same arguments, ``num_data`` required."""
        if noise is None:
            noise = self.draw_noise(x.shape[-2], sample_shape, generator)
        out = mean_field_forward(x, list(self.weights), list(self.biases), self.weight_scales,
                                 self.bias_scales, self.architecture.activation, noise)
        return num_data * negative_log_likelihood(y, out, "gaussian", self.tau) + self.kl()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, num_samples: int, *, network: int | None = None,
                generator: torch.Generator | None = None, max_rows: int = 16384) -> torch.Tensor:
        r"""MC samples of the network output under :math:`q`, one weight draw per sample and
        test point by local reparameterisation: every point's samples follow its exact
        predictive marginal (points are not jointly sampled from one weight draw).

        .. math::
            \hat{\mathbf{y}}_t(\mathbf{x}) = f(\mathbf{x}; \mathbf{W}_t), \qquad
            \mathbf{W}_t \sim q

        Args:
            x: ``N x Q`` inputs.
            num_samples: :math:`T`.
            network: which of the ``E`` networks (required with ``num_networks``).
            generator: source of the noise.
            max_rows: rows (samples x points) per vectorised pass.

        Returns:
            ``T x N x D`` samples (no observation noise).
        """
        pick = network_picker(network, self.num_networks)
        params = [[pick(p).to(x.dtype) for p in group] for group in (
            self.weights, self.biases, self.weight_scales, self.bias_scales)]
        shapes, activation = self.architecture.layer_shapes, self.architecture.activation

        def draw(t: int) -> torch.Tensor:
            noise = [torch.randn(t, x.shape[0], o, dtype=x.dtype, generator=generator)
                     for o, _ in shapes]
            return mean_field_forward(x, *params, activation, noise)

        return draw_in_chunks(self.architecture, x, num_samples, max_rows, draw)


class MeanFieldFit(NamedTuple):
    """What :func:`fit_mean_field` learned (detached tensors) and its loss trace.

    With ``E`` networks (a sequence of seeds) every tensor has a leading ``E`` dim, ``losses``
    is ``steps x E`` and ``failures[e]`` is ``None`` or the message naming the parameter of
    network ``e`` that left its bounds (that network's numbers are then not to be used); with
    one network ``failures`` is ``(None,)`` (a failure raises instead)."""

    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    weight_scales: list[torch.Tensor]
    bias_scales: list[torch.Tensor]
    tau: torch.Tensor
    losses: torch.Tensor
    objective: MeanFieldObjective
    failures: tuple[str | None, ...] = (None,)


@torch.no_grad()
def _problems(objective: MeanFieldObjective, step: int) -> list[str | None]:
    """Per network: ``None`` or the message naming the first parameter out of bounds (a
    non-finite variational parameter, or :math:`\\tau` outside ``[1e-10, 1e10]``)."""
    e_count = objective.num_networks or 1
    found: list[str | None] = [None] * e_count
    groups = [("weights", objective.weights), ("biases", objective.biases),
              ("weight_rhos", objective.weight_rhos), ("bias_rhos", objective.bias_rhos)]
    for name, group in groups:
        for i, p in enumerate(group):
            finite = torch.isfinite(p.reshape(e_count, -1)).all(1)
            for e in range(e_count):
                if found[e] is None and not bool(finite[e]):
                    found[e] = f"{name}[{i}] became non-finite at step {step}"
    taus = objective.tau.reshape(-1)
    for e in range(e_count):
        v = float(taus[e])
        if found[e] is None and (not math.isfinite(v) or not TAU_BOUND <= v <= 1 / TAU_BOUND):
            found[e] = f"tau left [{TAU_BOUND}, {1.0 / TAU_BOUND}] at step {step}: tau = {v!r}"
    return found


def fit_mean_field(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int] = (50,), *,
                   activation: str = "relu", prior_length_scale=1.0, tau=1.0,
                   initial_sigma=1e-3, learn_tau: bool = True, steps: int = 1000,
                   lr: float = 1e-2, hyper_lr: float | None = None,
                   batch_size: int | None = None, num_samples: int = 1,
                   seed: int | Sequence[int] = 0, check_every: int = 1) -> MeanFieldFit:
    r"""Fit a mean-field Gaussian posterior (:class:`MeanFieldObjective`) with Adam on the
    per-example negative ELBO, full batch or in minibatches, for one network or ``E``
    independent ones in one batched computation.

    .. math::
        \min_{\boldsymbol{\mu}, \boldsymbol{\rho}, \log\tau}
        \frac{1}{S}\sum_{s=1}^S -\widehat{\mathrm{ELBO}}_s

    With minibatches of :math:`B` rows the data term is scaled by :math:`N/B`, so every step is
    an unbiased estimate of the full objective; an epoch is a fresh permutation of the rows cut
    into :math:`\lceil N/B \rceil` batches (:func:`~vi_dropout.infer.fit_loop.minibatch_rows`).

    ``E`` networks (``seed`` a sequence of ``E`` seeds): network ``e`` draws its initial means,
    its permutations and its noise from ``torch.Generator().manual_seed(seed[e])`` in the same
    order as a single fit with that seed, so it reproduces that fit up to floating-point
    rounding whatever the other networks are. A network whose parameter leaves its bounds is
    named in ``failures`` and the others go on.

    Args:
        x: ``N x Q`` inputs, or ``E x N x Q`` (one data set per network); y: ``... x N x D``
            targets.
        hidden: hidden widths (``()`` for a linear model); activation: hidden activation.
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        tau: initial :math:`\tau` (learned unless ``learn_tau`` is False).
        initial_sigma: initial :math:`\sigma` of every weight and bias.
        steps: Adam steps; lr: Adam step size of the means; hyper_lr: step size of the scale
            parameters :math:`\rho` and of :math:`\log\tau` (default ``lr``).
        batch_size: rows per step (``None``: all rows).
        num_samples: :math:`S`, independent noise draws per example per step.
        seed: an int (one network) or a sequence of ``E`` ints (``E`` networks).
        check_every: check the parameters against their bounds every this many steps (and
            after the last); a non-finite loss is caught at every step.

    Returns:
        A :class:`MeanFieldFit`. One network: raises ``ValueError`` naming the parameter if
        :math:`\tau` leaves ``[1e-10, 1e10]``, a variational parameter or the loss becomes
        non-finite; ``E`` networks: that network's entry of ``failures`` says so.

    References:
        Graves (2011); Blundell et al. (2015), "Weight Uncertainty in Neural Networks";
        Kingma, Salimans & Welling (2015).

    Example:
        >>> x = torch.linspace(-1, 1, 40, dtype=torch.float64).reshape(-1, 1)
        >>> fit = fit_mean_field(x, torch.sin(3 * x), (16,), steps=50, batch_size=16, seed=[0, 1])
        >>> fit.tau.shape, fit.losses.shape, fit.failures
        (torch.Size([2]), torch.Size([50, 2]), (None, None))
    """
    x, y, seeds, batched = as_networks(x, y, seed)
    steps = check_positive_int(steps, "steps")
    lr = check_positive(lr, "lr")
    hyper_lr = lr if hyper_lr is None else check_positive(hyper_lr, "hyper_lr")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_every = check_positive_int(check_every, "check_every")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    hidden = tuple(check_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
    arch = Architecture((x.shape[-1], *hidden, y.shape[-1]), activation=activation)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    gen = gens if batched else gens[0]
    objective = MeanFieldObjective(
        arch, initial_sigma, tau, prior_length_scale, learn_tau=learn_tau, generator=gen,
        dtype=x.dtype, num_networks=len(seeds) if batched else None)
    hyper = [*objective.weight_rhos, *objective.bias_rhos]
    if learn_tau:
        hyper.append(objective.log_tau)
    opt = torch.optim.Adam([{"params": [*objective.weights, *objective.biases], "lr": lr},
                            {"params": hyper, "lr": hyper_lr}], foreach=True)

    def loss_of(xb, yb, n):
        return objective.negative_elbo_unchecked(xb, yb, n, sample_shape=(num_samples,),
                                                 generator=gen).mean(0)

    losses, failures = run_fit_loop(objective, opt, loss_of, x, y, gens, batched, steps=steps,
                                    batch_size=batch_size, check_every=check_every,
                                    problems=_problems)
    with torch.no_grad():
        return MeanFieldFit(
            weights=[w.detach().clone() for w in objective.weights],
            biases=[b.detach().clone() for b in objective.biases],
            weight_scales=[s.detach().clone() for s in objective.weight_scales],
            bias_scales=[s.detach().clone() for s in objective.bias_scales],
            tau=objective.tau.detach().clone(),
            losses=losses,
            objective=objective,
            failures=tuple(failures),
        )
