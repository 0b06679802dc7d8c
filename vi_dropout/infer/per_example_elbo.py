r"""An ELBO for ``pyro.infer.SVI`` that draws the weights once PER EXAMPLE, as dropout does.

``Trace_ELBO`` runs the guide once per step: one weight draw (one set of dropout masks) is
shared by the whole minibatch. Dropout draws a mask per example. :class:`PerExampleDropoutELBO`
estimates the same negative ELBO with one draw per example, by local reparameterisation
(:func:`~vi_dropout.infer.elbo.negative_elbo`):

.. math::
    -\widehat{\mathrm{ELBO}} = \frac{N}{B}\sum_{n=1}^{B} -\log p\big(\mathbf{y}_n \mid
    f(\mathbf{x}_n; \mathbf{W}_n)\big) + \mathrm{KL}(q\,\|\,p), \qquad
    \mathbf{W}_{n,i} = \mathbf{M}_i\operatorname{diag}(\mathbf{z}_{n,i}) + \theta\mathbf{E}_{n,i},

with per-example Bernoulli(:math:`\pi_i`) masks :math:`\mathbf{z}_{n,i}` on every covered layer's
input (:func:`~vi_dropout.forward.draw_masks`; per token, with the layer input's
shape, for a linear layer on ``B x T x Q`` inputs, as ``nn.Dropout`` draws them), the Gaussian
jitter sampled on the layer outputs, and the KL in closed form (Proposition 1, :func:`~vi_dropout.infer.elbo.kl_to_prior`)
plus, when ``gap_samples > 0``, a differentiable Monte Carlo estimate of the gap that makes it the
exact KL. Both estimators have the same expectation (with ``gap_samples > 0``); the per-example
one has a much smaller variance, and as :math:`\theta \to 0` its gradient with respect to the
means is :math:`N\tau` times the gradient of the dropout loss with the same masks.

Example:
    >>> net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1),
    ...                           torch.nn.Linear(16, 1))
    >>> model = ModuleBNN(net, prior_length_scale=1e-2, tau=10.0)
    >>> guide = DropoutGuide(model, theta=1e-2)
    >>> from pyro.infer import SVI
    >>> from vi_dropout.infer.optim import JointAdam   # pyro.optim.Adam with one optimiser in all
    >>> svi = SVI(model, guide, JointAdam({"lr": 1e-3}), PerExampleDropoutELBO())
    >>> loss = svi.step(torch.randn(32, 3), torch.randn(32, 1), num_data=1000)
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from pyro.infer import ELBO

from vi_dropout.forward import draw_masks
from vi_dropout.guides import DropoutGuide
from vi_dropout.infer.elbo import negative_elbo
from vi_dropout.inputs import batch_size, check_inputs, float_dtype
from vi_dropout.models import ModuleBNN
from vi_dropout.validation import check_int, check_nonnegative_int

__all__ = ["PerExampleDropoutELBO"]

_MODEL_SIGNATURE = inspect.signature(ModuleBNN.forward)


class PerExampleDropoutELBO(ELBO):
    r"""Negative ELBO of a :class:`~vi_dropout.models.ModuleBNN` under a
    :class:`~vi_dropout.guides.DropoutGuide`, one weight draw per example.

    Use it in place of ``Trace_ELBO`` in ``pyro.infer.SVI(model, guide, optim, loss)``; the
    model's arguments ``(x, y, num_data=None)`` pass through (``y`` is required; ``x`` a tensor, a
    tuple of tensors or a dict of tensors, batch first).

    Args:
        num_masks_seed: seed of a private ``torch.Generator`` for the masks, the jitter and the
            gap draws (reproducible streams); ``None`` draws from torch's global generator.
        gap_samples: number of draws for the Monte Carlo estimate of the gap between the exact
            KL and Proposition 1 (0: Proposition 1 alone, Gal & Ghahramani's objective).
    """

    def __init__(self, num_masks_seed: int | None = None, gap_samples: int = 0):
        super().__init__(num_particles=1)
        gap_samples = check_nonnegative_int(gap_samples, "gap_samples")
        num_masks_seed = check_int(num_masks_seed, "num_masks_seed", optional=True)
        self.gap_samples = gap_samples
        self.num_masks_seed = num_masks_seed
        self.generator = (None if num_masks_seed is None
                          else torch.Generator().manual_seed(num_masks_seed))

    def _get_trace(self, model, guide, args, kwargs):
        raise NotImplementedError("PerExampleDropoutELBO computes its estimate without traces")

    def differentiable_loss(self, model: ModuleBNN, guide: DropoutGuide, *args,
                            masks: Sequence[torch.Tensor] | None = None,
                            noise: Sequence[torch.Tensor] | None = None,
                            **kwargs) -> torch.Tensor:
        r"""The estimate as a differentiable tensor.

        Args:
            model, guide: a :class:`~vi_dropout.models.ModuleBNN` and its
                :class:`~vi_dropout.guides.DropoutGuide`.
            args: the model's ``(x, y, num_data=None)`` (also as keywords); ``x`` is ``B x ...``
                (or a tuple / dict of such tensors), ``y`` ``B x D`` (Gaussian) or ``B`` class
                indices.
            masks: optional per-layer masks (``B x Q`` linear, ``B x ... x Q`` linear on token
                inputs, ``B x C x 1 x 1`` conv) for common random numbers; drawn when omitted
                (the shapes from :meth:`~vi_dropout.models.ModuleBNN.covered_input_shapes`).
            noise: optional per-layer standard normals shaped like each covered layer's output.
        """
        if not isinstance(model, ModuleBNN):
            raise ValueError(f"model must be a ModuleBNN, got {type(model).__name__}")
        if not isinstance(guide, DropoutGuide):
            raise ValueError(f"guide must be a DropoutGuide, got {type(guide).__name__}")
        guide.check_model(model)
        try:
            bound = _MODEL_SIGNATURE.bind(model, *args, **kwargs)
        except TypeError as exc:
            raise ValueError(f"arguments must be the model's (x, y, num_data=None): {exc}") from None
        x, y, num_data = (bound.arguments.get(k) for k in ("x", "y", "num_data"))
        if y is None:
            raise ValueError("y is required: the ELBO needs the targets")
        n = model.check_data(x, y, num_data)
        x = check_inputs(x, "x", finite=False)
        means, biases = guide.locs()
        net = model.dropout_free_module()
        if masks is None:
            masks = draw_masks(model.layers, batch_size(x), self.generator,
                                      float_dtype(x, means[0].dtype),
                                      input_shapes=model.covered_input_shapes(x))
            # a layer with keep_prob = 1 gets ones (and draws nothing): multiplying its input
            # by them changes nothing, so it runs unmasked (None)
            masks = [None if layer.keep_prob == 1.0 else m
                     for layer, m in zip(model.layers, masks)]
        return negative_elbo(
            net, model.layers, means, biases, x, y, masks=masks, theta=guide.theta,
            prior_length_scale=model.prior_length_scale, tau=model.tau,
            likelihood=model.likelihood, num_data=n, noise=noise, generator=self.generator,
            gap_samples=self.gap_samples)

    def loss(self, model, guide, *args, **kwargs) -> float:
        """The estimate as a float (no gradients)."""
        with torch.no_grad():
            return float(self.differentiable_loss(model, guide, *args, **kwargs))

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """The estimate as a float; its gradient is accumulated in the parameters' ``.grad``."""
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        return float(loss.detach())
