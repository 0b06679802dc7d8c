r"""What every ``DataTree`` converter of :mod:`comparisons.inference_data` shares: the dims,
the input checks, the weight sites of a :class:`~vi_dropout.models.BayesianMLP`, and
:class:`GaussianDrawsConverter`, which assembles the common layout (in the pattern of ArviZ's
``io_pyro.PyroConverter``: one method per group).

Every converter returns the same layout, an ``xarray.DataTree`` as ArviZ 1.x's converters
return it, so that the same ArviZ calls (``az.loo``, ``az.compare``, ``azp.plot_ppc_dist``,
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
their outputs back, :math:`f^\text{orig} = \bar y + s_y f`. The pointwise log-likelihood is
:func:`~comparisons.metrics.gaussian.gaussian_log_likelihood` with variance
:math:`1/\tau_o`, summed over outputs,

.. math::
    \log p(\mathbf{y}_n \mid f_s) = \sum_{d=1}^{D} \Big[-\tfrac12\log(2\pi/\tau_o)
    - \tfrac{\tau_o}{2}\big(y_{n,d} - f^\text{orig}_{s,n,d}\big)^2\Big],

with the precision :math:`\tau_o` on the original scale: the ``tau`` argument itself for MC
dropout (the paper's convention, as in :func:`vi_dropout.summaries.regression_summary`), and
:math:`\tau / s_y^2` for the Pyro models whose ``tau`` is on the standardised scale (the
Jacobian :math:`-\log s_y` of the standardisation is thereby included). For the exact GP
:math:`1/\tau_o` is the likelihood's noise variance times :math:`s_y^2`.

Which data. The converters evaluate the draws at the ``x, y`` they are given. For ``az.loo``
(leave-one-out over the data the model was fitted to) pass the TRAINING data; for a
held-out comparison pass test data, and ``log_likelihood`` then holds the pointwise test
log-likelihood whose ``logsumexp`` over draws minus :math:`\log S` is the usual test
log predictive density.

Bad input raises ``ValueError`` naming the method: non-finite draws (with their count),
mismatched observation counts, a number of draws not divisible by ``num_chains``.

Example:
    >>> import numpy as np
    >>> conv = GaussianDrawsConverter("mc_dropout", np.zeros((1, 50, 4, 1)), np.zeros((4, 1)),
    ...                               precision=2.0)
    >>> sorted(conv.to_datatree().children)
    ['log_likelihood', 'observed_data', 'posterior', 'posterior_predictive']

Why one module of this size: the one layout every converter shares, with the input checks and
the weight sites it is built from (ArviZ keeps its shared converter code in one ``base.py`` too).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import numpy as np
import torch
import xarray as xr

from comparisons.metrics.gaussian import gaussian_log_likelihood
from vi_dropout.network import Architecture, mlp_forward
from vi_dropout.validation import check_positive, check_positive_int, check_real, check_targets

__all__ = [
    "CHAIN_DIM",
    "DRAW_DIM",
    "FEATURE_DIM",
    "OBS_DIM",
    "OUTPUT_DIM",
    "GaussianDrawsConverter",
    "check_finite",
    "check_gaussian_model",
    "check_inputs",
    "check_scale",
    "check_target_array",
    "datatree",
    "forward_weight_draws",
    "pointwise_gaussian_log_likelihood",
    "split_chains",
    "to_numpy",
    "weight_dims",
    "weight_draws",
    "weight_site_names",
]

CHAIN_DIM = "chain"
DRAW_DIM = "draw"
OBS_DIM = "obs"
FEATURE_DIM = "feature"
OUTPUT_DIM = "output"

#: elements (draws x rows x width) per vectorised forward pass when evaluating weight draws
MAX_FORWARD_ELEMENTS = 1 << 22


# ----------------------------------------------------------------------------- input checks
def to_numpy(value: Any, name: str, method: str, dtype=np.float64) -> np.ndarray:
    """``value`` (torch tensor, array or sequence) as a numpy array of ``dtype``.

    Raises:
        ValueError: naming ``method`` and ``name`` if ``value`` is not an array of numbers.

    Example:
        >>> to_numpy(torch.ones(2), "x", "from_x").dtype
        dtype('float64')
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(
            f"{method}: {name} must be an array of numbers, got {type(value).__name__}"
        ) from None
    return arr


