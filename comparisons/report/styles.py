"""One id, one label and one colour per method, for every record, table, file name and plot.

Method ids are lower case with underscores. They are the ``method`` field of the tidy records,
``attrs["method"]`` of the ``DataTree`` built by the converters of :mod:`comparisons.inference_data`, the
``<method>_train.nc`` / ``<method>_test.nc`` file names of ``python -m comparisons diagnose``,
the rows of the markdown tables and the keys that the plotting functions look up here:

======================  =====================================================================
id                      method
======================  =====================================================================
``mc_dropout``          MC dropout: ``T`` stochastic forward passes
``standard_dropout``    the same network with the masks replaced by their means
``gp_arccos1``          exact GP, arc-cosine kernel (order 1), fitted by marginal likelihood
``gp_arccos1_prior``    exact GP, arc-cosine kernel (order 1) with the network's prior, no
                        fitting
``gp_se``               exact GP, squared-exponential kernel, fitted by marginal likelihood
``gp_rf_prior``         the network's prior with finitely many random ReLU features
``hmc``                 the HMC reference posterior of the network; the sampler (NUTS) is
                        ``attrs["sampler"]`` of its ``DataTree``
``concrete_dropout``    Concrete dropout: keep_probs and tau learned (relaxed masks), theta -> 0
``full_elbo``           the full ELBO: keep_probs, theta and tau learned
======================  =====================================================================

Records, tables and figures spell every method by its id, and nothing else.

Example:
    >>> method_label("gp_arccos1_prior"), method_color("hmc")
    ('GP arc-cosine (network prior)', 'tab:green')
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "METHOD_STYLES",
    "MethodStyle",
    "method_color",
    "method_label",
    "register_style",
]


class MethodStyle(NamedTuple):
    """How a method is shown: its legend / title ``label`` and its matplotlib ``color``."""

    label: str
    color: str


#: id -> (label, colour); one entry per method, used by every plotting function
METHOD_STYLES: dict[str, MethodStyle] = {
    "mc_dropout": MethodStyle("MC dropout", "tab:blue"),
    "standard_dropout": MethodStyle("standard dropout", "tab:gray"),
    "gp_arccos1": MethodStyle("GP arc-cosine (fitted)", "tab:orange"),
    "gp_arccos1_prior": MethodStyle("GP arc-cosine (network prior)", "tab:red"),
    "gp_se": MethodStyle("GP squared-exponential (fitted)", "tab:brown"),
    "gp_rf_prior": MethodStyle("GP random features (network prior)", "tab:purple"),
    "hmc": MethodStyle("HMC (NUTS)", "tab:green"),
    "pyro_mc_dropout": MethodStyle("MC dropout, converted network (SVI)", "tab:cyan"),
    "pyro_standard_dropout": MethodStyle("standard dropout, converted network (SVI)",
                                         "tab:olive"),
    "concrete_dropout": MethodStyle("Concrete dropout (learned keep_prob, tau)", "tab:pink"),
    "full_elbo": MethodStyle("full ELBO (learned keep_prob, theta, tau)", "goldenrod"),
    "mfvi": MethodStyle("mean-field Gaussian VI", "yellowgreen"),
    "deep_ensemble": MethodStyle("deep ensemble", "black"),
    "laplace": MethodStyle("Laplace (last layer)", "teal"),
    "laplace_kfac": MethodStyle("Laplace (KFAC, whole network)", "slateblue"),
}

def register_style(method: str, label: str, color: str, *, replace: bool = False) -> None:
    """Give a method of your own (one registered with
    :func:`comparisons.protocols.registry.register_method`) its label and colour in every table
    and figure.

    Raises:
        ValueError: ``method`` already has another style and ``replace`` is False.

    Example:
        >>> register_style("my_method", "my method", "tab:gray")
        >>> method_label("my_method")
        'my method'
    """
    for name, value in (("method", method), ("label", label), ("color", color)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    new = MethodStyle(label, color)
    old = METHOD_STYLES.get(method)
    if old is not None and old != new and not replace:
        raise ValueError(f"method {method!r} is already styled as {tuple(old)}; pass "
                         "replace=True to restyle it")
    METHOD_STYLES[method] = new


def method_label(method: str) -> str:
    """The label of the method id ``method``; an unknown name is its own label."""
    style = METHOD_STYLES.get(method)
    return method if style is None else style.label


def method_color(method: str, default: str | None = None) -> str | None:
    """The colour of the method id ``method``; ``default`` for an unknown name."""
    style = METHOD_STYLES.get(method)
    return default if style is None else style.color
