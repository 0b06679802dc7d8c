"""The names of :mod:`vi_dropout`, for type checkers and for lazy_loader (``__init__.py``
imports each module on first use)."""

from .conversion import Conversion, convert_module, find_covered_layers
from .distributions import DropoutNormal
from .guides import DropoutGuide
from .infer.elbo import dropout_loss, negative_elbo
from .infer.mean_field import fit_mean_field
from .infer.module_concrete import fit_module_concrete
from .infer.optim import JointAdam
from .infer.per_example_elbo import PerExampleDropoutELBO
from .models import BayesianMLP, ModuleBNN
from .network import Architecture
from .predict import mc_predict
from .summaries import classification_summary, regression_summary
from .training import train_batched
from .verify.network import verify_network
from .verify.paper import run_verify

__version__: str

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
