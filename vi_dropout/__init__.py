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

import importlib
import importlib.util

import lazy_loader

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

# the names' modules are in __init__.pyi; lazy_loader (scientific-python SPEC 1) imports each on
# first use, so that ``import vi_dropout`` and the command line's parsing do not load torch
_stub_getattr, _, _stub_names = lazy_loader.attach_stub(__name__, __file__)


def __getattr__(name: str):
    """A name of :data:`__all__` or a submodule (``vi_dropout.kl``), imported on first use.

    An error while importing a name's module propagates as it is (an ``AttributeError`` raised
    inside that module is not turned into "no attribute"); any other name is an
    ``AttributeError``, a dotted one too (so that ``hasattr`` answers ``False`` for it).
    """
    if name in _stub_names:
        return _stub_getattr(name)
    if (name.startswith("_") or "." in name
            or importlib.util.find_spec(f"{__name__}.{name}") is None):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return importlib.import_module(f"{__name__}.{name}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
