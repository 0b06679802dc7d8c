"""arviz-plots drawn into a given matplotlib ``Axes``.

ArviZ 1.x plots (arviz-plots) create their own figure and return a ``PlotCollection``; the
toolkit's plotting functions take an ``ax`` and return it, so that a report can put one panel
per method into one figure. :func:`plot_collection_on` builds the ``PlotCollection`` that an
arviz-plots function (``plot_ppc_dist``, ``plot_loo_pit``, ``plot_khat``, ...) draws into when
passed as ``plot_collection=``: every variable of ``group`` is drawn into ``ax``.

Example:
    >>> import matplotlib.pyplot as plt, arviz_plots as azp
    >>> fig, ax = plt.subplots()  # doctest: +SKIP
    >>> azp.plot_loo_pit(tree, plot_collection=plot_collection_on(ax, tree))  # doctest: +SKIP
    >>> loo = az.loo(tree, pointwise=True)  # doctest: +SKIP
    >>> azp.plot_khat(loo, plot_collection=plot_collection_on(ax, loo))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import xarray as xr

__all__ = ["plot_collection_on"]


def plot_collection_on(ax, data, group: str = "posterior_predictive",
                       aes: Mapping[str, list[str]] | None = None):
    """A matplotlib ``PlotCollection`` of arviz-plots whose every variable is drawn into ``ax``
    (one panel, no faceting).

    Args:
        ax: a matplotlib ``Axes`` (its figure is the collection's figure).
        data: the ``Dataset`` the plot draws, a ``DataTree`` (its ``group``), or an
            ``ELPDData`` (its ``pareto_k``, for ``plot_khat``).
        group: the group of a ``DataTree``.
        aes: aesthetic mappings, as the plot would make for its own figure (e.g.
            ``{"overlay_ppc": ["sample"]}`` for ``plot_ppc_dist``, whose ``data`` then has the
            ``sample`` dim of the drawn predictive draws: see
            :func:`comparisons.report.diagnose.plot_ppc`).

    Returns:
        an ``arviz_plots.PlotCollection``.
    """
    from arviz_plots import PlotCollection

    if hasattr(data, "pareto_k") and not isinstance(data, xr.Dataset | xr.DataTree):
        data = data.pareto_k.to_dataset(name="pareto_k")
    elif isinstance(data, xr.DataTree):
        if group not in data.children:
            raise ValueError(f"plot_collection_on: the DataTree has no group {group!r} (has "
                             f"{sorted(data.children)})")
        data = data[group].to_dataset()
    elif not isinstance(data, xr.Dataset):
        raise ValueError(f"plot_collection_on: data must be a Dataset, a DataTree or an "
                         f"ELPDData, got {type(data).__name__}")
    names = list(data.data_vars)
    if not names:
        raise ValueError("plot_collection_on: the data have no variables")
    viz = xr.DataTree.from_dict({
        "/": xr.Dataset({"figure": np.array(ax.figure, dtype=object)}),
        "plot": xr.Dataset({v: np.array(ax, dtype=object) for v in names}),
        "row_index": xr.Dataset({v: 0 for v in names}),
        "col_index": xr.Dataset({v: 0 for v in names}),
    })
    return PlotCollection(data, viz, aes=dict(aes or {}), backend="matplotlib")
