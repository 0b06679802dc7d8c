r"""Concrete dropout: learn each layer's keep_prob, the jitter :math:`\theta` and the precision
:math:`\tau` by gradient descent on the full negative ELBO, instead of a grid search.

Bernoulli masks have no reparameterisation gradient in their keep_prob. The Concrete (relaxed
Bernoulli) distribution replaces a mask :math:`z \sim \operatorname{Bernoulli}(\pi)` by

.. math::
    \tilde z = \sigma\Big(\frac{\log\pi - \log(1-\pi) + \log u - \log(1-u)}{t}\Big),
    \qquad u \sim \mathcal{U}(0, 1),

which is differentiable in :math:`\pi` and tends in distribution to the Bernoulli mask as the
temperature :math:`t \to 0` (the gradient is biased for :math:`t > 0`; the bias shrinks with
:math:`t` while the variance grows). Here :math:`\pi` is the probability that a unit is KEPT
(the drop rate is ``1 - keep_prob``) and is parametrised by its logit, so it never leaves
:math:`(0, 1)`.

The objective is the per-example negative ELBO of :func:`vi_dropout.infer.elbo.negative_elbo`
(one weight draw per example, local reparameterisation, Gaussian likelihood with all constants)
with the Bernoulli masks replaced by relaxed ones, and with the Proposition 1 KL
(:func:`vi_dropout.kl.kl_large_width`) evaluated at the learned keep_prob:

.. math::
    -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^B \Big[\frac{\tau}{2}\|\mathbf{y}_n
        - \hat{\mathbf{y}}_n\|^2 + \frac{D}{2}\log\frac{2\pi}{\tau}\Big]
        + \sum_i \Big(\frac{\pi_i l^2}{2}\|\mathbf{M}_i\|^2 + Q_i\Big[\frac{K_i}{2}\big(l^2\theta^2
        - 1 - \log l^2\theta^2\big) - H(\pi_i)\Big] + \mathrm{KL}_{\text{bias}, i}\Big).

References:
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.

Why one module of this size: the Concrete objective of E MLPs at once, its fit and its
prediction: the fast path the UCI protocol runs, held to :mod:`vi_dropout.infer.module_concrete`
by tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from vi_dropout.distributions import DropoutNormal
from vi_dropout.infer.fit_loop import (
    TAU_BOUND,
    as_networks,
    draw_in_chunks,
    initial_params,
    network_generators,
    network_picker,
    run_fit_loop,
)
from vi_dropout.kl import gaussian_kl_to_prior, kl_large_width
from vi_dropout.likelihoods import negative_log_likelihood
from vi_dropout.network import Architecture, check_data, local_reparam_forward, mlp_forward
from vi_dropout.validation import (
    check_learnable_keep_prob,
    check_positive,
    check_positive_int,
)

__all__ = [
    "relaxed_bernoulli_mask",
    "ConcreteDropoutObjective",
    "ConcreteFit",
    "fit_concrete",
    "KEEP_PROB_CLAMP",
]

#: a learned keep_prob within this distance of 0 or 1 stops :func:`fit_concrete`.
KEEP_PROB_BOUND = 1e-6
#: with ``at_bound="clamp"``, :func:`fit_concrete` keeps every keep_prob in
#: ``[KEEP_PROB_CLAMP, 1 - KEEP_PROB_CLAMP]`` (projected Adam; inside the failure bound)
KEEP_PROB_CLAMP = 2e-6


def relaxed_bernoulli_mask(keep_prob_logit, shape, temperature,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Concrete (relaxed Bernoulli) masks, differentiable in the keep_prob logit.

    .. math::
        \tilde z = \sigma\Big(\frac{\operatorname{logit}\pi + \log u - \log(1-u)}{t}\Big),
        \qquad u \sim \mathcal{U}(0, 1),\quad \operatorname{logit}\pi = \log\pi - \log(1-\pi).

    As :math:`t \to 0`, :math:`\tilde z \to \mathbb{1}[\operatorname{logit}\pi + \log u -
    \log(1-u) > 0]`, which is :math:`\operatorname{Bernoulli}(\pi)`.

    Args:
        keep_prob_logit: :math:`\operatorname{logit}\pi` of the probability that a unit is KEPT,
            a float or a tensor broadcastable to ``shape`` (e.g. a scalar per layer).
        shape: shape of the masks, e.g. ``N x in`` or ``S x N x in``.
        temperature: :math:`t > 0`.
        generator: optional ``torch.Generator`` for the uniforms (common random numbers).

    Returns:
        Masks in :math:`(0, 1)` of shape ``shape`` (the dtype of ``keep_prob_logit`` if it is a
        floating tensor, else float64).

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017, eq. (5);
        Maddison, Mnih & Teh (2017); Jang, Gu & Poole (2017).
    """
    t = check_positive(temperature, "temperature")
    logit = torch.as_tensor(keep_prob_logit)
    if not logit.is_floating_point():
        logit = logit.to(torch.float64)
    u = torch.rand(tuple(shape), dtype=logit.dtype, device=logit.device, generator=generator)
    return _relax(logit, u, t)


