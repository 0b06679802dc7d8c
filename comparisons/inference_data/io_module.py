r"""The predictive of a converted network (:class:`~vi_dropout.models.ModuleBNN` and its
:class:`~vi_dropout.guides.DropoutGuide`) as ``DataTree``.

The draws are those of ``pyro.infer.Predictive(model, guide=guide, num_samples=C * S)``: the
latent ``f`` of every draw of the family (``posterior``), the observations the model's likelihood
generates from it (``posterior_predictive``), the pointwise log-likelihood of the observed targets
(``log_likelihood``, for LOO) and the targets (``observed_data``). A Gaussian model goes through
the common layout (:class:`~comparisons.inference_data.base.GaussianDrawsConverter`, precision
``tau``); a categorical one stores logits ``f`` (dims ``chain, draw, obs, class``), label draws
and :math:`\log\operatorname{softmax}(f)_{y_n}`.

Every group's attributes say what the model left out: ``disabled_dropout`` lists the dropout that
``uncovered_dropout="disable"`` switched off (``name (kind, keep_prob k): reason; ...``, or
``"none"``) and ``uncovered_dropout`` the policy; ``covered_layers`` names the covered layers.
``x`` may be a tensor, a tuple of tensors or a dict of tensors (a network with several inputs);
the inputs are stored in ``constant_data`` only for a single ``N x Q`` tensor.

Example:
    >>> from vi_dropout.guides import DropoutGuide
    >>> from vi_dropout.models import ModuleBNN
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.2),
    ...                           torch.nn.Linear(8, 1))
    >>> model = ModuleBNN(net, tau=4.0)
    >>> guide = DropoutGuide(model, theta=1e-2)
    >>> x, y = torch.randn(6, 2), torch.zeros(6, 1)
    >>> idata = from_module_guide(model, guide, x, y, num_samples=50)
    >>> idata.log_likelihood["y"].dims
    ('chain', 'draw', 'obs')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import arviz as az
import numpy as np
import pyro
import torch
import xarray as xr

from comparisons.inference_data.base import (
    OBS_DIM,
    GaussianDrawsConverter,
    datatree,
    split_chains,
)
from vi_dropout.inputs import batch_size, check_inputs
from vi_dropout.validation import check_positive_int, check_targets

__all__ = ["from_module_guide", "model_attrs"]

METHOD = "mc_dropout"


def _draws(model, guide, x, num_draws: int, seed: int, parallel: bool) -> np.ndarray:
    from pyro.infer import Predictive

    pyro.set_rng_seed(seed)
    with torch.no_grad():
        f = Predictive(model, guide=guide, num_samples=num_draws, return_sites=["f"],
                       parallel=parallel)(x)["f"]
    return f.detach().cpu().double().numpy()


def model_attrs(model) -> dict[str, str]:
    """What the converted model covers and what it switched off, as DataTree attributes
    (strings): ``covered_layers``, ``uncovered_dropout`` and ``disabled_dropout``."""
    conversion = model.conversion
    return {"covered_layers": ", ".join(f"{c.name} (keep_prob {c.keep_prob:g})"
                                        for c in model.layers),
            "uncovered_dropout": conversion.uncovered_dropout,
            "disabled_dropout": conversion.describe_disabled()}


def _categorical(f: np.ndarray, y: np.ndarray, seed: int, attrs: Mapping[str, Any]):
    """``C x S x N x K`` logits and ``N`` labels -> DataTree (the common groups)."""
    logp = f - np.logaddexp.reduce(f, axis=-1, keepdims=True)
    loglik = np.take_along_axis(logp, y[None, None, :, None], axis=-1)[..., 0]
    rng = np.random.default_rng(seed)
    cum = np.exp(logp).cumsum(-1)
    labels = (rng.random(cum.shape[:-1] + (1,)) > cum).sum(-1)
    coords = {OBS_DIM: np.arange(y.shape[0]), "class": np.arange(f.shape[-1])}
    dims = {"f": [OBS_DIM, "class"], "y": [OBS_DIM]}

    def ds(data, **kw):
        return az.dict_to_dataset(data, attrs=dict(attrs), coords=coords, dims=dims, **kw)

    return datatree({
        "posterior": ds({"f": f}),
        "posterior_predictive": ds({"y": np.minimum(labels, f.shape[-1] - 1)}),
        "log_likelihood": ds({"y": loglik}),
        "observed_data": ds({"y": y}, sample_dims=[]),
    })


def from_module_guide(model, guide, x, y: torch.Tensor, num_samples: int, *,
                      num_chains: int = 1, seed: int = 0,
                      attrs: Mapping[str, Any] | None = None,
                      parallel: bool = False) -> xr.DataTree:
    """``DataTree`` of a converted network's predictive at ``x`` against targets ``y``.

    Args:
        model: a :class:`~vi_dropout.models.ModuleBNN`.
        guide: its :class:`~vi_dropout.guides.DropoutGuide` (trained or not).
        x: inputs ``N x ...`` the module takes (a tensor, a tuple of tensors or a dict of
            tensors, batch first).
        y: ``N x D`` targets (Gaussian model; a 1-D ``y`` is refused) or ``N`` class indices.
        num_samples: draws in all (``num_chains`` chains of ``num_samples / num_chains``).
        num_chains: chains the draws are split into (independent draws: any split is valid).
        seed: seeds Pyro's draws and the posterior-predictive noise.
        attrs: extra attributes of every group (on top of :func:`model_attrs`).
        parallel: draw with ``Predictive(..., parallel=True)`` (vectorised; other draws than
            the sequential default for the same seed, from the same distribution).
    """
    from vi_dropout.guides import DropoutGuide
    from vi_dropout.models import ModuleBNN

    if not isinstance(model, ModuleBNN):
        raise ValueError(f"model must be a ModuleBNN, got {type(model).__name__}")
    if not isinstance(guide, DropoutGuide):
        raise ValueError(f"guide must be a DropoutGuide, got {type(guide).__name__}")
    num_samples = check_positive_int(num_samples, "num_samples")
    num_chains = check_positive_int(num_chains, "num_chains")
    x = check_inputs(x, "x")
    y = torch.as_tensor(y)
    check_targets(y, "y", num_rows=batch_size(x), likelihood=model.likelihood)
    f = _draws(model, guide, x, num_samples, seed, bool(parallel))  # T x N x D
    f = split_chains(f, num_chains, "num_samples", "from_module_guide")  # C x S x N x D
    extra = {"sampler": "pyro.infer.Predictive", "guide": type(guide).__name__,
             "likelihood": model.likelihood, **model_attrs(model), **(attrs or {})}
    if model.likelihood == "categorical":
        return _categorical(f, y.long().numpy(), seed + 1, {"method": METHOD, **extra})
    x_np = (x.detach().double().numpy() if isinstance(x, torch.Tensor) and x.dim() == 2
            else None)
    return GaussianDrawsConverter(METHOD, f, y.detach().double().numpy(), float(model.tau),
                                  x=x_np, seed=seed + 1, attrs=extra,
                                  caller="from_module_guide").to_datatree()
