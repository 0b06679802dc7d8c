"""vi_dropout: the variational family of MC dropout in Pyro, its full ELBO, and the numerical
proof that it reduces to the dropout loss (Gal & Ghahramani, 2016)."""

from .bnn import ModuleBNN, ModuleDropoutGuide
from .concrete import ConcreteDropoutObjective, ConcreteFit, fit_concrete, relaxed_bernoulli_mask
from .distributions import DropoutNormal
from .drop_stream import DropStream, layer_drop_streams, sample_drop_mask
from .guides import DropoutGuide
from .kl import (
    MonteCarloEstimate,
    binary_entropy,
    cross_entropy_to_prior,
    gaussian_kl_to_prior,
    kl_gap,
    kl_large_width,
    kl_monte_carlo,
    mean_field_kl_to_prior,
)
from .mean_field import MeanFieldFit, MeanFieldObjective, fit_mean_field
from .models import BayesianMLP
from .module_concrete import ModuleConcreteFit, ModuleConcreteObjective, fit_module_concrete
from .network import ACTIVATIONS, Architecture, mlp_forward
from .objectives import (
    draw_masks,
    dropout_loss,
    elbo_dropout_offset,
    from_inverted_dropout,
    inverted_weight_decay,
    negative_elbo,
    prior_weight_decays,
    tau_from_weight_decay,
    to_inverted_dropout,
    weight_decay_from_prior,
)
from .per_example_elbo import PerExampleDropoutELBO
from .predict import (
    ClassificationSummary,
    DropoutMLPParams,
    RegressionSummary,
    classification_summary,
    mc_predict,
    regression_summary,
    standard_dropout_predict,
)
from .training import DropoutMLP, TrainResult, train_batched, train_sequential, weight_decay

__version__ = "0.1.0"

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "BayesianMLP",
    "DropoutGuide",
    "DropoutNormal",
    "DropStream",
    "layer_drop_streams",
    "sample_drop_mask",
    "MonteCarloEstimate",
    "binary_entropy",
    "cross_entropy_to_prior",
    "draw_masks",
    "dropout_loss",
    "elbo_dropout_offset",
    "from_inverted_dropout",
    "gaussian_kl_to_prior",
    "inverted_weight_decay",
    "kl_gap",
    "kl_large_width",
    "kl_monte_carlo",
    "mlp_forward",
    "negative_elbo",
    "prior_weight_decays",
    "tau_from_weight_decay",
    "to_inverted_dropout",
    "weight_decay_from_prior",
    "ClassificationSummary",
    "DropoutMLP",
    "DropoutMLPParams",
    "RegressionSummary",
    "TrainResult",
    "classification_summary",
    "mc_predict",
    "regression_summary",
    "standard_dropout_predict",
    "train_batched",
    "train_sequential",
    "weight_decay",
    "ModuleBNN",
    "ModuleDropoutGuide",
    "PerExampleDropoutELBO",
    "ConcreteDropoutObjective",
    "ConcreteFit",
    "fit_concrete",
    "relaxed_bernoulli_mask",
    "ModuleConcreteObjective",
    "ModuleConcreteFit",
    "fit_module_concrete",
    "MeanFieldObjective",
    "MeanFieldFit",
    "fit_mean_field",
    "mean_field_kl_to_prior",
]