def _relax(logit: torch.Tensor, u: torch.Tensor, temperature: float) -> torch.Tensor:
    """The relaxed mask of uniforms ``u`` (clamped away from 0 and 1)."""
    u = u.clamp(torch.finfo(u.dtype).tiny, 1.0 - torch.finfo(u.dtype).eps)
    return torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / temperature)


class ConcreteDropoutObjective(torch.nn.Module):
    r"""The per-example negative ELBO of the MC dropout family with LEARNED keep_probs,
    :math:`\theta` and :math:`\tau`, through relaxed Bernoulli masks.

    .. math::
        -\widehat{\mathrm{ELBO}}(\mathbf{M}, \pi, \theta, \tau) = \frac{N}{B}\sum_{n=1}^B
        -\log\mathcal{N}\big(\mathbf{y}_n; f(\mathbf{x}_n; \mathbf{W}_n(\tilde{\mathbf{z}}_n)),
        \tau^{-1}\mathbf{I}\big) + \sum_i \big[\text{Prop. 1}(\mathbf{M}_i, \pi_i, \theta)
        + \mathrm{KL}(\mathcal{N}(\mathbf{m}_{b,i}, \theta^2)\,\|\,\mathcal{N}(0, l^{-2}))\big]

    Parameters (all ``torch.nn.Parameter``): the means ``weights[i]`` (``out x in``) and
    ``biases[i]`` (``out``) in the paper's convention (kept units are not rescaled); one keep_prob
    logit per layer whose input is dropped; ``log_theta`` (:math:`\log\theta`) and ``log_tau``
    (:math:`\log\tau`), each a parameter when learned and a buffer otherwise.

    Args:
        architecture: the MLP (:class:`~vi_dropout.network.Architecture`).
        keep_probs: initial keep_prob per layer (or one value for all layers), each in the open
            interval ``(0, 1)``; an entry ``None`` means no dropout on that layer's input (mask of
            ones, no entropy term, :math:`\pi = 1` in the KL).
        theta: initial :math:`\theta > 0`, or ``None`` for the :math:`\theta \to 0` limit (the
            dropout objective of Concrete dropout: no jitter noise, and the KL without its
            :math:`\theta` terms, which diverge like :math:`-\log\theta` and depend on no other
            parameter); tau: initial :math:`\tau > 0`.
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        learn_theta, learn_tau: whether :math:`\theta` and :math:`\tau` are learned
            (``learn_theta`` default: unless ``theta`` is ``None``).
        num_networks: ``E`` independent networks in one batched computation (every parameter
            gets a leading ``E`` dim; inputs ``E x B x Q``, the objective has shape
            ``sample_shape x E``; ``generator`` is then a sequence of ``E`` generators).
        weights, biases: optional initial means (default: Glorot from ``generator``).

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """

    def __init__(self, architecture: Architecture, keep_probs=0.9, theta=1e-2, tau=1.0,
                 prior_length_scale=1.0, *, learn_theta: bool | None = None,
                 learn_tau: bool = True, weights: Sequence[torch.Tensor] | None = None,
                 biases: Sequence[torch.Tensor] | None = None,
                 generator=None, dtype=torch.float64, num_networks: int | None = None):
        super().__init__()
        self.architecture = architecture
        self.num_networks = None if num_networks is None else check_positive_int(
            num_networks, "num_networks")
        gens = self._generators(generator)
        shape = () if self.num_networks is None else (self.num_networks,)
        n_layers = architecture.num_layers
        if isinstance(keep_probs, Sequence) and not isinstance(keep_probs, str):
            if len(keep_probs) != n_layers:
                raise ValueError(
                    f"keep_probs must be a number or a sequence of {n_layers} entries (one per "
                    f"layer), got a sequence of length {len(keep_probs)}"
                )
            kps = list(keep_probs)
            names = [f"keep_probs[{i}]" for i in range(n_layers)]
        else:
            kps = [keep_probs] * n_layers
            names = ["keep_probs"] * n_layers
        kps = [None if kp is None else check_learnable_keep_prob(kp, nm) for kp, nm in zip(kps, names)]
        self.dropped_layers = tuple(i for i, kp in enumerate(kps) if kp is not None)
        self.keep_prob_logits = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.full(shape, math.log(kp) - math.log1p(-kp), dtype=dtype))
             for kp in kps if kp is not None]
        )
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        #: the theta -> 0 limit (``theta=None``): no jitter noise, no theta terms in the KL
        self.zero_theta = theta is None
        if learn_theta is None:
            learn_theta = not self.zero_theta
        if self.zero_theta and learn_theta:
            raise ValueError("theta=None is the theta -> 0 limit and cannot be learned: pass "
                             "learn_theta=False, or an initial theta > 0 to learn it")
        log_theta = torch.full(shape, -math.inf if self.zero_theta else
                               math.log(check_positive(theta, "theta")), dtype=dtype)
        log_tau = torch.full(shape, math.log(check_positive(tau, "tau")), dtype=dtype)
        if learn_theta:
            self.log_theta = torch.nn.Parameter(log_theta)
        else:
            self.register_buffer("log_theta", log_theta)
        if learn_tau:
            self.log_tau = torch.nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        weights, biases = initial_params(architecture, gens, self.num_networks, dtype,
                                         weights, biases)
        self.weights = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(w, dtype=dtype).detach().clone()) for w in weights]
        )
        self.biases = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.as_tensor(b, dtype=dtype).detach().clone()) for b in biases]
        )

    def _generators(self, generator):
        return network_generators(generator, self.num_networks)

    def _per_network(self, draw, lead, generator) -> torch.Tensor:
        """``draw(shape, generator)`` for one network, or stacked over the ``E`` networks at
        dim ``len(lead)`` (each from its own generator)."""
        gens = self._generators(generator)
        if self.num_networks is None:
            return draw(lead, gens, None)
        return torch.stack([draw(lead, g, e) for e, g in enumerate(gens)], dim=len(lead))

    # --- the learned quantities ----------------------------------------------------------------
    def keep_prob_logit(self, layer: int) -> torch.Tensor | None:
        """The keep_prob logit of layer ``layer`` (``None`` if its input is not dropped)."""
        if layer not in self.dropped_layers:
            return None
        return self.keep_prob_logits[self.dropped_layers.index(layer)]

    @property
    def keep_probs(self) -> tuple[torch.Tensor, ...]:
        """Per-layer keep_prob :math:`\\sigma(\\text{logit})` (1 for layers without dropout)."""
        one = self.log_theta.new_ones(self.log_theta.shape)
        return tuple(one if self.keep_prob_logit(i) is None else
                     torch.sigmoid(self.keep_prob_logit(i))
                     for i in range(self.architecture.num_layers))

    @property
    def theta(self) -> torch.Tensor:
        r""":math:`\theta = \exp(\log\theta)`."""
        return self.log_theta.exp()

    @property
    def tau(self) -> torch.Tensor:
        r""":math:`\tau = \exp(\log\tau)`."""
        return self.log_tau.exp()

    # --- masks and KL --------------------------------------------------------------------------
    def sample_masks(self, num_rows: int, temperature, sample_shape=(),
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Relaxed masks on every layer's input, each ``sample_shape x N x in`` (ones where
        the layer's input is not dropped), drawn in layer order from ``generator``."""
        n = check_positive_int(num_rows, "num_rows")
        lead = tuple(sample_shape)
        net = () if self.num_networks is None else (self.num_networks,)
        masks = []
        for i, (_, inp) in enumerate(self.architecture.layer_shapes):
            logit = self.keep_prob_logit(i)
            if logit is None:
                masks.append(self.log_theta.new_ones(lead + net + (n, inp)))
            elif self.num_networks is None:
                masks.append(relaxed_bernoulli_mask(logit, lead + (n, inp), temperature,
                                                    generator=generator))
            else:  # uniforms per network (own stream), one transform for all
                u = self._per_network(
                    lambda sh, g, e, inp=inp, dt=logit.dtype: torch.rand(sh + (n, inp), dtype=dt,
                                                         generator=g), lead, generator)
                masks.append(_relax(logit[:, None, None], u,
                                    check_positive(temperature, "temperature")))
        return masks

    def kl(self) -> torch.Tensor:
        r"""Proposition 1 for every weight matrix at the learned keep_prob, plus the exact
        Gaussian KL of every bias (:func:`~vi_dropout.kl.kl_large_width`,
        :func:`~vi_dropout.kl.gaussian_kl_to_prior`)."""
        # theta -> 0 limit: theta = 1/l zeroes the theta terms (l^2 theta^2 - 1 - log l^2 theta^2)
        theta = (self.log_theta.new_full(self.log_theta.shape, 1.0 / self.prior_length_scale)
                 if self.zero_theta else self.theta)
        total = theta.new_zeros(())
        for w, b, kp in zip(self.weights, self.biases, self.keep_probs):
            # the parameters are valid by construction (logit / log parameterisation)
            q = DropoutNormal(w, kp, theta, validate_args=False)
            total = total + kl_large_width(q, self.prior_length_scale)
            total = total + gaussian_kl_to_prior(b, theta, self.prior_length_scale)
        return total

    # --- the objective -------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, y: torch.Tensor, *, temperature=0.1,
                masks: Sequence[torch.Tensor] | None = None,
                noise: Sequence[torch.Tensor] | None = None, num_data: int | None = None,
                sample_shape=(), generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The negative ELBO estimate, of shape ``sample_shape`` (a scalar by default).

        .. math::
            N\Big[\frac{\tau}{2B}\sum_n\|\mathbf{y}_n - \hat{\mathbf{y}}_n\|^2
            + \frac{D}{2}\log\frac{2\pi}{\tau}\Big] + \mathrm{KL}

        Args:
            x: ``B x Q`` inputs; y: ``B x D`` targets; ``num_data`` is the full ``N``
                (default ``B``).
            temperature: :math:`t > 0` of the relaxed masks (unused when ``masks`` is given).
            masks: optional per-layer masks ``... x B x in`` (e.g. exact Bernoulli masks to
                enumerate); their leading dims set ``sample_shape``.
            noise: optional per-layer standard normals ``... x B x out`` for the local
                reparameterisation (zeros give the :math:`\theta`-free forward pass).
            sample_shape: leading shape of independent draws when ``masks`` is None.
        """
        check_data(x, y, self.architecture)
        b = x.shape[-2]
        n = b if num_data is None else check_positive_int(num_data, "num_data")
        if masks is None:
            check_positive(temperature, "temperature")
        elif len(masks) != self.architecture.num_layers:
            raise ValueError(f"masks must have {self.architecture.num_layers} entries (one per "
                             f"layer), got {len(masks)}")
        return self.negative_elbo_unchecked(x, y, n, temperature=temperature, masks=masks,
                                            noise=noise, sample_shape=sample_shape,
                                            generator=generator)

    def negative_elbo_unchecked(self, x: torch.Tensor, y: torch.Tensor, num_data: int, *,
                                temperature=0.1, masks=None, noise=None, sample_shape=(),
                                generator: torch.Generator | None = None) -> torch.Tensor:
        """:meth:`forward` without the argument checks, for training loops that checked the
        data once (:func:`fit_concrete`); same arguments, ``num_data`` required."""
        b = x.shape[-2]
        if masks is None:
            masks = self.sample_masks(b, temperature, sample_shape, generator)
        lead = torch.broadcast_shapes(*(m.shape[:-2] for m in masks))
        if self.zero_theta:
            out = mlp_forward(x, list(self.weights), list(self.biases),
                              self.architecture.activation, masks)
            return self._negative_elbo_of_outputs(y, out, num_data)
        if noise is None:
            inner = lead if self.num_networks is None else lead[:-1]
            noise = [self._per_network(
                lambda sh, g, e, out=out: torch.randn(sh + (b, out), dtype=x.dtype, generator=g),
                inner, generator) for out, _ in self.architecture.layer_shapes]
        biases, theta = list(self.biases), self.theta
        if self.num_networks is not None:  # E x out -> E x 1 x out against ... x E x B x out
            biases = [bias.unsqueeze(-2) for bias in biases]
            theta = theta[:, None, None]
        out = local_reparam_forward(x, list(self.weights), biases, masks, theta,
                                     self.architecture.activation, noise)
        return self._negative_elbo_of_outputs(y, out, num_data)

    def _negative_elbo_of_outputs(self, y, out, num_data: int) -> torch.Tensor:
        return num_data * negative_log_likelihood(y, out, "gaussian", self.tau) + self.kl()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, num_samples: int, *, network: int | None = None,
                generator: torch.Generator | None = None, max_rows: int = 16384) -> torch.Tensor:
        r"""MC samples of the network output under :math:`q` at the learned parameters: EXACT
        Bernoulli masks at the learned keep_probs (not relaxed) and, unless ``theta`` was
        ``None`` (the :math:`\theta \to 0` limit), the jitter noise by local reparameterisation
        (one weight draw per sample and test point: the exact predictive marginal of every
        point).

        .. math::
            \hat{\mathbf{y}}_{t}(\mathbf{x}) = f\big(\mathbf{x};\, \mathbf{W}_{t}\big),
            \quad \mathbf{W}_{i,t} = \mathbf{M}_i \operatorname{diag}(\mathbf{z}_{i,t})
            + \theta \mathbf{E}_{i,t}, \quad z \sim \operatorname{Bernoulli}(\pi_i)

        Args:
            x: ``N x Q`` inputs.
            num_samples: :math:`T`.
            network: which of the ``E`` networks (required with ``num_networks``).
            generator: source of the masks and noise.
            max_rows: rows (samples x points) per vectorised pass.

        Returns:
            ``T x N x D`` samples (no observation noise).
        """
        pick = network_picker(network, self.num_networks)
        weights = [pick(w) for w in self.weights]
        biases = [pick(b) for b in self.biases]
        kps = [pick(kp) for kp in self.keep_probs]
        theta = pick(self.theta)
        shapes, activation = self.architecture.layer_shapes, self.architecture.activation

        def draw(t: int) -> torch.Tensor:
            n = x.shape[0]
            masks = [(torch.rand(t, n, inp, dtype=x.dtype, generator=generator) < kp).to(x.dtype)
                     for (_, inp), kp in zip(shapes, kps)]
            if self.zero_theta:
                return mlp_forward(x, weights, biases, activation, masks)
            noise = [torch.randn(t, n, o, dtype=x.dtype, generator=generator) for o, _ in shapes]
            return local_reparam_forward(x, weights, biases, masks, theta, activation, noise)

        return draw_in_chunks(self.architecture, x, num_samples, max_rows, draw)


class ConcreteFit(NamedTuple):
    """What :func:`fit_concrete` learned (detached float tensors) and its loss trace.

    With ``E`` networks (a sequence of seeds) every tensor has a leading ``E`` dim, ``losses``
    is ``steps x E`` and ``failures[e]`` is ``None`` or the message naming the parameter that
    left its bounds (that network's numbers are then not to be used); with one network
    ``failures`` is ``(None,)`` (a failure raises instead)."""

    keep_probs: tuple[torch.Tensor, ...]
    theta: torch.Tensor
    tau: torch.Tensor
    weights: list[torch.Tensor]
    biases: list[torch.Tensor]
    losses: torch.Tensor
    objective: ConcreteDropoutObjective
    failures: tuple[str | None, ...] = (None,)


@torch.no_grad()
def _learned_problems(objective: ConcreteDropoutObjective, step: int) -> list[str | None]:
    """Per network (one entry without ``num_networks``): ``None`` or the message naming the
    first learned parameter outside its bounds."""
    e_count = objective.num_networks or 1
    found: list[str | None] = [None] * e_count
    for i in objective.dropped_layers:
        logits = objective.keep_prob_logit(i).reshape(-1)
        for e in range(e_count):
            logit = float(logits[e])
            kp = float(torch.sigmoid(logits[e]))
            if found[e] is None and (not math.isfinite(logit) or kp < KEEP_PROB_BOUND
                                     or kp > 1.0 - KEEP_PROB_BOUND):
                found[e] = (f"keep_probs[{i}] left the open interval (0, 1) at step {step}: "
                            f"keep_prob = {kp!r} (logit {logit!r}) is within {KEEP_PROB_BOUND} "
                            "of a bound or not finite")
    checked = [("tau", objective.log_tau)]
    if not objective.zero_theta:
        checked.append(("theta", objective.log_theta))
    for name, log_value in checked:
        values = log_value.exp().reshape(-1)
        for e in range(e_count):
            v = float(values[e])
            if found[e] is None and (not math.isfinite(v) or not TAU_BOUND < v < 1 / TAU_BOUND):
                found[e] = (f"{name} left ({TAU_BOUND}, {1.0 / TAU_BOUND}) at step {step}: "
                            f"{name} = {v!r}")
    return found


def _param_groups(objective: ConcreteDropoutObjective, lr: float, hyper_lr: float) -> list[dict]:
    """Adam groups: the means at ``lr``, the keep_prob logits, log theta and log tau at
    ``hyper_lr``."""
    means = [*objective.weights, *objective.biases]
    hyper = [*objective.keep_prob_logits] + [
        t for t in (objective.log_theta, objective.log_tau) if isinstance(t, torch.nn.Parameter)]
    groups = [{"params": means, "lr": lr}]
    if hyper:
        groups.append({"params": hyper, "lr": hyper_lr})
    return groups


def fit_concrete(x: torch.Tensor, y: torch.Tensor, hidden: Sequence[int] = (50,), *,
                 activation: str = "relu", keep_probs=0.9, theta=1e-2, tau=1.0,
                 prior_length_scale=1.0, learn_theta: bool | None = None,
                 learn_tau: bool = True, steps: int = 1000, lr: float = 1e-2, hyper_lr: float | None = None,
                 batch_size: int | None = None, temperature=0.1, num_samples: int = 1,
                 seed: int | Sequence[int] = 0, check_every: int = 1,
                 at_bound: str = "fail") -> ConcreteFit:
    r"""Fit the means, keep_probs, :math:`\theta` and :math:`\tau` with Adam on the per-example
    negative ELBO through relaxed masks (:class:`ConcreteDropoutObjective`), full batch or in
    minibatches, for one network or ``E`` independent ones in one batched computation.

    .. math::
        \min_{\mathbf{M}, \operatorname{logit}\pi, \log\theta, \log\tau}
        \frac{1}{S}\sum_{s=1}^S -\widehat{\mathrm{ELBO}}_s

    With minibatches of :math:`B` rows the data term is scaled by :math:`N/B`
    (``num_data = N``), so every step is an unbiased estimate of the full objective; an epoch is a
    fresh permutation of the rows cut into :math:`\lceil N/B \rceil` batches.

    ``E`` networks (``seed`` a sequence of ``E`` seeds): network ``e`` draws its initial means,
    its permutations, masks and noise from ``torch.Generator().manual_seed(seed[e])`` in the same
    order as a single fit with that seed, so it reproduces that fit up to floating-point rounding
    whatever the other networks are (the networks share nothing; Adam is elementwise). A network
    whose parameter leaves its bounds is named in ``failures`` and the others go on.

    Args:
        x: ``N x Q`` inputs, or ``E x N x Q`` (one data set per network); y: ``... x N x D``
            targets to match.
        hidden: hidden widths (``()`` for a linear model).
        keep_probs: initial keep_prob per layer or one for all, in ``(0, 1)``; ``None`` entries
            mean no dropout on that layer's input.
        theta, tau: initial :math:`\theta` (``None``: the :math:`\theta \to 0` limit, see
            :class:`ConcreteDropoutObjective`), :math:`\tau` (learned unless ``learn_theta`` /
            ``learn_tau`` is False).
        steps: Adam steps; lr: Adam step size of the means; hyper_lr: step size of the keep_prob
            logits, :math:`\log\theta` and :math:`\log\tau` (default ``lr``).
        batch_size: rows per step (``None``: all rows).
        temperature: :math:`t > 0` of the masks.
        num_samples: :math:`S`, independent mask and noise draws per example per step.
        seed: an int (one network) or a sequence of ``E`` ints (``E`` networks).
        check_every: check the learned parameters against their bounds every this many steps
            (and after the last); a non-finite loss is caught at every step.
        at_bound: what a keep_prob that runs to 0 or 1 does: ``"fail"`` (the fit fails, see
            Returns) or ``"clamp"`` (projected Adam: after every step each keep_prob is clamped
            to ``[2e-6, 1 - 2e-6]`` and the other parameters go on; use it where the ELBO's
            maximiser lies on the boundary, e.g. keep_prob -> 1 on large data sets, and report
            which keep_probs sit at the clamp). :math:`\tau` and :math:`\theta` bounds and NaN
            always fail.

    Returns:
        A :class:`ConcreteFit`. One network: raises ``ValueError`` naming the parameter if a
        learned keep_prob comes within ``1e-6`` of 0 or 1 or a learned :math:`\tau` or
        :math:`\theta` becomes non-finite or leaves ``[1e-10, 1e10]``; ``E`` networks: that
        network's entry of ``failures`` says so.

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.

    Example:
        >>> x = torch.linspace(-1, 1, 40, dtype=torch.float64).reshape(-1, 1)
        >>> fit = fit_concrete(x, torch.sin(3 * x), (16,), steps=50, batch_size=16, seed=[0, 1])
        >>> fit.keep_probs[0].shape, fit.losses.shape, fit.failures
        (torch.Size([2]), torch.Size([50, 2]), (None, None))
    """
    x, y, seeds, batched = as_networks(x, y, seed)
    if at_bound not in ("fail", "clamp"):
        raise ValueError(f"at_bound must be 'fail' or 'clamp', got {at_bound!r}")
    clamp_logit = math.log1p(-KEEP_PROB_CLAMP) - math.log(KEEP_PROB_CLAMP)
    steps = check_positive_int(steps, "steps")
    lr = check_positive(lr, "lr")
    hyper_lr = lr if hyper_lr is None else check_positive(hyper_lr, "hyper_lr")
    temperature = check_positive(temperature, "temperature")
    num_samples = check_positive_int(num_samples, "num_samples")
    check_every = check_positive_int(check_every, "check_every")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    hidden = tuple(check_positive_int(h, f"hidden[{i}]") for i, h in enumerate(hidden))
    arch = Architecture((x.shape[-1], *hidden, y.shape[-1]), activation=activation)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    objective = ConcreteDropoutObjective(
        arch, keep_probs, theta, tau, prior_length_scale, learn_theta=learn_theta,
        learn_tau=learn_tau, generator=gens if batched else gens[0], dtype=x.dtype,
        num_networks=len(seeds) if batched else None,
    )
    opt = torch.optim.Adam(_param_groups(objective, lr, hyper_lr), foreach=True)
    gen = gens if batched else gens[0]

    def loss_of(xb, yb, n):
        return objective.negative_elbo_unchecked(
            xb, yb, n, temperature=temperature, sample_shape=(num_samples,),
            generator=gen).mean(0)

    def clamp():
        with torch.no_grad():
            for logit in objective.keep_prob_logits:
                logit.clamp_(-clamp_logit, clamp_logit)

    losses, failures = run_fit_loop(
        objective, opt, loss_of, x, y, gens, batched, steps=steps, batch_size=batch_size,
        check_every=check_every, problems=_learned_problems,
        after_step=clamp if at_bound == "clamp" else None)
    with torch.no_grad():
        return ConcreteFit(
            keep_probs=tuple(kp.detach().clone() for kp in objective.keep_probs),
            theta=objective.theta.detach().clone(),
            tau=objective.tau.detach().clone(),
            weights=[w.detach().clone() for w in objective.weights],
            biases=[b.detach().clone() for b in objective.biases],
            losses=losses,
            objective=objective,
            failures=tuple(failures),
        )
