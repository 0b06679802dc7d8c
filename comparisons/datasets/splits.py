"""One loader for "a split by name": the 1-D toy problem or a UCI set, raw and standardised.

Example:
    >>> name, raw, data = load_split("boston", 0)
    >>> name, raw.x_train.shape == data.x_train.shape
    ('bostonHousing', True)
"""

from __future__ import annotations

from typing import NamedTuple

from comparisons.datasets.toy1d import TOY1D_NAME, Toy1DData, load_toy1d
from comparisons.datasets.uci import StandardizedSplit, UCISplit, load_uci, standardize

__all__ = ["LoadedSplit", "load_split"]


class LoadedSplit(NamedTuple):
    """A split by name (unpacks as ``name, raw, data``).

    Attributes:
        name: ``"toy1d"`` or the canonical UCI name.
        raw: the split on the original scale (the toy's ``source``).
        data: the standardised split: a :class:`~comparisons.datasets.toy1d.Toy1DData` (with the
            toy's regions) or a :class:`~comparisons.datasets.uci.StandardizedSplit`.
    """

    name: str
    raw: UCISplit
    data: Toy1DData | StandardizedSplit


def load_split(dataset: str, split: int, *, toy_num_train: int = 200) -> LoadedSplit:
    """Load ``dataset`` (``"toy1d"`` or a UCI name / alias) at ``split``.

    Args:
        dataset: ``"toy1d"`` (any case) or a UCI name or alias.
        split: the UCI split index, or the toy's data seed.
        toy_num_train: training points of the toy (ignored for UCI sets).

    Returns:
        :class:`LoadedSplit` ``(name, raw, data)``.

    Raises:
        ValueError: an unknown data set or a split out of range (from the loaders).
    """
    if dataset.lower() == TOY1D_NAME:
        data = load_toy1d(num_train=toy_num_train, seed=split)
        return LoadedSplit(TOY1D_NAME, data.source, data)
    raw = load_uci(dataset, split)
    return LoadedSplit(raw.name, raw, standardize(raw))
