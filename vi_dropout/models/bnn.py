r"""Bring your own network: the Pyro model of MC dropout for any ``torch.nn.Module``.

:class:`ModuleBNN` is the model of Gal & Ghahramani for a user's network: every covered weight
(:func:`~vi_dropout.conversion.find_covered_layers`) is a latent matrix in the family's ``K x Q``
column layout with the prior :math:`\mathcal{N}(0, l^{-2})`, every covered bias likewise, and the
likelihood is Gaussian (precision :math:`\tau`, ``N x D`` targets) or categorical (logits):

.. math::
    \mathbf{W}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{b}_i \sim \mathcal{N}(\mathbf{0}, l^{-2}\mathbf{I}), \quad
    \mathbf{y}_n \mid \mathbf{x}_n, \mathbf{W} \sim
    \begin{cases}\mathcal{N}(f(\mathbf{x}_n; \mathbf{W}), \tau^{-1}\mathbf{I}_D) & \text{gaussian}\\
    \operatorname{Categorical}(\operatorname{softmax} f(\mathbf{x}_n; \mathbf{W}))
    & \text{categorical.}\end{cases}

:math:`f` is the user's network with no dropout acting
(:func:`~vi_dropout.conversion.dropout_free_copy`) and the sampled weights in its covered layers.
Parameters of other layers (BatchNorm, LayerNorm, ...) stay point estimates, registered with
``pyro.module``. Dropout the family cannot cover (inside ``nn.LSTM``, ``nn.MultiheadAttention``,
transformer layers, on the output, ...) is refused, or with ``uncovered_dropout="disable"``
switched off and listed (:attr:`ModuleBNN.disabled_dropout`, :meth:`ModuleBNN.summary`).

The model supports vectorised particles: ``Trace_ELBO(num_particles=S,
vectorize_particles=True, max_plate_nesting=1)`` and ``Predictive(..., parallel=True)`` give
weight sites with leading particle dimensions (``S x 1 x K x Q``); the network then runs once per
particle (a loop of ``torch.func.functional_call``, which keeps BatchNorm and any other module
working) and the outputs are stacked to batch shape ``S x B``.

:class:`~vi_dropout.guides.DropoutGuide` is the MC dropout family on those sites; a network
built for this path, the paper's MLP, is :class:`~vi_dropout.models.mlp.BayesianMLP`.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(16, 1))
    >>> model = ModuleBNN(net, prior_length_scale=1e-2, tau=10.0)
    >>> from vi_dropout.guides import DropoutGuide
    >>> guide = DropoutGuide(model, theta=1e-2)
    >>> svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}), pyro.infer.Trace_ELBO())
    >>> loss = svi.step(torch.randn(32, 3), torch.randn(32, 1))
    >>> _ = guide.load_into(net)  # MC dropout with net's own nn.Dropout now samples q
"""

from __future__ import annotations

from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from vi_dropout.conversion import CoveredLayer, DisabledDropout, convert_module, dropout_free_copy
from vi_dropout.forward import covered_input_shapes, run_module
from vi_dropout.inputs import (
    Inputs,
    batch_size,
    check_inputs,
    describe,
    device_of,
    float_dtype,
    shapes_key,
    take,
    tensors,
)
from vi_dropout.likelihoods import LIKELIHOODS
from vi_dropout.validation import (
    check_dtype,
    check_has_rows,
    check_positive,
    check_positive_int,
    check_targets,
)

__all__ = ["ModuleBNN"]


def _dropout_of(layer: CoveredLayer) -> str:
    """The summary's "dropout in front" cell: the dropout found in the call graph, or where an
    explicit ``keep_probs`` map put it."""
    if layer.dropout or layer.dropout_call:
        return layer.dropout or layer.dropout_call
    return "(keep_probs map)" if layer.keep_prob < 1 else "-"