def check_finite(arr: np.ndarray, name: str, method: str) -> np.ndarray:
    """``arr`` itself if every entry is finite; else ``ValueError`` with the count.

    Example:
        >>> check_finite(np.zeros(3), "x", "from_x").shape
        (3,)
    """
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        raise ValueError(
            f"{method}: {name} has {bad} non-finite value(s) (NaN or inf) out of {arr.size}; "
            f"refusing to build a DataTree from them"
        )
    return arr


def check_target_array(y: Any, method: str, name: str = "y") -> np.ndarray:
    """``y`` as an ``N x D`` float64 array; a 1-D ``(N,)`` is refused, not reshaped
    (:func:`vi_dropout.validation.check_targets`).

    Example:
        >>> check_target_array(np.zeros((3, 1)), "from_x").shape
        (3, 1)
    """
    arr = check_finite(to_numpy(y, name, method), name, method)
    try:
        check_targets(torch.from_numpy(arr), name)
    except ValueError as err:
        raise ValueError(f"{method}: {err}") from None
    if arr.ndim != 2 or arr.shape[0] < 1:
        raise ValueError(f"{method}: {name} must have shape N x D with N >= 1, got {arr.shape}")
    return arr


def check_inputs(x: Any, n_obs: int, method: str) -> np.ndarray | None:
    """``x`` as an ``N x Q`` float64 array with ``N == n_obs`` (a 1-D ``x`` is one feature);
    ``None`` stays ``None``.

    Example:
        >>> check_inputs(np.zeros(4), 4, "from_x").shape
        (4, 1)
    """
    if x is None:
        return None
    arr = check_finite(to_numpy(x, "x", method), "x", method)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{method}: x must have shape N x Q, got {arr.shape}")
    if arr.shape[0] != n_obs:
        raise ValueError(
            f"{method}: x has {arr.shape[0]} observation(s) but y has {n_obs}; they must match"
        )
    return arr


def check_scale(y_mean: Any, y_std: Any, method: str) -> tuple[float, float]:
    """The target standardisation ``(y_mean, y_std)`` as floats (finite, ``y_std > 0``).

    Example:
        >>> check_scale(1, 2, "from_x")
        (1.0, 2.0)
    """
    return (check_real(y_mean, f"{method}: y_mean"),
            check_positive(y_std, f"{method}: y_std"))


