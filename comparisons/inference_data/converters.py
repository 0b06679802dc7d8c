r"""ArviZ ``InferenceData`` converters for every method compared here: MC dropout, the Pyro
dropout guide (SVI), NUTS reference posteriors and exact GPs.

One converter per method, in the pattern of ArviZ's ``io_pyro``. Every converter returns the
same layout, so that the same ArviZ calls (``az.loo``, ``az.compare``, ``az.plot_ppc``,
``az.summary``) apply to all methods:

==========================  =====================  ==========================================
group                       variable               dims
==========================  =====================  ==========================================
``posterior``               ``f``                  ``(chain, draw, obs)`` latent function
                                                   :math:`f_s(\mathbf{x}_n)` on the ORIGINAL
                                                   target scale (noise free)
``posterior``               ``layers.{i}.weight``  ``(chain, draw, layer{i}_out, layer{i}_in)``
                                                   (SVI, NUTS; MC dropout if given)
``posterior``               ``layers.{i}.bias``    ``(chain, draw, layer{i}_out)``
``posterior``               ``layers.{i}.mask``    ``(chain, draw, obs, layer{i}_in)`` or
                                                   ``(chain, draw, layer{i}_in)`` (MC dropout)
``posterior_predictive``    ``y``                  ``(chain, draw, obs)`` draws WITH observation
                                                   noise, :math:`y_s = f_s + \varepsilon_s`
``log_likelihood``          ``y``                  ``(chain, draw, obs)`` pointwise
                                                   :math:`\log p(y_n \mid f_s(\mathbf{x}_n))`
``observed_data``           ``y``                  ``(obs,)``
``constant_data``           ``x``                  ``(obs, feature)``
``sample_stats``            ``diverging``, ...     ``(chain, draw)`` (NUTS only)
==========================  =====================  ==========================================

With ``D > 1`` outputs ``f``, ``y`` and the observed ``y`` gain a trailing ``output`` dim; the
log-likelihood is the joint density of the ``D``-vector (as in
:class:`~vi_dropout.models.BayesianMLP`) and keeps dims ``(chain, draw, obs)``. Every group
carries ``attrs["method"]``, the method id of :mod:`comparisons.report.styles`:
``"mc_dropout"``, ``"svi_dropout_guide"``, ``"hmc"`` (with ``attrs["sampler"] = "nuts"``) or
``"exact_gp"``; an ``attrs={"method": ...}`` argument overrides it (e.g. ``"gp_arccos1"`` for
an arc-cosine GP).

Targets. ``y`` is ``N x D``, ``N x 1`` for one output, in every converter (the GP's included):
a 1-D ``(N,)`` is refused with a ``ValueError`` naming the argument, never reshaped
(:func:`vi_dropout.validation.check_targets`).

Scales. ``y`` is always passed on the ORIGINAL target scale. Models are fitted on standardised
targets :math:`(y - \bar y) / s_y`; ``y_mean`` :math:`\bar y` and ``y_std`` :math:`s_y` map
their outputs back, :math:`f^\text{orig} = \bar y + s_y f`. The Gaussian log-likelihood is

.. math::
    \log p(\mathbf{y}_n \mid f_s) = \sum_{d=1}^{D} \Big[-\tfrac12\log(2\pi) + \tfrac12\log\tau_o
    - \tfrac{\tau_o}{2}\big(y_{n,d} - f^\text{orig}_{s,n,d}\big)^2\Big],

with the precision :math:`\tau_o` on the original scale: the ``tau`` argument itself for MC
dropout (the paper's convention, as in :func:`vi_dropout.predict.regression_summary`), and
:math:`\tau / s_y^2` for the Pyro models whose ``tau`` is on the standardised scale (the
Jacobian :math:`-\log s_y` of the standardisation is thereby included). For the exact GP
:math:`1/\tau_o` is the likelihood's noise variance times :math:`s_y^2`.

Which data. The converters evaluate the draws at the ``x, y`` they are given. For ``az.loo`` /
``az.waic`` (leave-one-out over the data the model was fitted to) pass the TRAINING data; for a
held-out comparison pass test data, and ``log_likelihood`` then holds the pointwise test
log-likelihood whose ``logsumexp`` over draws minus :math:`\log S` is the usual test
log predictive density.

Bad input raises ``ValueError`` naming the method: non-finite draws (with their count),
mismatched observation counts, a number of draws not divisible by ``num_chains``.
:func:`checked_loo` refuses too few draws for PSIS-LOO and re-raises ArviZ's Pareto-k warnings
as :class:`LOOReliabilityWarning` naming the method.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> samples = rng.normal(size=(200, 5, 1))          # T x N x D, standardised scale
    >>> idata = from_mc_dropout(samples, y=np.zeros((5, 1)), tau=2.0, x=np.ones((5, 3)))
    >>> idata.log_likelihood["y"].dims
    ('chain', 'draw', 'obs')
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import torch

from vi_dropout.network import Architecture, mlp_forward
from vi_dropout.validation import check_targets

__all__ = [
    "CHAIN_DIM",
    "DRAW_DIM",
    "FEATURE_DIM",
    "OBS_DIM",
    "OUTPUT_DIM",
    "LOOReliabilityWarning",
    "checked_loo",
    "from_exact_gp",
    "from_mc_dropout",
    "from_nuts",
    "from_svi_guide",
    "weight_dims",
]

CHAIN_DIM = "chain"
DRAW_DIM = "draw"
OBS_DIM = "obs"
FEATURE_DIM = "feature"
OUTPUT_DIM = "output"

#: elements (draws x rows x width) per vectorised forward pass when evaluating weight draws
_MAX_FORWARD_ELEMENTS = 1 << 22


class LOOReliabilityWarning(UserWarning):
    """PSIS-LOO of a method is unreliable (Pareto :math:`\\hat k` above ArviZ's threshold)."""


# --------------------------------------------------------------------------------- helpers
def _to_numpy(value: Any, name: str, method: str, dtype=np.float64) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"{method}: {name} must be an array of numbers, got {type(value).__name__}"
        ) from None
    return arr