def _as_buffers(net: nn.Module, layers) -> None:
    """Turn the covered layers' weight and bias parameters of ``net`` into buffers: they are
    latent variables of the model (replaced on every call), not point estimates."""
    for layer in layers:
        sub = net.get_submodule(layer.name)
        for attr in ("weight", "bias"):
            value = getattr(sub, attr)
            if isinstance(value, nn.Parameter):
                del sub._parameters[attr]
                sub.register_buffer(attr, value.detach().clone())


class ModuleBNN(PyroModule):
    r"""The Pyro model of MC dropout for a user's ``torch.nn.Module``.

    Sample sites, in the call order of the covered layers:

    * ``f"{name}.weight"``: ``K x Q`` columns (``out x in`` for ``nn.Linear``; for a convolution
      the ``(out/g * prod(kernel)) x in`` matrix of
      :meth:`~vi_dropout.conversion.CoveredLayer.to_columns`, one column per input channel),
      prior :math:`\mathcal{N}(0, l^{-2})`;
    * ``f"{name}.bias"``: ``out``, same prior (layers with a bias only);
    * ``"f"``: the network's output (a deterministic site), ``B x ...``;
    * ``"obs"``: the targets, inside the plate ``"data"`` (dim -1) of size ``num_data`` (the
      likelihood is scaled by ``num_data / B`` for a minibatch).

    The weights are drawn once per call (one draw per minibatch; see
    :class:`~vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO` for one draw per example). With
    vectorised particles (``Trace_ELBO(..., vectorize_particles=True, max_plate_nesting=1)``,
    ``Predictive(..., parallel=True)``) the sites carry leading particle dims (``S x 1 x K x Q``)
    and ``"f"`` / ``"obs"`` have batch shape ``S x B``.

    Args:
        module: the user's network. It is deep-copied with no dropout acting
            (:func:`~vi_dropout.conversion.dropout_free_copy`); the covered layers' weights and
            biases become latent, every other parameter stays a point estimate
            (``pyro.module("net", ...)``). Call ``model.eval()`` for evaluation-mode BatchNorm in
            prediction.
        prior_length_scale: :math:`l > 0`; the prior standard deviation is :math:`1/l`.
        tau: Gaussian likelihood precision :math:`\tau > 0` (ignored for categorical).
        likelihood: ``"gaussian"`` (targets ``N x D``, ``N x 1`` for one output; a 1-D ``y`` is
            refused) or ``"categorical"`` (the network outputs ``N x C`` logits, ``y`` holds ``N``
            class indices).
        keep_probs: optional explicit map ``{layer name: keep_prob}`` (for modules that
            ``torch.fx`` cannot trace); read from the module's dropout otherwise.
        uncovered_dropout: ``"refuse"`` (default: dropout the family cannot cover raises, naming
            it) or ``"disable"`` (it is switched off in the model and listed in
            :attr:`disabled_dropout` and :meth:`summary`; see
            :func:`~vi_dropout.conversion.convert_module`).

    Call with ``(x, y=None, num_data=None)``: ``x`` a minibatch the module takes (a tensor
    ``B x ...``, a tuple of tensors for ``forward(self, x1, x2)``, or a dict of tensors for
    keyword arguments; batch first), ``y`` its targets (``None`` to sample them), ``num_data``
    the full data size ``N`` (default ``B``).

    Attributes:
        layers: the covered layers (:class:`~vi_dropout.conversion.CoveredLayer`).
        disabled_dropout: ``(name, kind, keep_prob, reason)`` of every dropout switched off
            (:class:`~vi_dropout.conversion.DisabledDropout`; empty unless ``"disable"``).
        conversion: the :class:`~vi_dropout.conversion.Conversion` both come from.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(),
        ...                           torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
        >>> model = ModuleBNN(net, prior_length_scale=1.0, tau=4.0)
        >>> [c.name for c in model.layers]
        ['0', '3']
    """

    def __init__(self, module: nn.Module, *, prior_length_scale: float = 1.0, tau: float = 1.0,
                 likelihood: str = "gaussian", keep_probs: Mapping[str, float] | None = None,
                 uncovered_dropout: str = "refuse"):
        super().__init__()
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.prior_length_scale = check_positive(prior_length_scale, "prior_length_scale")
        self.tau = check_positive(tau, "tau")
        self.likelihood = likelihood
        conversion = convert_module(module, keep_probs, uncovered_dropout=uncovered_dropout)
        self.conversion = conversion
        self.layers: tuple[CoveredLayer, ...] = conversion.layers
        self.disabled_dropout: tuple[DisabledDropout, ...] = conversion.disabled
        self.module_type = type(module).__name__
        net = dropout_free_copy(module)
        _as_buffers(net, self.layers)
        self.net = net
        self.__dict__["_shape_cache"] = {}

    # --- helpers -------------------------------------------------------------------------------
    def uncovered_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """``(name, parameter)`` of every parameter that stays a point estimate."""
        return list(self._modules["net"].named_parameters())

    @pyro_method
    def dropout_free_module(self) -> nn.Module:
        """The dropout-free copy of the module (covered weights and biases are buffers that
        every call replaces); reading it here registers its point-estimate parameters with
        ``pyro.module``, as :meth:`forward` does."""
        return self.net

    def covered_input_shapes(self, x: Inputs) -> list[tuple[int, ...]]:
        """Each covered layer's input shape for the inputs ``x``
        (:func:`~vi_dropout.forward.covered_input_shapes` on the dropout-free copy,
        cached per input shapes), for the masks of
        :func:`~vi_dropout.forward.draw_masks`."""
        cache = self.__dict__["_shape_cache"]
        key = shapes_key(x)
        if key not in cache:
            if len(cache) >= 16:
                cache.clear()
            cache[key] = covered_input_shapes(self._modules["net"], self.layers, x)
        return cache[key]

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's network (its covered weights): every floating
        input must have it."""
        return self._modules["net"].get_submodule(self.layers[0].name).weight.dtype

    def check_data(self, x: Inputs, y: torch.Tensor | None = None,
                   num_data: int | None = None) -> int:
        """Check ``x`` (one of the three input forms, finite, one batch size ``B >= 1``, every
        floating input in the network's dtype :attr:`dtype`, never cast) and ``y`` (rows; target
        shape is checked against the output once it is known); returns the data size ``N`` for
        the plate."""
        x = check_inputs(x, "x")
        batch = check_has_rows(batch_size(x), "x", describe(x))
        dtype = self.dtype
        for name, value in tensors(x):
            if value.is_floating_point():
                label = f"x[{name!r}]" if isinstance(x, Mapping) else name
                check_dtype(value, label, dtype, "the module")
                if value.dim() == 1:  # a Linear layer would read it as ONE example
                    raise ValueError(
                        f"{label} must be batch first (N x ...), got a 1-D tensor of shape "
                        f"{tuple(value.shape)}: pass {label}.reshape(-1, 1) for N scalar "
                        f"inputs, or {label}.unsqueeze(0) for one example")
        if y is not None:
            check_targets(y, "y", num_rows=batch, likelihood=self.likelihood)
        if num_data is None:
            return batch
        n = check_positive_int(num_data, "num_data")
        if n < batch:
            raise ValueError(f"num_data is the size N of the whole data set, so at least the "
                             f"minibatch's {batch} rows, got {n}")
        return n

    def check_output(self, out: torch.Tensor, y: torch.Tensor | None,
                     particle_dims: int = 0) -> None:
        """Check ``y`` against the network's output ``out`` (after ``particle_dims`` leading
        particle dims)."""
        core = tuple(out.shape[particle_dims:])
        if self.likelihood == "categorical":
            if len(core) != 2:
                raise ValueError(f"a categorical likelihood needs B x C logits, but the module "
                                 f"outputs shape {core}")
            if y is not None:
                check_targets(y, "y", num_rows=core[0], num_outputs=core[-1],
                              likelihood="categorical")
        elif y is not None and tuple(y.shape) != core:
            raise ValueError(f"y must have the shape of the module's output {core}, got "
                             f"{tuple(y.shape)}")

    def run(self, net: nn.Module, x: Inputs, weights, biases) -> torch.Tensor:
        """The network with the given column-layout weights and biases in its covered layers.

        Weights ``K x Q`` run the network once. Weights with leading particle dims
        ``S x 1 x K x Q`` (vectorised particles; the ``1`` is the data plate's dim -1) or
        ``S x K x Q`` (as ``Predictive(parallel=True)`` conditions them) run it once per particle
        (``torch.func.functional_call`` in a loop, so BatchNorm and any other module work) and
        stack the outputs to ``S x B x ...``; a network with a method
        ``forward_draws(x, weights, biases)`` (:class:`~vi_dropout.models.mlp.MLP`) is called
        once with ``S x K x Q`` weights and ``S x out`` biases instead. ``x`` is a tensor, a tuple or a dict of tensors."""
        lead, particles = self._leading_dims(weights, biases)
        count = 1
        for n in particles:
            count *= n

        def values(index):
            vals = {}
            for layer, w, b in zip(self.layers, weights, biases):
                w = w.expand(*lead, *w.shape[-2:]).reshape(count, *w.shape[-2:])[index]
                vals[f"{layer.name}.weight"] = layer.from_columns(w)
                if layer.has_bias:
                    vals[f"{layer.name}.bias"] = b.expand(*lead, b.shape[-1]).reshape(
                        count, b.shape[-1])[index]
            return vals

        if not particles:
            return run_module(net, x, values(0))
        if callable(getattr(net, "forward_draws", None)):
            # one call for all particles (the paper's MLP: vi_dropout.models.mlp.MLP)
            vals = values(slice(None))
            out = net.forward_draws(x, [vals[f"{c.name}.weight"] for c in self.layers],
                                    [vals[f"{c.name}.bias"] for c in self.layers])
            return out.reshape(*particles, *out.shape[1:])
        out = torch.stack([run_module(net, x, values(i)) for i in range(count)])
        return out.reshape(*particles, *out.shape[1:])

    def particle_shape(self, weights, biases) -> tuple[int, ...]:
        """The particle dims of the weight and bias draws: ``()`` for one draw, ``(S,)`` for
        vectorised particles (draws ``S x 1 x K x Q``, the ``1`` being the data plate's dim -1,
        or ``S x K x Q`` as ``Predictive(parallel=True)`` conditions them)."""
        return self._leading_dims(weights, biases)[1]

    def _leading_dims(self, weights, biases) -> tuple[tuple[int, ...], tuple[int, ...]]:
        leads = []
        for layer, w, b in zip(self.layers, weights, biases):
            if tuple(w.shape[-2:]) != (layer.num_rows, layer.num_cols):
                raise ValueError(f"the weight of layer {layer.name!r} has shape "
                                 f"{tuple(w.shape)}, expected ... x "
                                 f"{(layer.num_rows, layer.num_cols)}")
            leads.append(tuple(w.shape[:-2]))
            if layer.has_bias:
                if b is None or b.dim() < 1 or b.shape[-1] != layer.out_features:
                    raise ValueError(f"the bias of layer {layer.name!r} must have "
                                     f"{layer.out_features} entries, got "
                                     f"{None if b is None else tuple(b.shape)}")
                leads.append(tuple(b.shape[:-1]))
        try:
            lead = tuple(torch.broadcast_shapes(*leads))
        except RuntimeError:
            raise ValueError(f"the weight and bias draws have leading (particle) dims that do "
                             f"not broadcast: {leads}") from None
        particles = lead[:-1] if lead[-1:] == (1,) else lead
        return lead, particles

    def summary(self) -> str:
        """A text table of the covered layers, the dropout switched off and the parameters left
        as point estimates."""
        rows = [f"ModuleBNN of {self.module_type}: prior N(0, 1/l^2) with l = "
                f"{self.prior_length_scale:g}, {self.likelihood} likelihood"
                + (f" (tau = {self.tau:g})" if self.likelihood == "gaussian" else ""),
                "",
                "| covered layer | kind | K x Q | keep_prob | bias | dropout in front |",
                "|---|---|---|---|---|---|"]
        for c in self.layers:
            kind = c.kind if c.groups == 1 else f"{c.kind} (groups={c.groups})"
            rows.append(f"| {c.name} | {kind} | {c.num_rows} x {c.num_cols} | {c.keep_prob:g} | "
                        f"{'yes' if c.has_bias else 'no'} | "
                        f"{_dropout_of(c)} |")
        rows.append("")
        if self.disabled_dropout:
            rows += ["DISABLED dropout (uncovered_dropout='disable'): switched off in this model, "
                     "which is the network WITHOUT it:",
                     "",
                     "| disabled dropout | kind | keep_prob | reason |",
                     "|---|---|---|---|"]
            rows += [f"| {d.name} | {d.kind} | {d.keep_prob:g} | {d.reason} |"
                     for d in self.disabled_dropout]
            rows.append("")
        else:
            rows.append("disabled dropout: none")
        unc = self.uncovered_parameters()
        if unc:
            rows.append("uncovered parameters (point estimates, registered with pyro.module): "
                        + ", ".join(f"{n} {tuple(p.shape)}" for n, p in unc))
        else:
            rows.append("uncovered parameters: none")
        return "\n".join(rows)

    # --- the model -----------------------------------------------------------------------------
    def sample_params(self, dtype: torch.dtype | None = None, device=None):
        """Sample every covered weight (``K x Q``) and bias from the prior, in ``dtype`` (default:
        the network's, :attr:`dtype`); ``(weights, biases)`` with ``None`` for a layer without
        bias."""
        dtype = self.dtype if dtype is None else dtype
        std = 1.0 / self.prior_length_scale
        zero = torch.zeros((), dtype=dtype, device=device)
        weights, biases = [], []
        for layer in self.layers:
            weights.append(pyro.sample(
                f"{layer.name}.weight",
                dist.Normal(zero, std).expand([layer.num_rows, layer.num_cols]).to_event(2)))
            if layer.has_bias:
                biases.append(pyro.sample(
                    f"{layer.name}.bias",
                    dist.Normal(zero, std).expand([layer.out_features]).to_event(1)))
            else:
                biases.append(None)
        return weights, biases

    def forward(self, x: Inputs, y: torch.Tensor | None = None, num_data: int | None = None,
                subsample_size: int | None = None) -> torch.Tensor:
        n = self.check_data(x, y, num_data)
        x = check_inputs(x, "x", finite=False)
        if subsample_size is not None:
            size = check_positive_int(subsample_size, "subsample_size")
            if num_data is not None:
                raise ValueError("pass num_data (x is a minibatch) or subsample_size (x is the "
                                 "whole data set), not both")
            if size > n:
                raise ValueError(f"subsample_size must be at most the {n} rows of x, got {size}")
        net = self.net  # registers the point-estimate parameters (pyro.module)
        buffer = net.get_submodule(self.layers[0].name).weight
        device = device_of(x)
        weights, biases = self.sample_params(float_dtype(x, buffer.dtype), device)
        batch = batch_size(x)
        if subsample_size is None:  # x is the minibatch (of num_data rows in all)
            with pyro.plate("data", n, subsample=torch.arange(batch, device=device), dim=-1):
                return self._likelihood(net, x, y, weights, biases)
        with pyro.plate("data", batch, subsample_size=size, dim=-1) as idx:  # the plate draws
            return self._likelihood(net, take(x, idx), None if y is None else y[idx],
                                    weights, biases)

    def _likelihood(self, net, x, y, weights, biases) -> torch.Tensor:
        """The sites ``f`` and ``obs`` (inside the data plate)."""
        out = self.run(net, x, weights, biases)
        particle_dims = len(self.particle_shape(weights, biases))
        self.check_output(out, y, particle_dims)
        event_dim = out.dim() - 1 - particle_dims
        pyro.deterministic("f", out, event_dim=event_dim)
        if self.likelihood == "gaussian":
            obs_dist = dist.Normal(out, self.tau ** -0.5).to_event(event_dim)
        else:
            obs_dist = dist.Categorical(logits=out)
        return pyro.sample("obs", obs_dist, obs=y)
