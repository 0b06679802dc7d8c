r"""The MC dropout guide: :class:`~vi_dropout.distributions.DropoutNormal` on every covered weight.

One guide for every model of the toolkit (:class:`~vi_dropout.models.ModuleBNN` of any network,
:class:`~vi_dropout.models.BayesianMLP` for the paper's MLP), in the style of
``pyro.infer.autoguide``: built from the model, it holds the variational means as parameters
and samples every weight and bias site.

Example:
    >>> import torch
    >>> from vi_dropout.models import ModuleBNN
    >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 3))
    >>> guide = DropoutGuide(ModuleBNN(net), theta=1e-2)
    >>> guide.keep_probs
    (0.5,)
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, pyro_method
from torch import nn

from vi_dropout.conversion import CoveredLayer, convert_module
from vi_dropout.distributions import DropoutNormal
from vi_dropout.models.bnn import ModuleBNN
from vi_dropout.validation import check_bool, check_positive

__all__ = ["DropoutGuide"]


def _initial_means(tensors, shapes, name: str, dtype: torch.dtype) -> list[torch.Tensor | None]:
    """``tensors`` (one per covered layer) checked against ``shapes`` and converted to ``dtype``
    as fresh leaf tensors; ``None`` where the shape is ``None`` (a layer without bias)."""
    if isinstance(tensors, torch.Tensor) or len(tensors) != len(shapes):
        got = "a tensor" if isinstance(tensors, torch.Tensor) else f"{len(tensors)}"
        raise ValueError(f"{name} must have {len(shapes)} entries (one per covered layer), got "
                         f"{got}")
    out = []
    for i, (t, shape) in enumerate(zip(tensors, shapes)):
        if shape is None:
            if t is not None:
                raise ValueError(f"{name}[{i}] must be None: the layer has no bias")
            out.append(None)
            continue
        t = torch.as_tensor(t).detach().to(dtype).clone()
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name}[{i}] must have shape {tuple(shape)} to match the model, "
                             f"got {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{name}[{i}] must be finite")
        out.append(t)
    return out


class DropoutGuide(PyroModule):
    r"""The MC dropout family on the sites of a :class:`ModuleBNN`.

    .. math::
        q(\mathbf{W}_i) = \prod_a \big[\pi_i\,\mathcal{N}(\mathbf{m}_{i,a}, \theta^2\mathbf{I})
        + (1-\pi_i)\,\mathcal{N}(\mathbf{0}, \theta^2\mathbf{I})\big], \qquad
        q(\mathbf{b}_i) = \mathcal{N}(\mathbf{m}_{b,i}, \theta^2\mathbf{I}),

    with one column :math:`a` per input unit (input channel of a convolution), :math:`\pi_i` the
    covered layer's ``keep_prob`` (fixed) and :math:`\theta` (``theta``, fixed). Learnable:
    ``weight_locs[i]`` (:math:`\mathbf{M}_i`, ``K x Q``) and ``bias_locs[i]``
    (:math:`\mathbf{m}_{b,i}`; ``None`` for a layer without bias), in the paper's convention: the
    module's weights are :math:`\mathbf{W}'_i = \pi_i\mathbf{M}_i` (``nn.Dropout`` rescales kept
    units by :math:`1/\pi_i`).

    Args:
        model: the :class:`ModuleBNN` whose sites this guide covers.
        theta: :math:`\theta > 0`.
        init_from_module: start from the module's weights
            (:meth:`~vi_dropout.conversion.CoveredLayer.means_from_module`) and biases; otherwise
            from the layers' default initialisation (``reset_parameters``) and zero biases.
        init_weights, init_biases: optional initial means in the paper's convention, one per
            covered layer (``K x Q``; ``out`` or ``None`` for a layer without bias), in place
            of the module's; converted to the module's dtype.

    Calling the guide (with the model's arguments, which it ignores) samples every site and
    returns the draws as a dict.

    Example:
        >>> net = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(2, 3))
        >>> guide = DropoutGuide(ModuleBNN(net), theta=1e-2)
        >>> sorted(guide.median())
        ['1.bias', '1.weight']
    """

    def __init__(self, model: ModuleBNN, theta: float = 1e-2, init_from_module: bool = True,
                 init_weights: Sequence[torch.Tensor] | None = None,
                 init_biases: Sequence[torch.Tensor | None] | None = None):
        super().__init__()
        if not isinstance(model, ModuleBNN):
            raise ValueError(f"model must be a ModuleBNN, got {type(model).__name__}")
        self.layers: tuple[CoveredLayer, ...] = model.layers
        self.theta = check_positive(theta, "theta")
        smallest = math.sqrt(torch.finfo(model.dtype).tiny)
        if self.theta < smallest:
            raise ValueError(f"theta must be at least {smallest:.3g} for a {model.dtype} model "
                             f"(theta^2 would underflow and the ELBO become NaN), got {theta!r}")
        init_from_module = check_bool(init_from_module, "init_from_module")
        net = model._modules["net"]
        # the model's network, not a submodule of the guide: load_into copies its point estimates
        self.__dict__["_model_net"] = net
        weights, biases = [], []
        for layer in self.layers:
            sub = net.get_submodule(layer.name)
            if not init_from_module:
                sub = copy.deepcopy(sub)
                sub.reset_parameters()
            weights.append(nn.Parameter(layer.means_from_module(sub.weight.detach()).clone()))
            if layer.has_bias:
                b = sub.bias.detach().clone()
                biases.append(nn.Parameter(b if init_from_module else torch.zeros_like(b)))
            else:
                biases.append(None)
        dtype = weights[0].dtype
        if init_weights is not None:
            weights = [nn.Parameter(t) for t in _initial_means(
                init_weights, [(c.num_rows, c.num_cols) for c in self.layers], "init_weights",
                dtype)]
        if init_biases is not None:
            shapes = [(c.out_features,) if c.has_bias else None for c in self.layers]
            biases = [None if t is None else nn.Parameter(t)
                      for t in _initial_means(init_biases, shapes, "init_biases", dtype)]
        self.weight_locs = nn.ParameterList(weights)
        self.bias_locs = nn.ParameterList(biases)

    def check_model(self, model: ModuleBNN) -> None:
        """``ValueError`` unless ``model`` is a :class:`ModuleBNN` with this guide's covered
        layers (a guide built for another model would leave the model's sites to its prior)."""
        if not isinstance(model, ModuleBNN):
            raise ValueError(f"model must be a ModuleBNN, got {type(model).__name__}")
        if tuple(model.layers) != tuple(self.layers):
            raise ValueError("guide was built for another model: its covered layers differ "
                             "(build DropoutGuide(model) for this model)")

    def _check_dropout_of(self, module: nn.Module) -> None:
        """``ValueError`` when ``module`` lacks the dropout of a covered layer with keep_prob < 1
        (MC dropout through it would have no spread), read by the conversion's own analysis;
        a module the conversion cannot read without a ``keep_probs`` map is not checked."""
        try:
            found = {c.name: c.keep_prob for c in convert_module(
                module, uncovered_dropout="disable").layers}
        except ValueError:
            return
        for layer in self.layers:
            if layer.keep_prob < 1 and found.get(layer.name, 1.0) == 1.0:
                raise ValueError(
                    f"module has no dropout in front of layer {layer.name!r}, where the model "
                    f"keeps units with keep_prob {layer.keep_prob:g}: MC dropout through it would "
                    f"have no spread. Load into the network WITH its dropout (your own module; "
                    f"for BayesianMLP: model.network_with_dropout())")

    @property
    def keep_probs(self) -> tuple[float, ...]:
        r"""The keep probability :math:`\pi_i` of each covered layer (the model's)."""
        return tuple(layer.keep_prob for layer in self.layers)

    @pyro_method
    def locs(self) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        """The variational means ``([M_i], [m_b_i])``, read so that Pyro sees them as parameters
        (``poutine.trace(param_only=True)`` records them, as ``SVI`` needs)."""
        return list(self.weight_locs), list(self.bias_locs)

    def layer_distributions(self) -> list[tuple[DropoutNormal, dist.Distribution | None]]:
        """``[(q(W_i), q(b_i)), ...]`` (``q(b_i)`` is ``None`` for a layer without bias)."""
        weights, biases = self.locs()
        out = []
        for layer, m, b in zip(self.layers, weights, biases):
            qb = None if b is None else dist.Normal(
                b, torch.as_tensor(self.theta, dtype=b.dtype, device=b.device)).to_event(1)
            out.append((DropoutNormal(m, layer.keep_prob, self.theta), qb))
        return out

    def forward(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        draws = {}
        for layer, (qw, qb) in zip(self.layers, self.layer_distributions()):
            draws[f"{layer.name}.weight"] = pyro.sample(f"{layer.name}.weight", qw)
            if qb is not None:
                draws[f"{layer.name}.bias"] = pyro.sample(f"{layer.name}.bias", qb)
        return draws

    def median(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        r"""The location parameters by site name: :math:`\mathbf{M}_i` (``K x Q``, every unit
        kept; the mean of :math:`q` is :math:`\pi_i\mathbf{M}_i`) and :math:`\mathbf{m}_{b,i}`,
        detached."""
        out = {}
        for layer, m, b in zip(self.layers, self.weight_locs, self.bias_locs):
            out[f"{layer.name}.weight"] = m.detach()
            if b is not None:
                out[f"{layer.name}.bias"] = b.detach()
        return out

    @torch.no_grad()
    def load_into(self, module: nn.Module) -> nn.Module:
        r"""Write the means into the user's ``module`` (with its dropout modules): weight
        :math:`\pi_i\mathbf{M}_i` in the module's layout
        (:meth:`~vi_dropout.conversion.CoveredLayer.module_weight`) and bias
        :math:`\mathbf{m}_{b,i}`, and the model's point estimates (every other parameter and
        buffer, e.g. BatchNorm's, as the model holds them). MC dropout through the module's own
        ``nn.Dropout`` then samples the same predictive distribution as
        ``Predictive(model, guide=self)`` (without the jitter :math:`\theta`), provided the
        model disabled no dropout: dropout listed in ``model.disabled_dropout`` still acts in
        ``module`` (switch it off there, e.g. with
        :func:`~vi_dropout.conversion.without_disabled_dropout`). Returns ``module``."""
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self._check_dropout_of(module)
        for layer, m, b in zip(self.layers, self.weight_locs, self.bias_locs):
            try:
                sub = module.get_submodule(layer.name)
            except AttributeError:
                raise ValueError(f"module has no layer {layer.name!r}: it is not the module this "
                                 f"guide was built for") from None
            if tuple(sub.weight.shape) != layer.weight_shape:
                raise ValueError(f"module layer {layer.name!r} has weight shape "
                                 f"{tuple(sub.weight.shape)}, expected {layer.weight_shape}")
            if (sub.bias is not None) != layer.has_bias:
                raise ValueError(f"module layer {layer.name!r} "
                                 f"{'has' if sub.bias is not None else 'has no'} bias, "
                                 f"unlike the module this guide was built for")
            sub.weight.copy_(layer.module_weight(m.detach()))
            if b is not None:
                sub.bias.copy_(b.detach())
        covered = {f"{c.name}.{a}" for c in self.layers for a in ("weight", "bias")}
        target = dict(module.named_parameters())
        target.update(module.named_buffers())
        net = self.__dict__["_model_net"]
        for name, value in [*net.named_parameters(), *net.named_buffers()]:
            if name in covered:
                continue
            if name not in target or target[name].shape != value.shape:
                raise ValueError(f"module has no tensor {name!r} of shape {tuple(value.shape)}: "
                                 f"it is not the module this guide was built for")
            target[name].copy_(value.detach())
        return module
