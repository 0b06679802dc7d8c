"""vi_dropout: the variational family of MC dropout in Pyro, its full ELBO, and the numerical
proof that it reduces to the dropout loss (Gal & Ghahramani, 2016).

The top level holds the user-facing names (:data:`__all__`, 20 of them); the rest is reachable
by module, e.g. ``vi_dropout.kl.kl_large_width`` or ``vi_dropout.objectives.draw_masks``.

Example:
    >>> import torch
    >>> from vi_dropout import ModuleBNN, ModuleDropoutGuide
    >>> net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(8, 1))
    >>> model = ModuleBNN(net, prior_length_scale=1.0, tau=10.0)
"""

from .bnn import ModuleBNN, ModuleDropoutGuide
from .conversion import Conversion, convert_module, find_covered_layers
from .distributions import DropoutNormal
from .guides import DropoutGuide
from .mean_field import fit_mean_field
from .models import BayesianMLP
from .module_concrete import fit_module_concrete
from .network import Architecture
from .objectives import dropout_loss, negative_elbo
from .optim import JointAdam
from .per_example_elbo import PerExampleDropoutELBO
from .predict import classification_summary, mc_predict, regression_summary
from .training import train_batched
from .verify import run_verify

__version__ = "0.1.0"

#: the user-facing names; everything else is reachable by its module (``vi_dropout.kl``,
#: ``vi_dropout.objectives``, ``vi_dropout.verify_network``, ...), see the API reference
__all__ = [
    # the variational family and the models: your network converted, or the paper's MLP
    "DropoutNormal",
    "convert_module",
    "find_covered_layers",
    "Conversion",
    "ModuleBNN",
    "ModuleDropoutGuide",
    "BayesianMLP",
    "Architecture",
    "DropoutGuide",
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
    # the equivalence report (your network: vi_dropout.verify_network.verify_network)
    "run_verify",
]
