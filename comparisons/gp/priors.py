r"""The GP prior implied by a one-hidden-layer ReLU dropout network (Gal & Ghahramani 2016).

Two conventions, one map: :func:`dropout_prior_hyperparameters` takes the network's prior length
scale :math:`l` and precision :math:`\tau` directly (weights :math:`\mathcal{N}(0, l^{-2})`);
:func:`dropout_prior_gp_hyperparameters` takes those of a network trained by the UCI protocol
(Keras objective, inverted dropout, standardised targets) and expresses them through the first
with an effective length scale.

Example:
    >>> dropout_prior_hyperparameters(1.0, tau=10.0, keep_prob=0.9, input_dim=8,
    ...                               num_hidden=50)["outputscale"]
    50.0
"""

from __future__ import annotations

import math

from vi_dropout.validation import check_keep_prob, check_positive, check_positive_int

__all__ = ["dropout_prior_hyperparameters", "dropout_prior_gp_hyperparameters"]


def dropout_prior_hyperparameters(
    prior_length_scale: float,
    tau: float,
    keep_prob: float,
    input_dim: int,
    num_hidden: int,
    scale_by_keep_prob: bool = False,
) -> dict[str, float]:
    r"""Fixed GP hyper-parameters implied by the prior of a one-hidden-layer ReLU dropout
    network (Gal & Ghahramani 2016), for use with ``make_kernel("arccos1", ...)`` and **no**
    fitting.

    Derivation. The network is :math:`f(\mathbf{x}) = \sum_{k=1}^{K} v_k\,
    \mathrm{relu}(\mathbf{w}_k^\top\mathbf{x} + b_k)` with prior :math:`\mathcal{N}(0, l^{-2})`
    on every entry of :math:`\mathbf{w}_k`, :math:`b_k` and :math:`v_k` (:math:`l` =
    ``prior_length_scale``). In this package's convention
    (:class:`~comparisons.kernels.arc_cosine.ArcCosineKernel`) input weights are
    :math:`\mathcal{N}(0, \sigma_w^2/Q)`, so :math:`\sigma_w^2 = Q\,l^{-2}` and
    :math:`\sigma_b^2 = l^{-2}`. The output weights are independent of the hidden units, so

    .. math::
        \operatorname{Cov}(f(\mathbf{x}), f(\mathbf{x}')) = \sum_k \mathbb{E}[v_k^2]\,
        \mathbb{E}[\mathrm{relu}(\cdot)\mathrm{relu}(\cdot)]
        = K\,l^{-2}\; k_1^\text{arccos}(\mathbf{x}, \mathbf{x}'),

    which is exact for every finite :math:`K` (a second moment; the process is Gaussian only as
    :math:`K \to \infty`). The observation noise variance is :math:`1/\tau`.

    What is approximate / a choice:

    * Dropout masks are part of the variational distribution, not of the prior: by default
      (``scale_by_keep_prob=False``) ``keep_prob`` does **not** change the prior, i.e. this is
      the GP that dropout approximates (Gal & Ghahramani's kernel, masks off). With
      ``scale_by_keep_prob=True`` the output variance is multiplied by ``keep_prob``, the exact
      second moment when the *hidden* units are dropped without rescaling (the paper's
      convention, :math:`\mathbb{E}[z_k^2] = p`); dropout of the *inputs* is still ignored (its
      effect is not an arc-cosine kernel).
    * The network's output bias (``mlp_forward`` has one) would add a constant
      :math:`l^{-2}`; it is returned as ``output_bias_variance`` but not put into the kernel
      (Gal & Ghahramani's model has none).
    * A finite-:math:`K` network prior is not Gaussian; the GP matches its first two moments.

    Returns:
        dict with ``weight_variance``, ``bias_variance``, ``outputscale``,
        ``output_bias_variance`` and ``noise``.

    Example:
        >>> h = dropout_prior_hyperparameters(1.0, tau=10.0, keep_prob=0.9, input_dim=8,
        ...                                   num_hidden=50)
        >>> h["weight_variance"], h["outputscale"], h["noise"]
        (8.0, 50.0, 0.1)
    """
    length = check_positive(prior_length_scale, "prior_length_scale")
    tau = check_positive(tau, "tau")
    keep_prob = check_keep_prob(keep_prob)
    q = check_positive_int(input_dim, "input_dim")
    k = check_positive_int(num_hidden, "num_hidden")
    inv_l2 = length**-2
    outputscale = k * inv_l2 * (keep_prob if scale_by_keep_prob else 1.0)
    return {
        "weight_variance": q * inv_l2,
        "bias_variance": inv_l2,
        "outputscale": outputscale,
        "output_bias_variance": inv_l2,
        "noise": 1.0 / tau,
    }


def dropout_prior_gp_hyperparameters(prior_length_scale: float, keep_prob: float, tau: float,
                                     y_std: float, input_dim: int, num_hidden: int
                                     ) -> dict[str, float]:
    r"""GP hyper-parameters (standardised target scale) of the prior of a dropout network
    trained by the UCI protocol (Keras code, inverted dropout, targets standardised by ``y_std``,
    ``tau`` on the original scale).

    The protocol minimises :math:`\mathrm{MSE} + r\|\mathbf{W}'\|^2` with
    :math:`r = l^2 p/(2N\tau)` on the inverted-dropout weights :math:`\mathbf{W}' = p\mathbf{M}`
    and standardised targets. Halving it gives the paper's data term plus
    :math:`\lambda\|\mathbf{M}\|^2` with :math:`\lambda = l^2 p^3 / (4 N\tau)`; the derivation
    (README, "The math") has :math:`\lambda = p\,l_\text{eff}^2/(2 N \tau_s)` with the precision
    of the *standardised* targets :math:`\tau_s = \tau s_y^2`. Hence

    .. math::
        l_\text{eff} = \frac{l\,p\,s_y}{\sqrt 2}, \qquad \tau_s = \tau s_y^2,

    and the hyper-parameters are :func:`dropout_prior_hyperparameters`
    ``(l_eff, tau_s, p, input_dim, num_hidden)``: ``weight_variance`` :math:`= Q/l_\text{eff}^2`,
    ``bias_variance`` :math:`= 1/l_\text{eff}^2`, ``outputscale`` :math:`= K/l_\text{eff}^2`,
    ``noise`` :math:`= 1/\tau_s`. The Keras code puts no penalty on the biases (an improper flat
    prior); the :math:`\mathcal{N}(0, l_\text{eff}^{-2})` bias prior of Gal & Ghahramani's
    derivation is used instead, and the output bias is left out (see
    ``dropout_prior_hyperparameters``).

    Returns:
        the dict of ``dropout_prior_hyperparameters`` plus ``effective_length_scale`` and
        ``tau_standardized``.

    Example:
        >>> h = dropout_prior_gp_hyperparameters(1e-2, 0.95, 0.5, 9.0, 13, 50)
        >>> round(h["effective_length_scale"], 5), round(h["noise"], 6)
        (0.06046, 0.024691)
    """
    length = check_positive(prior_length_scale, "prior_length_scale")
    keep_prob = check_keep_prob(keep_prob)
    tau = check_positive(tau, "tau")
    y_std = check_positive(y_std, "y_std")
    l_eff = length * keep_prob * y_std / math.sqrt(2.0)
    tau_s = tau * y_std**2
    hyper = dropout_prior_hyperparameters(l_eff, tau_s, keep_prob, input_dim, num_hidden)
    return {**hyper, "effective_length_scale": l_eff, "tau_standardized": tau_s}