def _check_finite(arr: np.ndarray, name: str, method: str) -> np.ndarray:
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(
            f"{method}: {name} has {bad} non-finite value(s) (NaN or inf) out of {arr.size}; "
            f"refusing to build InferenceData from them"
        )
    return arr


def _targets(y: Any, method: str, name: str = "y") -> np.ndarray:
    """``y`` as an ``N x D`` float64 array; a 1-D ``(N,)`` is refused, not reshaped
    (:func:`vi_dropout.validation.check_targets`)."""
    arr = _check_finite(_to_numpy(y, name, method), name, method)
    try:
        check_targets(torch.from_numpy(arr), name)
    except ValueError as err:
        raise ValueError(f"{method}: {err}") from None
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{method}: {name} must have shape N x D with N >= 1, got {arr.shape}")
    return arr


def _inputs(x: Any, n_obs: int, method: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = _check_finite(_to_numpy(x, "x", method), "x", method)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{method}: x must have shape N x Q, got {arr.shape}")
    if arr.shape[0] != n_obs:
        raise ValueError(
            f"{method}: x has {arr.shape[0]} observation(s) but y has {n_obs}; they must match"
        )
    return arr


def _scale(y_mean: Any, y_std: Any, method: str) -> tuple[float, float]:
    y_mean, y_std = float(y_mean), float(y_std)
    if not math.isfinite(y_mean):
        raise ValueError(f"{method}: y_mean must be finite, got {y_mean!r}")
    if not (math.isfinite(y_std) and y_std > 0):
        raise ValueError(f"{method}: y_std must be a finite number > 0, got {y_std!r}")
    return y_mean, y_std


def _chains(arr: np.ndarray, num_chains: int, name: str, method: str) -> np.ndarray:
    """Reshape ``S x ...`` draws into ``num_chains x S/num_chains x ...`` (chain-major)."""
    if isinstance(num_chains, bool) or int(num_chains) != num_chains or num_chains < 1:
        raise ValueError(f"{method}: num_chains must be an integer >= 1, got {num_chains!r}")
    num_chains = int(num_chains)
    s = arr.shape[0]
    if s % num_chains:
        raise ValueError(
            f"{method}: {s} draws of {name} cannot be split into {num_chains} chains of equal "
            f"length"
        )
    return arr.reshape(num_chains, s // num_chains, *arr.shape[1:])


def _out_dims(d: int) -> list[str]:
    return [OBS_DIM] if d == 1 else [OBS_DIM, OUTPUT_DIM]


def _squeeze_out(arr: np.ndarray, d: int) -> np.ndarray:
    return arr[..., 0] if d == 1 else arr


def weight_dims(architecture: Architecture) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    """Dims and coords of the weight sites of a :class:`~vi_dropout.models.BayesianMLP`.

    Returns:
        ``(dims, coords)``: ``dims["layers.{i}.weight"] == ["layer{i}_out", "layer{i}_in"]``,
        ``dims["layers.{i}.bias"] == ["layer{i}_out"]`` and integer coords for every such dim.

    Example:
        >>> dims, coords = weight_dims(Architecture((13, 50, 1)))
        >>> dims["layers.1.weight"], len(coords["layer0_out"])
        (['layer1_out', 'layer1_in'], 50)
    """
    dims: dict[str, list[str]] = {}
    coords: dict[str, np.ndarray] = {}
    for i, (out, inp) in enumerate(architecture.layer_shapes):
        dims[f"layers.{i}.weight"] = [f"layer{i}_out", f"layer{i}_in"]
        dims[f"layers.{i}.bias"] = [f"layer{i}_out"]
        coords[f"layer{i}_out"] = np.arange(out)
        coords[f"layer{i}_in"] = np.arange(inp)
    return dims, coords


def _gaussian_loglik(f_orig: np.ndarray, y_orig: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """``C x S x N x D`` means, ``N x D`` targets, precision broadcastable to ``N x D`` ->
    ``C x S x N`` pointwise log densities (summed over ``D``)."""
    log_norm = 0.5 * (np.log(precision) - math.log(2 * math.pi))
    return (log_norm - 0.5 * precision * np.square(y_orig - f_orig)).sum(-1)


def _assemble(
    method: str,
    f_orig: np.ndarray,
    y_orig: np.ndarray,
    precision: float | np.ndarray,
    x: np.ndarray | None,
    seed: int | None,
    posterior_extra: Mapping[str, np.ndarray] | None = None,
    extra_dims: Mapping[str, list[str]] | None = None,
    extra_coords: Mapping[str, np.ndarray] | None = None,
    sample_stats: Mapping[str, np.ndarray] | None = None,
    feature_names: Sequence[str] | None = None,
    constant_extra: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
    posterior_dataset=None,
    sample_stats_dataset=None,
) -> az.InferenceData:
    """Build the common layout from ``C x S x N x D`` latent draws on the original scale."""
    _check_finite(f_orig, "the latent draws f", method)
    n, d = y_orig.shape
    if f_orig.shape[2:] != (n, d):
        raise ValueError(
            f"{method}: draws have {f_orig.shape[2]} observation(s) x {f_orig.shape[3]} "
            f"output(s) but y has shape {n} x {d}; they must match"
        )
    precision = np.asarray(precision, dtype=np.float64)
    if precision.ndim == 1:  # one precision per observation
        precision = precision[:, None]
    precision = np.broadcast_to(precision, (n, d))
    if not np.all(np.isfinite(precision) & (precision > 0)):
        raise ValueError(f"{method}: the noise precision must be finite and > 0")
    rng = np.random.default_rng(seed)
    y_draws = f_orig + rng.standard_normal(f_orig.shape) / np.sqrt(precision)
    loglik = _gaussian_loglik(f_orig, y_orig, precision)
    _check_finite(loglik, "the pointwise log-likelihood", method)

    coords: dict[str, Any] = {OBS_DIM: np.arange(n)}
    if d > 1:
        coords[OUTPUT_DIM] = np.arange(d)
    if x is not None:
        if feature_names is not None:
            names = [str(s) for s in feature_names]
            if len(names) != x.shape[1]:
                raise ValueError(
                    f"{method}: feature_names has {len(names)} entries but x has {x.shape[1]} "
                    f"feature(s)"
                )
            coords[FEATURE_DIM] = np.array(names)
        else:
            coords[FEATURE_DIM] = np.arange(x.shape[1])
    coords.update(extra_coords or {})
    dims = {"f": _out_dims(d), "y": _out_dims(d), "x": [OBS_DIM, FEATURE_DIM]}
    dims.update(extra_dims or {})
    group_attrs = {"method": method}
    for key, value in (attrs or {}).items():
        if value is not None:
            group_attrs[key] = value

    def ds(data, default_dims=None, dims_override=None):
        return az.dict_to_dataset(
            data, attrs=dict(group_attrs), coords=coords,
            dims=dims if dims_override is None else dims_override, default_dims=default_dims,
        )

    posterior = {"f": _squeeze_out(f_orig, d)}
    if posterior_dataset is not None:
        posterior_ds = posterior_dataset.assign(ds(posterior)).assign_attrs(group_attrs)
    else:
        posterior.update(posterior_extra or {})
        posterior_ds = ds(posterior)
    groups = {
        "posterior": posterior_ds,
        "posterior_predictive": ds({"y": _squeeze_out(y_draws, d)}),
        "log_likelihood": ds({"y": loglik}, dims_override={"y": [OBS_DIM]}),
        "observed_data": ds({"y": _squeeze_out(y_orig, d)}, default_dims=[]),
    }
    constant = {} if x is None else {"x": x}
    constant.update(constant_extra or {})
    if constant:
        groups["constant_data"] = ds(constant, default_dims=[])
    if sample_stats_dataset is not None:
        stats_ds = sample_stats_dataset
        if sample_stats:
            stats_ds = stats_ds.assign(ds(dict(sample_stats), dims_override={}))
        groups["sample_stats"] = stats_ds.assign_attrs(group_attrs)
    elif sample_stats:
        groups["sample_stats"] = ds(dict(sample_stats), dims_override={})
    return az.InferenceData(**groups)


def _forward_draws(x: torch.Tensor, weights: Sequence[torch.Tensor], biases: Sequence[torch.Tensor],
                   activation: str) -> np.ndarray:
    """``S x N x D`` outputs of ``S`` weight draws (``S x out x in`` per layer), chunked."""
    s, n = weights[0].shape[0], x.shape[0]
    width = max(w.shape[-2] for w in weights)
    chunk = max(1, _MAX_FORWARD_ELEMENTS // max(1, n * width))
    out = []
    with torch.no_grad():
        for s0 in range(0, s, chunk):
            out.append(mlp_forward(x, [w[s0:s0 + chunk] for w in weights],
                                   [b[s0:s0 + chunk] for b in biases], activation).cpu().numpy())
    return np.concatenate(out, 0).astype(np.float64)


def _check_gaussian_model(model, method: str):
    from vi_dropout.models import BayesianMLP

    if not isinstance(model, BayesianMLP):
        raise ValueError(f"{method}: model must be a vi_dropout BayesianMLP, got {type(model).__name__}")
    if model.likelihood != "gaussian":
        raise ValueError(
            f"{method}: only the Gaussian likelihood is supported, the model has "
            f"{model.likelihood!r}"
        )
    return model


def _weight_draws(samples: Mapping[str, Any], architecture: Architecture, lead: tuple[int, ...],
                  method: str) -> dict[str, np.ndarray]:
    """Pick and check the ``layers.{i}.weight|bias`` draws, reshaped to ``lead + event``."""
    out = {}
    for i, (o, q) in enumerate(architecture.layer_shapes):
        for name, event in ((f"layers.{i}.weight", (o, q)), (f"layers.{i}.bias", (o,))):
            if name not in samples:
                raise ValueError(f"{method}: the draws lack the site {name!r} (have {sorted(samples)})")
            arr = _to_numpy(samples[name], name, method)
            if arr.size != math.prod(lead) * math.prod(event):
                raise ValueError(
                    f"{method}: site {name!r} has shape {arr.shape}, expected {lead + event} "
                    f"(plus singleton plate dims)"
                )
            out[name] = _check_finite(arr.reshape(lead + event), f"draws of {name}", method)
    return out


def _latent_from_weights(draws: Mapping[str, np.ndarray], architecture: Architecture,
                         x: np.ndarray, n_chains: int, n_draws: int) -> np.ndarray:
    """``C x S x N x D`` network outputs (model scale) of chain-grouped weight draws."""
    xt = torch.as_tensor(x, dtype=torch.float64)
    ws = [torch.as_tensor(draws[f"layers.{i}.weight"]).reshape(n_chains * n_draws, o, q)
          for i, (o, q) in enumerate(architecture.layer_shapes)]
    bs = [torch.as_tensor(draws[f"layers.{i}.bias"]).reshape(n_chains * n_draws, o)
          for i, (o, q) in enumerate(architecture.layer_shapes)]
    f = _forward_draws(xt, ws, bs, architecture.activation)
    return f.reshape(n_chains, n_draws, *f.shape[1:])


# ------------------------------------------------------------------------------ converters
def from_mc_dropout(
    samples: Any,
    y: Any,
    tau: float,
    x: Any = None,
    *,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    num_chains: int = 1,
    weights: Sequence[Any] | None = None,
    biases: Sequence[Any] | None = None,
    masks: Sequence[Any] | None = None,
    seed: int | None = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    r"""MC dropout forward passes as ``InferenceData``.

    The ``T`` stochastic passes :math:`\hat{\mathbf{y}}_t` (e.g. from
    :func:`vi_dropout.predict.mc_predict`, standardised scale) are the latent draws
    :math:`f_t = \bar y + s_y \hat{\mathbf{y}}_t` (``posterior["f"]``); ``posterior_predictive["y"]``
    adds Gaussian noise of precision ``tau``; ``log_likelihood["y"]`` is

    .. math::
        \log p(y_n \mid f_t) = -\tfrac12\log 2\pi + \tfrac12\log\tau
        - \tfrac{\tau}{2}\,(y_n - f_{t,n})^2 \quad (\text{summed over outputs}),

    so that :math:`\operatorname{logsumexp}_t(\cdot) - \log T` is exactly the per-point
    log-likelihood of :func:`~vi_dropout.predict.regression_summary`. MC dropout draws are
    independent, so splitting them into ``num_chains`` chains is arbitrary (R-hat is then a
    sanity check only).

    Args:
        samples: ``T x N x D`` (or ``T x N``) passes on the standardised scale.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output; a 1-D ``y`` is
            refused).
        tau: precision :math:`\tau` on the ORIGINAL scale (the paper's grid).
        x: optional inputs ``N x Q`` (stored in ``constant_data``).
        y_mean, y_std: the training-target standardisation :math:`\bar y, s_y`.
        num_chains: chains to split the ``T`` draws into (``T`` must be divisible).
        weights, biases: optional per-layer draws, ``T x out x in`` / ``T x out`` (the weights
            :math:`\mathbf{W}_i \operatorname{diag}(\mathbf{z})` of each pass when one mask is
            shared by all examples), stored as ``layers.{i}.weight`` / ``layers.{i}.bias``.
        masks: optional per-layer masks, ``T x N x in`` (per example, dims ``obs, layer{i}_in``)
            or ``T x in`` (shared), stored as ``layers.{i}.mask``.
        seed: seed of the observation noise in ``posterior_predictive``.
        feature_names: optional names for the ``feature`` coordinate.
        attrs: extra attributes for every group (e.g. ``keep_prob``, ``dataset``).

    Returns:
        ``az.InferenceData`` with ``posterior``, ``posterior_predictive``, ``log_likelihood``,
        ``observed_data`` and (with ``x``) ``constant_data``.

    Example:
        >>> import numpy as np
        >>> idata = from_mc_dropout(np.zeros((100, 3, 1)), np.zeros((3, 1)), tau=1.0,
        ...                         num_chains=4)
        >>> idata.posterior["f"].shape
        (4, 25, 3)
    """
    method = "from_mc_dropout"
    arr = _check_finite(_to_numpy(samples, "samples", method), "samples", method)
    y_orig = _targets(y, method)
    n, d = y_orig.shape
    if arr.ndim == 2 and d == 1:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ValueError(f"{method}: samples must have shape T x N x D or T x N, got {arr.shape}")
    if arr.shape[1:] != (n, d):
        raise ValueError(
            f"{method}: samples have {arr.shape[1]} observation(s) x {arr.shape[2]} output(s) "
            f"but y has shape {n} x {d}; they must match"
        )
    tau_f = float(tau)
    if not (math.isfinite(tau_f) and tau_f > 0):
        raise ValueError(f"{method}: tau must be a finite number > 0, got {tau!r}")
    y_mean, y_std = _scale(y_mean, y_std, method)
    x_arr = _inputs(x, n, method)
    f_orig = _chains(y_mean + y_std * arr, num_chains, "samples", method)
    n_chains, n_draws = f_orig.shape[:2]

    extra, extra_dims, extra_coords = {}, {}, {}
    for kind, seq in (("weight", weights), ("bias", biases), ("mask", masks)):
        if seq is None:
            continue
        for i, value in enumerate(seq):
            name = f"layers.{i}.{kind}"
            a = _check_finite(_to_numpy(value, name, method), name, method)
            if a.shape[0] != arr.shape[0]:
                raise ValueError(
                    f"{method}: {name} has {a.shape[0]} draws but samples have {arr.shape[0]}"
                )
            if kind == "weight":
                if a.ndim != 3:
                    raise ValueError(f"{method}: {name} must be T x out x in, got {a.shape}")
                dims_i = [f"layer{i}_out", f"layer{i}_in"]
            elif kind == "bias":
                if a.ndim != 2:
                    raise ValueError(f"{method}: {name} must be T x out, got {a.shape}")
                dims_i = [f"layer{i}_out"]
            elif a.ndim == 3:
                if a.shape[1] != n:
                    raise ValueError(
                        f"{method}: {name} has {a.shape[1]} observation(s) but y has {n}"
                    )
                dims_i = [OBS_DIM, f"layer{i}_in"]
            elif a.ndim == 2:
                dims_i = [f"layer{i}_in"]
            else:
                raise ValueError(f"{method}: {name} must be T x N x in or T x in, got {a.shape}")
            for dim, size in zip(dims_i, a.shape[1:]):
                if dim in extra_coords and len(extra_coords[dim]) != size:
                    raise ValueError(f"{method}: {name} disagrees with another layer on {dim}")
                extra_coords[dim] = np.arange(size)
            extra[name] = _chains(a, num_chains, name, method)
            extra_dims[name] = dims_i
    return _assemble(
        "mc_dropout", f_orig, y_orig, tau_f, x_arr, seed,
        posterior_extra=extra, extra_dims=extra_dims, extra_coords=extra_coords,
        feature_names=feature_names,
        attrs={"tau": tau_f, "y_mean": y_mean, "y_std": y_std, "num_mc_samples": arr.shape[0],
               "draws_independent": 1, **(attrs or {})},
    )


def from_svi_guide(
    model,
    guide,
    x: Any,
    y: Any,
    num_samples: int,
    *,
    num_chains: int = 1,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    r"""Draws of a fitted Pyro guide (e.g. :class:`~vi_dropout.guides.DropoutGuide`) over a
    :class:`~vi_dropout.models.BayesianMLP` as ``InferenceData``.

    ``num_samples`` weight draws :math:`\mathbf{W}_s \sim q` are taken with
    ``pyro.infer.Predictive(guide, parallel=True)`` (under ``torch.random.fork_rng`` seeded by
    ``seed``, so the global RNG is left untouched) and stored as ``layers.{i}.weight``
    (dims ``layer{i}_out, layer{i}_in``) and ``layers.{i}.bias``; the network outputs
    :math:`f_s = \bar y + s_y f^{\mathbf{W}_s}(\mathbf{x})` are ``posterior["f"]`` and the
    log-likelihood uses the model's precision on the original scale, :math:`\tau / s_y^2`.

    Args:
        model: the :class:`BayesianMLP` (architecture, ``tau``; Gaussian likelihood only).
        guide: a callable guide whose sample sites include every ``layers.{i}.weight|bias``.
        x: inputs ``N x Q`` (torch or numpy), on the scale the model was fitted on.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output).
        num_samples: number of draws ``S`` (divisible by ``num_chains``).
        num_chains: chains to split the independent draws into.
        y_mean, y_std: the training-target standardisation.
        seed: seeds the guide draws and the observation noise.
        feature_names, attrs: as in :func:`from_mc_dropout`.

    Example:
        >>> from vi_dropout import Architecture, BayesianMLP, DropoutGuide
        >>> model = BayesianMLP(Architecture((2, 8, 1)), prior_length_scale=1.0, tau=10.0)
        >>> guide = DropoutGuide(model, keep_prob=0.9, scale=1e-2)
        >>> x = torch.randn(6, 2, dtype=torch.float64)
        >>> idata = from_svi_guide(model, guide, x, torch.zeros(6, 1), num_samples=100)
        >>> idata.posterior["layers.0.weight"].dims
        ('chain', 'draw', 'layer0_out', 'layer0_in')
    """
    method = "from_svi_guide"
    model = _check_gaussian_model(model, method)
    arch = model.architecture
    y_orig = _targets(y, method)
    n, d = y_orig.shape
    x_arr = _inputs(x, n, method)
    if x_arr is None:
        raise ValueError(f"{method}: x is required")
    if x_arr.shape[1] != arch.in_features or d != arch.out_features:
        raise ValueError(
            f"{method}: the model maps {arch.in_features} -> {arch.out_features} but x has "
            f"{x_arr.shape[1]} feature(s) and y {d} output(s)"
        )
    if isinstance(num_samples, bool) or int(num_samples) != num_samples or num_samples < 1:
        raise ValueError(f"{method}: num_samples must be an integer >= 1, got {num_samples!r}")
    num_samples = int(num_samples)
    y_mean, y_std = _scale(y_mean, y_std, method)
    _chains(np.empty((num_samples, 0)), num_chains, "the guide draws", method)
    sites = [f"layers.{i}.{k}" for i in range(arch.num_layers) for k in ("weight", "bias")]
    xt = torch.as_tensor(x_arr, dtype=torch.float64)
    from pyro.infer import Predictive

    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        raw = Predictive(guide, num_samples=num_samples, parallel=True, return_sites=sites)(xt)
    n_draws = num_samples // int(num_chains)
    draws = _weight_draws(raw, arch, (int(num_chains), n_draws), method)
    f = _latent_from_weights(draws, arch, x_arr, int(num_chains), n_draws)
    dims, coords = weight_dims(arch)
    keep = getattr(guide, "keep_probs", None)
    scale = getattr(guide, "scale", None)
    return _assemble(
        "svi_dropout_guide", y_mean + y_std * f, y_orig, model.tau / y_std**2, x_arr, seed,
        posterior_extra=draws, extra_dims=dims, extra_coords=coords, feature_names=feature_names,
        attrs={"tau_model_scale": model.tau, "prior_length_scale": model.prior_length_scale,
               "y_mean": y_mean, "y_std": y_std, "activation": arch.activation,
               "widths": np.asarray(arch.widths), "guide": type(guide).__name__,
               "keep_probs": None if keep is None else np.asarray(keep, dtype=np.float64),
               "theta": scale, "draws_independent": 1, **(attrs or {})},
    )


def _model_from_settings(settings: Mapping[str, Any]):
    from vi_dropout.models import BayesianMLP

    arch = Architecture(tuple(settings["widths"]), settings["activation"])
    return BayesianMLP(arch, prior_length_scale=settings["prior_length_scale"], tau=settings["tau"])


def from_nuts(
    mcmc,
    model=None,
    x: Any = None,
    y: Any = None,
    *,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    r"""NUTS draws of a :class:`~vi_dropout.models.BayesianMLP` as ``InferenceData``.

    Accepts either a finished ``pyro.infer.MCMC`` whose kernel ran on the ``BayesianMLP``
    (then ``az.from_pyro`` supplies the posterior and ``sample_stats["diverging"]``, and a
    :class:`~comparisons.reference.nuts.RecordingNUTS` kernel adds per-draw ``step_size``,
    ``tree_depth``, ``n_steps``, ``energy``, ``lp`` and ``acceptance_rate``), or the
    :class:`~comparisons.reference.nuts.NUTSResult` of
    :func:`~comparisons.reference.nuts.run_nuts` (chains run in separate processes; its
    ``samples`` and ``sample_stats`` are ``chain x draw x ...`` arrays). The weight draws keep
    their Pyro site names with dims ``layer{i}_out, layer{i}_in``; ``f``, ``y`` and the
    log-likelihood (model precision :math:`\tau / s_y^2` on the original scale) are added as
    for the other methods.

    Args:
        mcmc: ``pyro.infer.MCMC`` or ``NUTSResult`` (anything with ``samples`` and
            ``sample_stats`` mappings and ``settings``).
        model: the ``BayesianMLP``; default: the MCMC kernel's model or the one described by
            ``NUTSResult.settings``.
        x: inputs ``N x Q`` on the model's scale; default: ``NUTSResult.x``.
        y: targets on the ORIGINAL scale, ``N x D`` (``N x 1`` for one output); default:
            ``y_mean + y_std * NUTSResult.y``.
        y_mean, y_std: the training-target standardisation.
        seed: seed of the observation noise in ``posterior_predictive``.
        feature_names, attrs: as in :func:`from_mc_dropout`.

    Example:
        >>> result = run_nuts(x, y, hidden=(5,), num_chains=2)  # doctest: +SKIP
        >>> idata = from_nuts(result)  # doctest: +SKIP
        >>> idata.sample_stats["tree_depth"].dims  # doctest: +SKIP
        ('chain', 'draw')
    """
    method = "from_nuts"
    from pyro.infer import MCMC

    posterior_ds = stats_ds = None
    stats: dict[str, np.ndarray] = {}
    run_attrs: dict[str, Any] = {}
    if isinstance(mcmc, MCMC):
        if mcmc._samples is None:  # pyro keeps no public "has run" flag
            raise ValueError(f"{method}: the MCMC object has not been run")
        model = model if model is not None else mcmc.kernel.model
        model = _check_gaussian_model(model, method)
        raw = mcmc.get_samples(group_by_chain=True)
        n_chains, n_draws = next(iter(raw.values())).shape[:2]
        draws = _weight_draws(raw, model.architecture, (n_chains, n_draws), method)
        dims, coords = weight_dims(model.architecture)
        if getattr(mcmc.kernel, "model", None) is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                pyro_idata = az.from_pyro(mcmc, log_likelihood=False, coords=coords, dims=dims)
            posterior_ds = pyro_idata.posterior
            stats_ds = pyro_idata.sample_stats
        else:
            div = mcmc.diagnostics()["divergences"]
            diverging = np.zeros((n_chains, n_draws), dtype=bool)
            for c, key in enumerate(sorted(div)):
                diverging[c, div[key]] = True
            stats["diverging"] = diverging
        collect = getattr(mcmc.kernel, "collected_sample_stats", None)
        if callable(collect):
            extra = collect(n_draws, n_chains)
            if extra:
                if stats_ds is not None:  # az.from_pyro already has it
                    extra.pop("diverging", None)
                stats.update(extra)
        if x is None or y is None:
            raise ValueError(f"{method}: pass x and y (the data to evaluate the draws at)")
    else:
        samples = getattr(mcmc, "samples", None)
        if not isinstance(samples, Mapping):
            raise ValueError(
                f"{method}: expected a pyro.infer.MCMC or a NUTSResult, got {type(mcmc).__name__}"
            )
        settings = getattr(mcmc, "settings", {})
        model = _check_gaussian_model(
            model if model is not None else _model_from_settings(settings), method)
        first = _to_numpy(next(iter(samples.values())), "samples", method)
        n_chains, n_draws = first.shape[:2]
        draws = _weight_draws(samples, model.architecture, (n_chains, n_draws), method)
        dims, coords = weight_dims(model.architecture)
        for key, value in (getattr(mcmc, "sample_stats", None) or {}).items():
            arr = np.asarray(value)
            if arr.shape[:2] != (n_chains, n_draws):
                raise ValueError(
                    f"{method}: sample stat {key!r} has shape {arr.shape}, expected "
                    f"({n_chains}, {n_draws})"
                )
            if arr.dtype != bool:
                _check_finite(arr.astype(np.float64), f"sample stat {key}", method)
            stats[key] = arr
        if x is None:
            x = getattr(mcmc, "x", None)
        if y is None and getattr(mcmc, "y", None) is not None:
            y = float(y_mean) + float(y_std) * np.asarray(mcmc.y)
        if x is None or y is None:
            raise ValueError(f"{method}: pass x and y (the data to evaluate the draws at)")
        for key in ("wall_time_s", "draws_per_second", "num_warmup", "seed"):
            value = getattr(mcmc, key, None)
            if value is None:
                value = settings.get(key)
            if value is not None:
                run_attrs[key] = value
    arch = model.architecture
    y_orig = _targets(y, method)
    n, d = y_orig.shape
    x_arr = _inputs(x, n, method)
    if x_arr.shape[1] != arch.in_features or d != arch.out_features:
        raise ValueError(
            f"{method}: the model maps {arch.in_features} -> {arch.out_features} but x has "
            f"{x_arr.shape[1]} feature(s) and y {d} output(s)"
        )
    y_mean, y_std = _scale(y_mean, y_std, method)
    f = _latent_from_weights(draws, arch, x_arr, n_chains, n_draws)
    return _assemble(
        "hmc", y_mean + y_std * f, y_orig, model.tau / y_std**2, x_arr, seed,
        posterior_extra=draws, extra_dims=dims, extra_coords=coords, sample_stats=stats,
        feature_names=feature_names, posterior_dataset=posterior_ds,
        sample_stats_dataset=stats_ds,
        attrs={"sampler": "nuts", "tau_model_scale": model.tau,
               "prior_length_scale": model.prior_length_scale,
               "y_mean": y_mean, "y_std": y_std, "activation": arch.activation,
               "widths": np.asarray(arch.widths), **run_attrs, **(attrs or {})},
    )


def from_exact_gp(
    model,
    likelihood,
    x_test: Any,
    y_test: Any,
    num_draws: int,
    *,
    num_chains: int = 1,
    y_mean: float = 0.0,
    y_std: float = 1.0,
    seed: int = 0,
    feature_names: Sequence[str] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> az.InferenceData:
    r"""Predictive draws of an exact GPyTorch GP (e.g.
    :class:`~comparisons.gp.models.ExactGPModel`) as ``InferenceData``.

    With the latent posterior marginals :math:`f_n \sim \mathcal{N}(\mu_n, v_n)` and the
    likelihood's noise variance :math:`\sigma_n^2` at each test input (standardised scale),
    ``num_draws`` latent draws are taken **independently per point from the marginals** (enough
    for every pointwise quantity: log-likelihood, LOO, PIT, intervals; not for joint functionals
    across points), mapped to the original scale, and

    .. math::
        \log p(y_n \mid f_{s,n}) = \log\mathcal{N}\big(y_n;\ \bar y + s_y f_{s,n},\
        s_y^2\sigma_n^2\big),

    whose :math:`\operatorname{logsumexp}_s - \log S` converges to the exact Gaussian log
    predictive density :math:`\log\mathcal{N}(y_n; \bar y + s_y\mu_n, s_y^2(v_n + \sigma_n^2))`
    (see :func:`~comparisons.metrics.gaussian.gaussian_log_likelihood`). The exact moments are stored in
    ``constant_data`` as ``f_mean``, ``f_var`` and ``noise_var`` (original scale, dims ``obs``).

    Args:
        model: a fitted single-output ``gpytorch.models.ExactGP`` (no batch dims).
        likelihood: its Gaussian likelihood.
        x_test: inputs ``M x Q`` on the GP's (standardised) scale.
        y_test: targets on the ORIGINAL scale, ``M x 1`` (a 1-D ``y_test`` is refused, as
            everywhere).
        num_draws: number of draws ``S`` (divisible by ``num_chains``).
        num_chains: chains to split the independent draws into.
        y_mean, y_std: the training-target standardisation.
        seed: seed of the latent and the observation-noise draws.
        feature_names, attrs: as in :func:`from_mc_dropout`; ``attrs["method"]`` (default
            ``"exact_gp"``) names the GP, e.g. ``"gp_arccos1"``.

    Example:
        >>> import gpytorch
        >>> from comparisons.gp.models import ExactGPModel, make_kernel
        >>> x, xs = torch.randn(10, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
        >>> lik = gpytorch.likelihoods.GaussianLikelihood().double()
        >>> gp = ExactGPModel(x, torch.randn(10, dtype=torch.float64), lik,
        ...                   make_kernel("arccos1", 2)).double()
        >>> from_exact_gp(gp, lik, xs, torch.zeros(6, 1), num_draws=200).log_likelihood["y"].shape
        (1, 200, 6)
    """
    import gpytorch

    method = "from_exact_gp"
    y_orig = _targets(y_test, method, "y_test")
    m, d = y_orig.shape
    if d != 1:
        raise ValueError(f"{method}: only single-output GPs are supported, y_test has {d} outputs")
    x_arr = _inputs(x_test, m, method)
    if x_arr is None:
        raise ValueError(f"{method}: x_test is required")
    if isinstance(num_draws, bool) or int(num_draws) != num_draws or num_draws < 1:
        raise ValueError(f"{method}: num_draws must be an integer >= 1, got {num_draws!r}")
    num_draws = int(num_draws)
    y_mean, y_std = _scale(y_mean, y_std, method)
    _chains(np.empty((num_draws, 0)), num_chains, "the GP draws", method)
    train_x = model.train_inputs[0]
    xt = torch.as_tensor(x_arr, dtype=train_x.dtype, device=train_x.device)
    model.eval()
    likelihood.eval()
    with torch.no_grad():
        latent = model(xt)
        f_mean = latent.mean.detach().cpu().numpy().astype(np.float64)
        f_var = latent.variance.detach().cpu().numpy().astype(np.float64)
        if isinstance(likelihood, gpytorch.likelihoods.GaussianLikelihood):
            noise = likelihood.noise.detach().cpu().numpy().astype(np.float64)
            noise = np.broadcast_to(noise.reshape(-1), (m,)).copy()
        else:
            noise = (likelihood(latent).variance.detach().cpu().numpy().astype(np.float64)
                     - f_var)
    if f_mean.shape != (m,):
        raise ValueError(
            f"{method}: the GP returned predictions of shape {f_mean.shape} for {m} test points "
            f"(batched or multi-output GPs are not supported)"
        )
    for arr, name in ((f_mean, "the predictive mean"), (f_var, "the predictive variance"),
                      (noise, "the noise variance")):
        _check_finite(arr, name, method)
    if np.any(noise <= 0):
        raise ValueError(f"{method}: the noise variance must be > 0 at every test point")
    f_var = np.clip(f_var, 0.0, None)
    rng = np.random.default_rng(seed)
    eps = rng.standard_normal((num_draws, m))
    f = y_mean + y_std * (f_mean + np.sqrt(f_var) * eps)
    f_orig = _chains(f[..., None], num_chains, "the GP draws", method)
    noise_seed = int(rng.integers(0, 2**63 - 1))
    return _assemble(
        "exact_gp", f_orig, y_orig, 1.0 / (y_std**2 * noise), x_arr, noise_seed,
        feature_names=feature_names,
        constant_extra={"f_mean": y_mean + y_std * f_mean, "f_var": y_std**2 * f_var,
                        "noise_var": y_std**2 * noise},
        attrs={"y_mean": y_mean, "y_std": y_std, "draws": "independent per-point marginals",
               "draws_independent": 1, **(attrs or {})},
    )


# ------------------------------------------------------------------------------------- LOO
def checked_loo(idata: az.InferenceData, *, min_draws: int = 100, var_name: str | None = None,
                pointwise: bool = True, scale: str | None = None):
    r"""``az.loo`` that refuses too few draws and names the method in its warnings.

    PSIS fits a generalised Pareto to the largest :math:`M = \min(0.2S, 3\sqrt{S})` importance
    ratios; with few draws that fit (and its :math:`\hat k` diagnostic, whose threshold
    :math:`\min(1 - 1/\log_{10} S, 0.7)` ArviZ uses) is meaningless, so fewer than ``min_draws``
    draws (chains x draws, default 100) raise ``ValueError``. ArviZ's Pareto-:math:`\hat k`
    warning is re-issued as :class:`LOOReliabilityWarning` with the method and the number of
    points above the threshold. Draws of the converters here that are independent by
    construction (``attrs["draws_independent"]``: MC dropout, SVI, GP) use ``reff=1``.

    Returns:
        ArviZ's ``ELPDData``.

    Example:
        >>> import numpy as np
        >>> draws = 0.1 * np.random.default_rng(0).normal(size=(500, 4, 1))  # T x N x D
        >>> idata = from_mc_dropout(draws, np.zeros((4, 1)), tau=1.0)
        >>> round(float(checked_loo(idata)["elpd_loo"]), 2)
        -3.7
    """
    if not hasattr(idata, "log_likelihood"):
        raise ValueError("checked_loo: the InferenceData has no log_likelihood group")
    ll = idata.log_likelihood
    method = ll.attrs.get("method", "unknown method")
    var_name = var_name or ("y" if "y" in ll.data_vars else None)
    n_draws = int(ll.sizes.get(CHAIN_DIM, 1) * ll.sizes.get(DRAW_DIM, 1))
    if n_draws < int(min_draws):
        raise ValueError(
            f"checked_loo ({method}): PSIS-LOO needs at least {int(min_draws)} draws (chains x "
            f"draws), got {n_draws}; draw more samples"
        )
    reff = 1.0 if int(ll.attrs.get("draws_independent", 0)) else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = az.loo(idata, pointwise=pointwise, var_name=var_name, reff=reff, scale=scale)
    for w in caught:
        if "Pareto" in str(w.message):
            good_k = float(getattr(result, "good_k", 0.7) or 0.7)
            k = getattr(result, "pareto_k", None)
            n_bad = int((np.asarray(k) > good_k).sum()) if k is not None else -1
            n_obs = int(np.asarray(k).size) if k is not None else -1
            warnings.warn(
                f"checked_loo ({method}): PSIS-LOO is unreliable: {n_bad} of {n_obs} "
                f"observations have Pareto k > {good_k:.2f} with {n_draws} draws (more draws, "
                f"or exact LOO / K-fold for those points). ArviZ: {w.message}",
                LOOReliabilityWarning, stacklevel=2,
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result
