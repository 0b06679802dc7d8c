"""vi_dropout: the variational family of MC dropout in Pyro, its full ELBO, and the numerical
proof that it reduces to the dropout loss (Gal & Ghahramani, 2016).

The top level holds the user-facing names (:data:`__all__`, 20 of them); the rest is reachable
by module, e.g. ``vi_dropout.kl.kl_large_width`` or ``vi_dropout.forward.draw_masks``. Both are
imported on first use (``__getattr__``), so ``import vi_dropout`` and ``python -m vi_dropout
--help`` do not load torch or Pyro.

Example:
    >>> import torch
    >>> from vi_dropout import ModuleBNN, DropoutGuide
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(8, 1))
    >>> model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0)
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from vi_dropout.conversion import Conversion, convert_module, find_covered_layers
    from vi_dropout.distributions import DropoutNormal
    from vi_dropout.guides import DropoutGuide
    from vi_dropout.infer.elbo import dropout_loss, negative_elbo
    from vi_dropout.infer.mean_field import fit_mean_field
    from vi_dropout.infer.module_concrete import fit_module_concrete
    from vi_dropout.infer.optim import JointAdam
    from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
    from vi_dropout.models import BayesianMLP, ModuleBNN
    from vi_dropout.network import Architecture
    from vi_dropout.predict import mc_predict
    from vi_dropout.summaries import classification_summary, regression_summary
    from vi_dropout.training import train_batched
    from vi_dropout.verify.network import verify_network
    from vi_dropout.verify.paper import run_verify

__version__ = "0.1.0"

#: the user-facing names; everything else is reachable by its module (``vi_dropout.kl``,
#: ``vi_dropout.infer.elbo``, ``vi_dropout.verify.network``, ...), see the API reference
__all__ = [
    # the variational family and the models: your network converted, or the paper's MLP
    "DropoutNormal",
    "convert_module",
    "find_covered_layers",
    "Conversion",
    "ModuleBNN",
    "DropoutGuide",
    "BayesianMLP",
    "Architecture",
    # objectives and fitting
    "PerExampleDropoutELBO",
    "negative_elbo",
    "dropout_loss",
    "JointAdam",
    "fit_module_concrete",
    "fit_mean_field",
    "train_batched",
    # prediction
    "mc_predict",
    "regression_summary",
    "classification_summary",
    # the equivalence reports: your network, the paper's MLP
    "verify_network",
    "run_verify",
]

#: the module that defines each name of :data:`__all__` (imported on first use)
_HOMES = {
    "DropoutNormal": "vi_dropout.distributions",
    "convert_module": "vi_dropout.conversion",
    "find_covered_layers": "vi_dropout.conversion",
    "Conversion": "vi_dropout.conversion",
    "ModuleBNN": "vi_dropout.models",
    "DropoutGuide": "vi_dropout.guides",
    "BayesianMLP": "vi_dropout.models",
    "Architecture": "vi_dropout.network",
    "PerExampleDropoutELBO": "vi_dropout.infer.per_example_elbo",
    "negative_elbo": "vi_dropout.infer.elbo",
    "dropout_loss": "vi_dropout.infer.elbo",
    "JointAdam": "vi_dropout.infer.optim",
    "fit_module_concrete": "vi_dropout.infer.module_concrete",
    "fit_mean_field": "vi_dropout.infer.mean_field",
    "train_batched": "vi_dropout.training",
    "mc_predict": "vi_dropout.predict",
    "regression_summary": "vi_dropout.summaries",
    "classification_summary": "vi_dropout.summaries",
    "verify_network": "vi_dropout.verify.network",
    "run_verify": "vi_dropout.verify.paper",
}


def __getattr__(name: str):
    """A name of :data:`__all__` or a submodule (``vi_dropout.kl``), imported on first use."""
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}"):
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
