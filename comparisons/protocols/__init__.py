"""Training protocols shared by the experiments: the MC dropout UCI protocol of the paper."""

from __future__ import annotations

from .uci import (  # noqa: F401
    UCIProtocol,
    hyperparameter_grid,
    parse_splits,
    run_uci_cell,
    score_networks,
    split_items,
    train_grid,
    uci_cells,
    uci_splits,
)

__all__ = [
    "UCIProtocol",
    "uci_cells",
    "run_uci_cell",
    "parse_splits",
    "split_items",
    "uci_splits",
    "hyperparameter_grid",
    "train_grid",
    "score_networks",
]