def split_chains(arr: np.ndarray, num_chains: int, name: str, method: str) -> np.ndarray:
    """Reshape ``S x ...`` draws into ``num_chains x S/num_chains x ...`` (chain-major).

    Example:
        >>> split_chains(np.zeros((6, 2)), 3, "draws", "from_x").shape
        (3, 2, 2)
    """
    num_chains = check_positive_int(num_chains, f"{method}: num_chains")
    s = arr.shape[0]
    if s == 0:
        raise ValueError(f"{method}: {name} has no draws (its first dim is 0); pass at least one")
    if s % num_chains:
        raise ValueError(
            f"{method}: {s} draws of {name} cannot be split into {num_chains} chains of equal "
            f"length"
        )
    return arr.reshape(num_chains, s // num_chains, *arr.shape[1:])


def datatree(groups: Mapping[str, xr.Dataset | xr.DataTree | None],
             attrs: Mapping[str, Any] | None = None) -> xr.DataTree:
    """The ``DataTree`` of ArviZ 1.x with one child per group (``None`` groups left out) and
    ``attrs`` on its root.

    Example:
        >>> tree = datatree({"posterior": xr.Dataset({"a": (("chain", "draw"), np.zeros((1, 3)))}),
        ...                  "sample_stats": None}, attrs={"method": "m"})
        >>> sorted(tree.children), tree.attrs["method"]
        (['posterior'], 'm')
    """
    tree = xr.DataTree.from_dict({k: v for k, v in groups.items() if v is not None})
    tree.attrs.update(attrs or {})
    return tree


# ------------------------------------------------------------------- BayesianMLP weight sites
def weight_site_names(architecture: Architecture) -> list[str]:
    """The sample sites of a :class:`~vi_dropout.models.BayesianMLP`, layer by layer:
    ``layers.{i}.weight`` (``out x in``) then ``layers.{i}.bias`` (``out``).

    Example:
        >>> weight_site_names(Architecture((1, 3, 1)))
        ['layers.0.weight', 'layers.0.bias', 'layers.1.weight', 'layers.1.bias']
    """
    return [f"layers.{i}.{k}" for i in range(architecture.num_layers) for k in ("weight", "bias")]


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


def check_gaussian_model(model, method: str):
    """``model`` itself if it is a :class:`~vi_dropout.models.BayesianMLP` with the Gaussian
    likelihood; else ``ValueError`` naming ``method``."""
    from vi_dropout.models import BayesianMLP

    if not isinstance(model, BayesianMLP):
        raise ValueError(f"{method}: model must be a vi_dropout BayesianMLP, got {type(model).__name__}")
    if model.likelihood != "gaussian":
        raise ValueError(
            f"{method}: only the Gaussian likelihood is supported, the model has "
            f"{model.likelihood!r}"
        )
    return model


def weight_draws(samples: Mapping[str, Any], architecture: Architecture, lead: tuple[int, ...],
                 method: str) -> dict[str, np.ndarray]:
    """Pick and check the ``layers.{i}.weight|bias`` draws of ``samples``, reshaped to
    ``lead + event`` (e.g. ``lead = (chains, draws)``; singleton plate dims are dropped).

    Example:
        >>> arch = Architecture((1, 2, 1))
        >>> samples = {"layers.0.weight": np.zeros((5, 2, 1)), "layers.0.bias": np.zeros((5, 2)),
        ...            "layers.1.weight": np.zeros((5, 1, 2)), "layers.1.bias": np.zeros((5, 1))}
        >>> weight_draws(samples, arch, (5,), "from_x")["layers.1.weight"].shape
        (5, 1, 2)
    """
    out = {}
    for i, (o, q) in enumerate(architecture.layer_shapes):
        for name, event in ((f"layers.{i}.weight", (o, q)), (f"layers.{i}.bias", (o,))):
            if name not in samples:
                raise ValueError(f"{method}: the draws lack the site {name!r} (have {sorted(samples)})")
            arr = to_numpy(samples[name], name, method)
            if arr.size != math.prod(lead) * math.prod(event):
                raise ValueError(
                    f"{method}: site {name!r} has shape {arr.shape}, expected {lead + event} "
                    f"(plus singleton plate dims)"
                )
            out[name] = check_finite(arr.reshape(lead + event), f"draws of {name}", method)
    return out


def forward_weight_draws(draws: Mapping[str, np.ndarray], architecture: Architecture,
                         x: np.ndarray, n_chains: int, n_draws: int) -> np.ndarray:
    """``C x S x N x D`` network outputs (model scale) of chain-grouped weight draws
    (``C x S x out x in`` per site, as from :func:`weight_draws`), evaluated in chunks of at
    most :data:`MAX_FORWARD_ELEMENTS` draws x rows x width.

    Example:
        >>> arch = Architecture((1, 2, 1))
        >>> draws = {"layers.0.weight": np.ones((1, 3, 2, 1)), "layers.0.bias": np.zeros((1, 3, 2)),
        ...          "layers.1.weight": np.ones((1, 3, 1, 2)), "layers.1.bias": np.zeros((1, 3, 1))}
        >>> forward_weight_draws(draws, arch, np.ones((4, 1)), 1, 3).shape
        (1, 3, 4, 1)
    """
    xt = torch.as_tensor(x, dtype=torch.float64)
    ws = [torch.as_tensor(draws[f"layers.{i}.weight"]).reshape(n_chains * n_draws, o, q)
          for i, (o, q) in enumerate(architecture.layer_shapes)]
    bs = [torch.as_tensor(draws[f"layers.{i}.bias"]).reshape(n_chains * n_draws, o)
          for i, (o, q) in enumerate(architecture.layer_shapes)]
    s, n = ws[0].shape[0], xt.shape[0]
    width = max(w.shape[-2] for w in ws)
    chunk = max(1, MAX_FORWARD_ELEMENTS // max(1, n * width))
    out = []
    with torch.no_grad():
        for s0 in range(0, s, chunk):
            out.append(mlp_forward(xt, [w[s0:s0 + chunk] for w in ws],
                                   [b[s0:s0 + chunk] for b in bs],
                                   architecture.activation).cpu().numpy())
    f = np.concatenate(out, 0).astype(np.float64)
    return f.reshape(n_chains, n_draws, *f.shape[1:])


# --------------------------------------------------------------------------- the likelihood
def pointwise_gaussian_log_likelihood(f_orig: np.ndarray, y_orig: np.ndarray,
                                      precision: np.ndarray) -> np.ndarray:
    r"""Pointwise Gaussian log-likelihood of latent draws, summed over outputs.

    .. math::
        \ell_{c,s,n} = \sum_d \log\mathcal{N}\big(y_{n,d};\ f_{c,s,n,d},\ 1/\tau_{n,d}\big)

    via :func:`~comparisons.metrics.gaussian.gaussian_log_likelihood` (targets and variances
    broadcast explicitly to the draws' shape).

    Args:
        f_orig: ``C x S x N x D`` latent draws; y_orig: ``N x D`` targets (same scale).
        precision: :math:`\tau > 0`, broadcastable to ``N x D``.

    Returns:
        ``C x S x N`` log densities.

    Example:
        >>> ll = pointwise_gaussian_log_likelihood(np.zeros((1, 2, 3, 1)), np.zeros((3, 1)),
        ...                                        np.ones((3, 1)))
        >>> ll.shape, round(float(ll[0, 0, 0]), 4)
        ((1, 2, 3), -0.9189)
    """
    shape = f_orig.shape
    variance = np.broadcast_to(1.0 / np.asarray(precision, dtype=np.float64), shape)
    return gaussian_log_likelihood(f_orig, variance, np.broadcast_to(y_orig, shape)).sum(-1)


def _out_dims(d: int) -> list[str]:
    return [OBS_DIM] if d == 1 else [OBS_DIM, OUTPUT_DIM]


def _squeeze_out(arr: np.ndarray, d: int) -> np.ndarray:
    return arr[..., 0] if d == 1 else arr


# ------------------------------------------------------------------------------ the layout
class GaussianDrawsConverter:
    r"""The common ``DataTree`` layout (module docstring) of ``C x S x N x D`` latent draws
    on the original scale with a Gaussian likelihood: one method per group, as ArviZ's
    ``io_pyro.PyroConverter``. The converters of the ``io_*`` modules fill it in; a subclass adds
    what its source has (e.g. weight draws, sample statistics).

    Args:
        method: the method id stored in ``attrs["method"]`` (and named in errors).
        f_orig: ``C x S x N x D`` latent draws (original scale).
        y_orig: ``N x D`` targets (original scale).
        precision: observation precision :math:`\tau_o`, a number, ``(N,)`` (one per
            observation) or broadcastable to ``N x D``.
        x: optional ``N x Q`` inputs (``constant_data["x"]``).
        seed: seed of the observation noise in ``posterior_predictive``.
        feature_names: optional names of the ``feature`` coordinate.
        attrs: extra attributes of every group (``None`` values are left out).
        dims, coords: dims and coords of extra variables (e.g. :func:`weight_dims`).
        posterior_extra: extra posterior variables (``C x S x ...``).
        constant_extra: extra ``constant_data`` variables.
        sample_stats: ``C x S`` arrays for ``sample_stats`` (none: no such group).
        caller: the converter named in errors (default ``method``), e.g. ``"from_mc_dropout"``.

    Example:
        >>> conv = GaussianDrawsConverter("m", np.zeros((2, 5, 3, 1)), np.zeros((3, 1)), 1.0,
        ...                               x=np.zeros((3, 2)))
        >>> conv.log_likelihood()["y"].dims, conv.constant_data()["x"].dims
        (('chain', 'draw', 'obs'), ('obs', 'feature'))
    """

    def __init__(self, method: str, f_orig: np.ndarray, y_orig: np.ndarray,
                 precision: float | np.ndarray, x: np.ndarray | None = None, *,
                 seed: int | None = None, feature_names: Sequence[str] | None = None,
                 attrs: Mapping[str, Any] | None = None,
                 dims: Mapping[str, list[str]] | None = None,
                 coords: Mapping[str, np.ndarray] | None = None,
                 posterior_extra: Mapping[str, np.ndarray] | None = None,
                 constant_extra: Mapping[str, np.ndarray] | None = None,
                 sample_stats: Mapping[str, np.ndarray] | None = None,
                 caller: str | None = None):
        self.caller = caller or method
        check_finite(f_orig, "the latent draws f", self.caller)
        n, d = y_orig.shape
        if f_orig.shape[2:] != (n, d):
            raise ValueError(
                f"{self.caller}: draws have {f_orig.shape[2]} observation(s) x {f_orig.shape[3]} "
                f"output(s) but y has shape {n} x {d}; they must match"
            )
        self.method, self.f_orig, self.y_orig, self.x, self.seed = method, f_orig, y_orig, x, seed
        self.precision = self._check_precision(precision, n, d)
        self.posterior_extra = dict(posterior_extra or {})
        self.constant_extra = dict(constant_extra or {})
        self.stats = dict(sample_stats or {})
        self.coords = self._coords(feature_names, coords)
        self.dims = {"f": _out_dims(d), "y": _out_dims(d), "x": [OBS_DIM, FEATURE_DIM],
                     **(dims or {})}
        self.attrs = {"method": method}
        self.attrs.update({k: v for k, v in (attrs or {}).items() if v is not None})

    def _check_precision(self, precision, n: int, d: int) -> np.ndarray:
        precision = np.asarray(precision, dtype=np.float64)
        if precision.ndim == 1:  # one precision per observation
            precision = precision[:, None]
        precision = np.broadcast_to(precision, (n, d))
        if not np.all(np.isfinite(precision) & (precision > 0)):
            raise ValueError(f"{self.caller}: the noise precision must be finite and > 0")
        return precision

    def _coords(self, feature_names, extra) -> dict[str, Any]:
        n, d = self.y_orig.shape
        coords: dict[str, Any] = {OBS_DIM: np.arange(n)}
        if d > 1:
            coords[OUTPUT_DIM] = np.arange(d)
        if self.x is not None:
            if feature_names is None:
                coords[FEATURE_DIM] = np.arange(self.x.shape[1])
            else:
                names = [str(s) for s in feature_names]
                if len(names) != self.x.shape[1]:
                    raise ValueError(
                        f"{self.caller}: feature_names has {len(names)} entries but x has "
                        f"{self.x.shape[1]} feature(s)"
                    )
                coords[FEATURE_DIM] = np.array(names)
        coords.update(extra or {})
        return coords

    @property
    def num_outputs(self) -> int:
        return int(self.y_orig.shape[1])

    def dataset(self, data: Mapping[str, np.ndarray], *, sample_dims: list[str] | None = None,
                dims: Mapping[str, list[str]] | None = None) -> xr.Dataset:
        """``arviz_base.dict_to_dataset`` of ``data`` with this converter's coords, dims and
        attrs (``sample_dims`` default ``chain, draw``; ``[]`` for data without draws)."""
        return az.dict_to_dataset(
            data, attrs=dict(self.attrs), coords=self.coords,
            dims=self.dims if dims is None else dims, sample_dims=sample_dims,
        )

    def posterior(self) -> xr.Dataset:
        """``f`` and the extra posterior variables."""
        return self.dataset({"f": _squeeze_out(self.f_orig, self.num_outputs),
                             **self.posterior_extra})

    def posterior_predictive(self) -> xr.Dataset:
        """``y = f + noise`` of precision :math:`\\tau_o` (seeded by ``seed``)."""
        rng = np.random.default_rng(self.seed)
        y_draws = self.f_orig + rng.standard_normal(self.f_orig.shape) / np.sqrt(self.precision)
        return self.dataset({"y": _squeeze_out(y_draws, self.num_outputs)})

    def log_likelihood(self) -> xr.Dataset:
        """Pointwise ``y`` (:func:`pointwise_gaussian_log_likelihood`), dims ``chain, draw, obs``."""
        loglik = pointwise_gaussian_log_likelihood(self.f_orig, self.y_orig, self.precision)
        check_finite(loglik, "the pointwise log-likelihood", self.caller)
        return self.dataset({"y": loglik}, dims={"y": [OBS_DIM]})

    def observed_data(self) -> xr.Dataset:
        return self.dataset({"y": _squeeze_out(self.y_orig, self.num_outputs)}, sample_dims=[])

    def constant_data(self) -> xr.Dataset | None:
        """``x`` and the extra constants; ``None`` if there are none."""
        constant = {} if self.x is None else {"x": self.x}
        constant.update(self.constant_extra)
        return self.dataset(constant, sample_dims=[]) if constant else None

    def sample_stats(self) -> xr.Dataset | None:
        return self.dataset(self.stats, dims={}) if self.stats else None

    def to_datatree(self) -> xr.DataTree:
        """Every group (those that are ``None`` left out), as ArviZ's converters return them."""
        groups = {
            "posterior": self.posterior(),
            "posterior_predictive": self.posterior_predictive(),
            "log_likelihood": self.log_likelihood(),
            "observed_data": self.observed_data(),
            "constant_data": self.constant_data(),
            "sample_stats": self.sample_stats(),
        }
        return datatree(groups)
