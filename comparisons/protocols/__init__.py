"""Training protocols shared by the experiments: the MC dropout UCI protocol of the paper
(``uci``) and the exact GPs on the same splits (``uci_gp``)."""

from __future__ import annotations

from comparisons.protocols.uci import (
    DropoutFit,
    GridSelection,
    MCDropoutUCISettings,
    fit_mc_dropout,
    fit_mc_dropout_under_prior,
    hyperparameter_grid,
    parse_splits,
    protocol_seed,
    run_uci_cell,
    score_networks,
    select_and_retrain,
    split_items,
    train_grid,
    uci_cells,
    uci_splits,
)
from comparisons.protocols.uci_gp import (
    GPUCISettings,
    gp_uci_cells,
    predictive_metrics,
    run_gp_uci_cell,
)

__all__ = [
    "MCDropoutUCISettings",
    "fit_mc_dropout_under_prior",
    "uci_cells",
    "run_uci_cell",
    "parse_splits",
    "split_items",
    "uci_splits",
    "hyperparameter_grid",
    "train_grid",
    "score_networks",
    "protocol_seed",
    "GridSelection",
    "select_and_retrain",
    "DropoutFit",
    "fit_mc_dropout",
    "GPUCISettings",
    "gp_uci_cells",
    "run_gp_uci_cell",
    "predictive_metrics",
]
