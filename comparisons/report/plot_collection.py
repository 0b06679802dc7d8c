"""arviz-plots drawn into a given matplotlib ``Axes``.

ArviZ 1.x plots (arviz-plots) create their own figure and return a ``PlotCollection``; the
toolkit's plotting functions take an ``ax`` and return it, so that a report can put one panel
per method into one figure. :func:`plot_collection_on` builds the ``PlotCollection`` that an
arviz-plots function (``plot_ppc_dist``, ``plot_loo_pit``, ``plot_khat``, ...) draws into when
passed as ``plot_collection=``: every variable of ``group`` is drawn into ``ax``.

Example:
    >>> import matplotlib.pyplot as plt, arviz_plots as azp
    >>> fig, ax = plt.subplots()  # doctest: +SKIP
    >>> azp.plot_ppc_dist(tree, plot_collection=plot_collection_on(ax, tree))  # doctest: +SKIP
    >>> loo = az.loo(tree, pointwise=True)  # doctest: +SKIP
    >>> azp.plot_khat(loo, plot_collection=plot_collection_on(  # doctest: +SKIP
    ...     ax, loo.pareto_k.to_dataset(name="pareto_k")))
"""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["plot_collection_on"]


def plot_collection_on(ax, tree: xr.DataTree | xr.Dataset, group: str = "posterior_predictive"):
    """A matplotlib ``PlotCollection`` of arviz-plots whose every variable of ``group`` is
    drawn into ``ax`` (one panel, no faceting).

    Args:
        ax: a matplotlib ``Axes`` (its figure is the collection's figure).
        tree: the ``DataTree`` the plot reads (or the ``Dataset`` of ``group`` itself).
        group: the group whose variables the plot facets by (``posterior_predictive`` for
            the predictive checks).

    Returns:
        an ``arviz_plots.PlotCollection``.
    """
    from arviz_plots import PlotCollection

    data = tree if isinstance(tree, xr.Dataset) else tree[group].to_dataset()
    names = list(data.data_vars)
    if not names:
        raise ValueError(f"plot_collection_on: the group {group!r} has no variables")
    viz = xr.DataTree.from_dict({
        "/": xr.Dataset({"figure": np.array(ax.figure, dtype=object)}),
        "plot": xr.Dataset({v: np.array(ax, dtype=object) for v in names}),
        "row_index": xr.Dataset({v: 0 for v in names}),
        "col_index": xr.Dataset({v: 0 for v in names}),
    })
    return PlotCollection(data, viz, backend="matplotlib")
