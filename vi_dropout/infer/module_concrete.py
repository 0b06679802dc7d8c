r"""Concrete dropout for your own network: learn the keep_prob of every dropout layer of a converted
``torch.nn.Module``, the jitter :math:`\theta` and the precision :math:`\tau`, by gradient descent
on the full per-example negative ELBO.

The module is converted as everywhere else (:func:`~vi_dropout.conversion.find_covered_layers`,
:func:`~vi_dropout.conversion.dropout_free_copy`); each covered layer :math:`i` with dropout in
front gets a learned keep_prob :math:`\pi_i = \sigma(\phi_i)` (logit parameterisation, so it stays
in :math:`(0, 1)`) and relaxed Bernoulli masks on its input units (channels for a convolution,
:func:`~vi_dropout.infer.concrete.relaxed_bernoulli_mask`). The objective is that of
:class:`~vi_dropout.infer.concrete.ConcreteDropoutObjective`, for any covered network:

.. math::
    -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^B -\log p\big(\mathbf{y}_n \mid
    f(\mathbf{x}_n; \mathbf{W}_n(\tilde{\mathbf{z}}_n))\big)
    + \sum_i \Big(\frac{\pi_i l^2}{2}\|\mathbf{M}_i\|^2 + Q_i\Big[\frac{K_i}{2}\big(l^2\theta^2
    - 1 - \log l^2\theta^2\big) - H(\pi_i)\Big] + \mathrm{KL}_{\text{bias}, i}\Big),

one weight draw per example (:func:`~vi_dropout.forward.module_forward` with the relaxed
masks), the Proposition 1 KL at the learned keep_prob (:func:`~vi_dropout.infer.elbo.kl_to_prior`),
a Gaussian likelihood of precision :math:`\tau` on ``N x D`` targets or a categorical one on logits.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
    ...                           torch.nn.Linear(16, 1)).double()
    >>> x = torch.linspace(-1, 1, 32, dtype=torch.float64).reshape(-1, 2)
    >>> fit = fit_module_concrete(net, x, x[:, :1] ** 2, steps=20)
    >>> float(fit.keep_probs["0"]), 0 < float(fit.keep_probs["3"]) < 1  # no dropout before '0'
    (1.0, True)
    >>> _ = fit.objective.load_into(net)  # learned means and drop rate back into the module

References:
    Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import nn

from vi_dropout.conversion import CoveredLayer, DisabledDropout, convert_module, dropout_free_copy
from vi_dropout.forward import covered_layer_shapes, mask_shape, module_forward
from vi_dropout.infer.concrete import KEEP_PROB_BOUND, relaxed_bernoulli_mask
from vi_dropout.infer.elbo import kl_to_prior
from vi_dropout.infer.fit_loop import TAU_BOUND, run_fit_loop
from vi_dropout.inputs import Inputs, check_inputs, float_dtype, map_inputs, shapes_key, take
from vi_dropout.inputs import batch_size as batch_size_of
from vi_dropout.likelihoods import LIKELIHOODS, negative_log_likelihood
from vi_dropout.validation import (
    check_learnable_keep_prob,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = ["ModuleConcreteObjective", "ModuleConcreteFit", "fit_module_concrete"]


def _initial_keep_probs(layers: Sequence[CoveredLayer], keep_probs) -> list[float | None]:
    """Per covered layer the initial keep_prob to learn, ``None`` for a layer left undropped."""
    names = [c.name for c in layers]
    if keep_probs is None or isinstance(keep_probs, Mapping):
        given = dict(keep_probs or {})
        unknown = [n for n in given if n not in names]
        if unknown:
            raise ValueError(f"keep_probs names {unknown}, which are not covered layers of the "
                             f"module; its covered layers are {names}")
        init = [check_learnable_keep_prob(given[c.name], f"keep_probs[{c.name!r}]") if c.name in given
                else (c.keep_prob if c.keep_prob < 1.0 else None) for c in layers]
    else:
        value = check_learnable_keep_prob(keep_probs, "keep_probs")
        init = [value if c.keep_prob < 1.0 else None for c in layers]
    if all(kp is None for kp in init):
        raise ValueError(f"no covered layer has dropout in front of it (layers {names}): nothing "
                         f"to learn; name layers in keep_probs={{layer name: keep_prob}} to add "
                         f"Concrete dropout on their inputs")
    return init


def _weights_to_buffers(net: nn.Module, layers: Sequence[CoveredLayer]) -> None:
    """The covered layers' own weight and bias are replaced by the objective's means while it
    runs: keep them as buffers so that ``parameters()`` lists only what is learned."""
    for layer in layers:
        sub = net.get_submodule(layer.name)
        for attr in ("weight", "bias"):
            value = getattr(sub, attr, None)
            if isinstance(value, nn.Parameter):
                delattr(sub, attr)
                sub.register_buffer(attr, value.detach().clone())


class ModuleConcreteObjective(nn.Module):
    r"""The per-example negative ELBO of a converted ``torch.nn.Module`` with LEARNED keep_probs,
    :math:`\theta` and :math:`\tau`, through relaxed Bernoulli masks (Concrete dropout).

    .. math::
        -\widehat{\mathrm{ELBO}}(\mathbf{M}, \pi, \theta, \tau) = \frac{N}{B}\sum_{n=1}^B
        -\log p\big(\mathbf{y}_n \mid f(\mathbf{x}_n; \mathbf{W}_n(\tilde{\mathbf{z}}_n))\big)
        + \sum_i \big[\text{Prop. 1}(\mathbf{M}_i, \pi_i, \theta)
        + \mathrm{KL}(\mathcal{N}(\mathbf{m}_{b,i}, \theta^2)\,\|\,\mathcal{N}(0, l^{-2}))\big]

    Parameters: ``means[i]`` (``K x Q`` columns, the paper's convention: the module's weight divided by
    its dropout keep_prob, :meth:`~vi_dropout.conversion.CoveredLayer.means_from_module`) and
    ``biases[i]`` (``None`` for a layer without bias) of every covered layer; one keep_prob logit
    per dropped layer (``keep_prob_logits``, in the order of ``dropped_layers``); ``log_theta``
    and ``log_tau`` (buffers when not learned); and the network's other parameters (BatchNorm,
    ...), which stay point estimates. With the toolkit MLP written as an ``nn.Sequential`` it is
    :class:`~vi_dropout.infer.concrete.ConcreteDropoutObjective` (tested to 1e-12 in float64).

    Args:
        module: the user's network (left unchanged: the objective holds a dropout-free copy).
        keep_probs: initial keep_probs: ``None`` (each dropout layer's own rate), one number for
            every layer with dropout in front, or ``{layer name: keep_prob}`` overriding those
            named (a named layer without dropout in front gets Concrete dropout on its input);
            each in the open interval ``(0, 1)``.
        theta: initial :math:`\theta > 0`; tau: initial :math:`\tau > 0` (Gaussian only).
        prior_length_scale: :math:`l` of the prior :math:`\mathcal{N}(0, l^{-2})`.
        likelihood: ``"gaussian"`` (``N x D`` targets) or ``"categorical"`` (class indices,
            the module outputs logits).
        learn_theta, learn_tau: whether :math:`\theta` and :math:`\tau` are learned.
        layers: the covered layers if already found (e.g. ``find_covered_layers(module,
            keep_probs={...})`` for a module ``torch.fx`` cannot trace); default: traced.
        dtype: dtype of the means and the network copy (default: the module's).
        uncovered_dropout: ``"refuse"`` (default) or ``"disable"``: dropout the family cannot
            cover raises, or is switched off and listed in ``disabled_dropout``
            (:func:`~vi_dropout.conversion.convert_module`; unused when ``layers`` is given).

    Inputs ``x`` are a tensor, a tuple of tensors or a dict of tensors, batch first.

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """

    def __init__(self, module: nn.Module, keep_probs=None, theta=1e-2, tau=1.0,
                 prior_length_scale=1.0, *, likelihood: str = "gaussian",
                 learn_theta: bool = True, learn_tau: bool = True,
                 layers: Sequence[CoveredLayer] | None = None, dtype: torch.dtype | None = None,
                 uncovered_dropout: str = "refuse"):
        super().__init__()
        if layers is None:
            conversion = convert_module(module, uncovered_dropout=uncovered_dropout)
            self.layers = conversion.layers
            self.disabled_dropout: tuple[DisabledDropout, ...] = conversion.disabled
        else:
            self.layers = tuple(layers)
            self.disabled_dropout = ()
        init = _initial_keep_probs(self.layers, keep_probs)
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.likelihood = likelihood
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        if dtype is None:
            dtype = next(iter(module.parameters()), torch.empty(())).dtype
        self.network = dropout_free_copy(module).to(dtype)
        means, biases = [], []
        for layer in self.layers:
            sub = self.network.get_submodule(layer.name)
            means.append(nn.Parameter(layer.means_from_module(sub.weight.detach()).clone()))
            biases.append(nn.Parameter(sub.bias.detach().clone()) if layer.has_bias else None)
        _weights_to_buffers(self.network, self.layers)
        self.means = nn.ParameterList(means)
        self.biases = nn.ParameterList(biases)
        self.dropped_layers = tuple(i for i, kp in enumerate(init) if kp is not None)
        self.keep_prob_logits = nn.ParameterList(
            [nn.Parameter(torch.tensor(math.log(kp) - math.log1p(-kp), dtype=dtype))
             for kp in init if kp is not None])
        for name, value, learn in (("log_theta", check_positive(theta, "theta"), learn_theta),
                                   ("log_tau", check_positive(tau, "tau"),
                                    learn_tau and likelihood == "gaussian")):
            t = torch.tensor(math.log(value), dtype=dtype)
            if learn:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)
        self._layer_shapes: dict[tuple, list] = {}

    # --- the learned quantities ----------------------------------------------------------------
    def keep_prob_logit(self, layer: int) -> torch.Tensor | None:
        """The keep_prob logit of covered layer ``layer`` (``None`` if its input is not dropped)."""
        if layer not in self.dropped_layers:
            return None
        return self.keep_prob_logits[self.dropped_layers.index(layer)]

    @property
    def keep_probs(self) -> dict[str, torch.Tensor]:
        r"""``{layer name: keep_prob}`` for every covered layer (1 where not dropped)."""
        one = self.log_theta.new_ones(())
        return {c.name: one if self.keep_prob_logit(i) is None
                else torch.sigmoid(self.keep_prob_logit(i)) for i, c in enumerate(self.layers)}

    @property
    def theta(self) -> torch.Tensor:
        r""":math:`\theta = \exp(\log\theta)`."""
        return self.log_theta.exp()

    @property
    def tau(self) -> torch.Tensor:
        r""":math:`\tau = \exp(\log\tau)` (unused by the categorical likelihood)."""
        return self.log_tau.exp()

    def learned_layers(self) -> tuple[CoveredLayer, ...]:
        """The covered layers with their keep_prob set to the learned (differentiable) tensor,
        as :func:`~vi_dropout.infer.elbo.kl_to_prior` reads it."""
        kps = self.keep_probs
        return tuple(c if self.keep_prob_logit(i) is None else
                     dataclasses.replace(c, keep_prob=kps[c.name])
                     for i, c in enumerate(self.layers))

    # --- masks, noise and KL -------------------------------------------------------------------
    def sample_masks(self, batch: int, temperature, generator: torch.Generator | None = None,
                     input_shapes: Sequence[Sequence[int]] | None = None) -> list[torch.Tensor]:
        """Relaxed masks on each covered layer's input, ``B x Q`` (linear; ``B x ... x Q``, the
        layer input's shape, when ``input_shapes`` is given: one mask per token) or
        ``B x C x 1 x 1`` (conv), ones where the input is not dropped; drawn in layer order from
        ``generator``."""
        batch = check_positive_int(batch, "batch")
        if input_shapes is not None and len(input_shapes) != len(self.layers):
            raise ValueError(f"input_shapes must have one entry per covered layer "
                             f"({len(self.layers)}), got {len(input_shapes)}")
        masks = []
        for i, layer in enumerate(self.layers):
            shape = mask_shape(layer, batch, None if input_shapes is None else
                               (batch, *tuple(input_shapes[i])[1:]))
            logit = self.keep_prob_logit(i)
            masks.append(self.log_theta.new_ones(shape) if logit is None else
                         relaxed_bernoulli_mask(logit, shape, temperature, generator=generator))
        return masks

    def layer_shapes(self, x: Inputs) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """Per covered layer ``(input shape, output shape)`` for the minibatch ``x`` (the
        network probed on one example, cached per example shape)."""
        x = check_inputs(x, "x", finite=False)
        one = take(x, slice(0, 1))
        key = shapes_key(one)
        if key not in self._layer_shapes:
            self._layer_shapes[key] = covered_layer_shapes(self.network, self.layers, one)
        batch = batch_size_of(x)
        return [((batch, *i[1:]), (batch, *o[1:])) for i, o in self._layer_shapes[key]]

    def sample_noise(self, x: Inputs,
                     generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Standard normals of the local reparameterisation for the minibatch ``x``, one tensor
        shaped like each covered layer's output (``B x out``, ``B x ... x out`` or
        ``B x out x H' x W'``), drawn in layer order from ``generator``."""
        dtype = float_dtype(x, self.log_theta.dtype)
        return [torch.randn(shape, dtype=dtype, generator=generator)
                for _, shape in self.layer_shapes(x)]

    def kl(self) -> torch.Tensor:
        r"""Proposition 1 for every covered weight at the learned keep_prob plus the exact
        Gaussian KL of every bias (:func:`~vi_dropout.infer.elbo.kl_to_prior`)."""
        return kl_to_prior(self.learned_layers(), list(self.means), list(self.biases),
                         theta=self.theta, prior_length_scale=self.prior_length_scale)

    # --- the objective -------------------------------------------------------------------------
    def forward(self, x: Inputs, y: torch.Tensor, *, temperature=0.1,
                masks: Sequence[torch.Tensor] | None = None,
                noise: Sequence[torch.Tensor] | None = None, num_data: int | None = None,
                num_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        r"""The negative ELBO estimate (a scalar), averaged over ``num_samples`` draws.

        .. math::
            \frac{N}{SB}\sum_{s=1}^S\sum_{n=1}^B -\log p(\mathbf{y}_n \mid f(\mathbf{x}_n;
            \mathbf{W}_{sn})) + \mathrm{KL}

        Args:
            x: a minibatch ``B x ...`` the module takes; y: ``B x D`` targets (Gaussian) or
                ``B`` class indices (categorical); ``num_data`` is the full ``N`` (default ``B``).
            temperature: :math:`t > 0` of the relaxed masks (unused when ``masks`` is given).
            masks: optional per-layer masks with ``S * B`` rows (:meth:`sample_masks`), e.g. the
                exact Bernoulli masks to enumerate.
            noise: optional per-layer standard normals with ``S * B`` rows
                (:meth:`sample_noise`); they are scaled by :math:`\theta` here, so zeros give
                the :math:`\theta`-free forward pass.
            num_samples: :math:`S`; the minibatch is repeated ``S`` times, each copy with its own
                masks and noise.
            generator: draws the masks (first, in layer order) and then the noise.
        """
        x = check_inputs(x, "x")
        n = batch_size_of(x) if num_data is None else check_positive_int(num_data, "num_data")
        s = check_positive_int(num_samples, "num_samples")
        if s > 1:
            x = map_inputs(lambda v: v.repeat(s, *([1] * (v.dim() - 1))), x)
            y = y.repeat(s, *([1] * (y.dim() - 1)))
        if masks is None:
            masks = self.sample_masks(
                batch_size_of(x), check_positive(temperature, "temperature"), generator,
                input_shapes=[i for i, _ in self.layer_shapes(x)])
        if noise is None:
            noise = self.sample_noise(x, generator)
        theta = self.theta
        # theta multiplies the noise (theta=1 below) so that it stays differentiable
        out = module_forward(self.network, self.layers, list(self.means), list(self.biases), x,
                             masks=masks, theta=1.0, noise=[theta * e for e in noise])
        if not isinstance(out, torch.Tensor) or out.dim() != 2:
            raise ValueError(f"the module's output has shape "
                             f"{tuple(getattr(out, 'shape', ()))}: the objective needs B x D "
                             f"outputs (B x C logits)")
        return n * negative_log_likelihood(y, out, self.likelihood, self.tau) + self.kl()

    # --- checks and export ---------------------------------------------------------------------
    @torch.no_grad()
    def learned_problem(self, step: int | None = None) -> str | None:
        """``None``, or the message naming the first learned parameter out of bounds: a learned
        keep_prob within ``1e-6`` of 0 or 1 (or its logit not finite), or :math:`\tau` or
        :math:`\theta` not finite or outside ``[1e-10, 1e10]``."""
        when = "" if step is None else f" at step {step}"
        for i in self.dropped_layers:
            name = self.layers[i].name
            logit = float(self.keep_prob_logit(i))
            kp = float(torch.sigmoid(self.keep_prob_logit(i)))
            if not math.isfinite(logit) or not KEEP_PROB_BOUND < kp < 1.0 - KEEP_PROB_BOUND:
                return (f"keep_probs[{name!r}] left the open interval (0, 1){when}: keep_prob = "
                        f"{kp!r} (logit {logit!r}) is within {KEEP_PROB_BOUND} of a bound or not "
                        f"finite")
        for name, log_value in (("tau", self.log_tau), ("theta", self.log_theta)):
            v = float(log_value.exp())
            if not math.isfinite(v) or not TAU_BOUND < v < 1.0 / TAU_BOUND:
                return (f"{name} left ({TAU_BOUND}, {1.0 / TAU_BOUND}){when}: "
                        f"{name} = {v!r}")
        return None

    def check_learned(self, step: int | None = None) -> None:
        """Raise ``ValueError`` with :meth:`learned_problem`'s message, if any."""
        problem = self.learned_problem(step)
        if problem is not None:
            raise ValueError(problem)

    @torch.no_grad()
    def load_into(self, module: nn.Module) -> nn.Module:
        r"""Write the result into the user's ``module``: weight :math:`\hat\pi_i\mathbf{M}_i` in
        the module's layout (:meth:`~vi_dropout.conversion.CoveredLayer.module_weight` at the
        learned keep_prob), bias :math:`\mathbf{m}_{b,i}`, the drop rate :math:`1 - \hat\pi_i`
        of the dropout module in front of each dropped layer, and the point estimates (every
        other parameter and buffer). MC dropout through the module's own dropout layers then
        samples the learned family (without the jitter :math:`\theta`). Returns ``module``."""
        kps = self.keep_probs
        for i, (layer, m, b) in enumerate(zip(self.layers, self.means, self.biases)):
            if self.keep_prob_logit(i) is not None and layer.dropout is None:
                where = (f"its dropout is the functional call {layer.dropout_call!r}: write "
                         f"the learned drop rate 1 - keep_prob = {1 - float(kps[layer.name]):g} "
                         f"into your forward" if layer.dropout_call else
                         "its learned keep_prob cannot be written back")
                raise ValueError(f"layer {layer.name!r} has no dropout module in front of it in "
                                 f"the module: {where}")
            sub = module.get_submodule(layer.name)
            if tuple(sub.weight.shape) != layer.weight_shape:
                raise ValueError(f"module layer {layer.name!r} has weight shape "
                                 f"{tuple(sub.weight.shape)}, expected {layer.weight_shape}")
            kp = float(kps[layer.name])
            sub.weight.copy_(dataclasses.replace(layer, keep_prob=kp).module_weight(m))
            if b is not None:
                sub.bias.copy_(b)
            if layer.dropout is not None and self.keep_prob_logit(i) is not None:
                module.get_submodule(layer.dropout).p = 1.0 - kp
        covered = {f"{c.name}.{a}" for c in self.layers for a in ("weight", "bias")}
        target = {**dict(module.named_parameters()), **dict(module.named_buffers())}
        for name, value in [*self.network.named_parameters(), *self.network.named_buffers()]:
            if name not in covered:
                if name not in target or target[name].shape != value.shape:
                    raise ValueError(f"module has no tensor {name!r} of shape "
                                     f"{tuple(value.shape)}: it is not the module this "
                                     f"objective was built from")
                target[name].copy_(value)
        return module


class ModuleConcreteFit(NamedTuple):
    """What :func:`fit_module_concrete` learned (detached) and its loss trace."""

    keep_probs: dict[str, torch.Tensor]
    theta: torch.Tensor
    tau: torch.Tensor
    losses: torch.Tensor
    objective: ModuleConcreteObjective


def fit_module_concrete(module: nn.Module, x: Inputs, y: torch.Tensor, *, keep_probs=None,
                        theta=1e-2, tau=1.0, prior_length_scale=1.0, likelihood: str = "gaussian",
                        learn_theta: bool = True, learn_tau: bool = True, steps: int = 1000,
                        lr: float = 1e-2, hyper_lr: float | None = None,
                        batch_size: int | None = None, temperature=0.1, num_samples: int = 1,
                        seed: int = 0, layers: Sequence[CoveredLayer] | None = None,
                        uncovered_dropout: str = "refuse") -> ModuleConcreteFit:
    r"""Fit a converted module's means, keep_probs, :math:`\theta` and :math:`\tau` (and its point
    estimates) with Adam on the per-example negative ELBO through relaxed masks
    (:class:`ModuleConcreteObjective`), as :func:`~vi_dropout.infer.concrete.fit_concrete` does for the
    toolkit MLP.

    .. math::
        \min_{\mathbf{M}, \operatorname{logit}\pi, \log\theta, \log\tau}
        \frac{1}{S}\sum_{s=1}^S -\widehat{\mathrm{ELBO}}_s

    Args:
        module: the user's network (unchanged; :meth:`ModuleConcreteObjective.load_into` writes
            the result back).
        x: ``N x ...`` inputs (a tensor, a tuple of tensors or a dict of tensors).
        y: ``N x D`` targets or ``N`` class indices.
        keep_probs: as :class:`ModuleConcreteObjective`, as are ``theta``, ``tau``,
            ``prior_length_scale``, ``likelihood``, ``learn_theta``, ``learn_tau``, ``layers``
            and ``uncovered_dropout``.
        steps: Adam steps; lr: step size of the means and point estimates; hyper_lr: step size
            of the keep_prob logits, :math:`\log\theta` and :math:`\log\tau` (default ``lr``).
        batch_size: rows per step (``None``: all rows; the data term is scaled by ``N / B``).
        temperature: :math:`t > 0` of the masks; num_samples: :math:`S` draws per example.
        seed: seeds the batches and every draw.

    Returns:
        A :class:`ModuleConcreteFit`. Raises ``ValueError`` naming the parameter if a learned
        keep_prob comes within ``1e-6`` of 0 or 1 or :math:`\tau` or :math:`\theta` becomes
        non-finite or leaves ``[1e-10, 1e10]``.

    References:
        Gal, Hron & Kendall (2017), "Concrete Dropout", NeurIPS 2017.
    """
    x = check_inputs(x, "x")
    num = batch_size_of(x)
    if likelihood in LIKELIHOODS:
        check_targets(y, "y", num_rows=num, likelihood=likelihood)
    steps = check_positive_int(steps, "steps")
    lr = check_positive(lr, "lr")
    hyper_lr = lr if hyper_lr is None else check_positive(hyper_lr, "hyper_lr")
    temperature = check_positive(temperature, "temperature")
    num_samples = check_positive_int(num_samples, "num_samples")
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    objective = ModuleConcreteObjective(
        module, keep_probs, theta, tau, prior_length_scale, likelihood=likelihood,
        learn_theta=learn_theta, learn_tau=learn_tau, layers=layers,
        dtype=float_dtype(x, None), uncovered_dropout=uncovered_dropout)
    hyper = [*objective.keep_prob_logits] + [
        t for t in (objective.log_theta, objective.log_tau) if isinstance(t, nn.Parameter)]
    ids = {id(p) for p in hyper}
    rest = [p for p in objective.parameters() if id(p) not in ids]
    opt = torch.optim.Adam([{"params": rest, "lr": lr}, {"params": hyper, "lr": hyper_lr}])
    gen = torch.Generator().manual_seed(int(seed))

    def loss_of(xb, yb, n):
        return objective(xb, yb, temperature=temperature, num_data=n, num_samples=num_samples,
                         generator=gen)

    losses, _ = run_fit_loop(objective, opt, loss_of, x, y, [gen], False, steps=steps,
                             batch_size=batch_size, check_every=1,
                             problems=lambda obj, step: [obj.learned_problem(step)])
    with torch.no_grad():
        return ModuleConcreteFit(
            keep_probs={k: v.detach().clone() for k, v in objective.keep_probs.items()},
            theta=objective.theta.detach().clone(), tau=objective.tau.detach().clone(),
            losses=losses, objective=objective)
