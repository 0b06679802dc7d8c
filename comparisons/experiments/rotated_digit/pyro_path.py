r"""The dropout LeNet trained through the ELBO (SVI on the converted network), and the agreement of
its predictions with the plain path's, image by image."""

from __future__ import annotations

import math

import torch

from comparisons.networks.lenet import (
    LeNet,
    TrainHistory,
    run_minibatch_epochs,
)
from vi_dropout.validation import check_finite, check_positive, check_positive_int

__all__ = ['train_converted_lenet', 'path_agreement']
def _check_converted_args(model, x, y, theta, prior_length_scale, weight_decay, epochs,
                          batch_size, lr) -> tuple[float, float, int, int, float]:
    """Validate the arguments of :func:`train_converted_lenet`; returns ``(theta, l, epochs,
    batch_size, lr)`` with the default :math:`l = \\sqrt{\\text{weight\\_decay}\\cdot N}`."""
    if not isinstance(model, LeNet):
        raise ValueError(f"model must be a LeNet, got {type(model).__name__}")
    check_finite(x, "x")
    if x.dim() != 4 or tuple(x.shape[1:]) != (model.in_channels, model.image_size,
                                              model.image_size):
        raise ValueError(f"x must have shape N x {model.in_channels} x {model.image_size} x "
                         f"{model.image_size} for this LeNet, got {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must be a 1-D tensor of {x.shape[0]} labels (one per image), got "
                         f"shape {tuple(getattr(y, 'shape', ()))}")
    theta = check_positive(theta, "theta")
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    lr = check_positive(lr, "lr")
    if prior_length_scale is None:
        if not (float(weight_decay) > 0 and math.isfinite(float(weight_decay))):
            raise ValueError(f"weight_decay must be a finite number > 0 when prior_length_scale "
                             f"is None (l = sqrt(weight_decay * N)), got {weight_decay!r}")
        prior_length_scale = math.sqrt(float(weight_decay) * int(x.shape[0]))
    length = check_positive(prior_length_scale, "prior_length_scale")
    return theta, length, epochs, batch_size, lr


def _kl_constant(guide, length: float, n: int) -> float:
    """The KL's part that does not depend on the means (theta's terms), per training image: the
    KL of :func:`~vi_dropout.infer.elbo.kl_to_prior` at zero means, divided by ``n``."""
    from vi_dropout.infer.elbo import kl_to_prior

    zeros = [m.detach().double() * 0 for m in guide.weight_locs]
    zero_b = [None if b is None else b.detach().double() * 0 for b in guide.bias_locs]
    return float(kl_to_prior(guide.layers, zeros, zero_b, theta=guide.theta,
                           prior_length_scale=length)) / n


def train_converted_lenet(
    model: LeNet, x: torch.Tensor, y: torch.Tensor, *, theta: float = 1e-3,
    prior_length_scale: float | None = None, weight_decay: float = 5e-4, epochs: int = 50,
    batch_size: int = 128, lr: float = 1e-3, seed: int = 0, progress: bool = True,
) -> TrainHistory:
    r"""Train ``model`` with ``pyro.infer.SVI`` on the per-example ELBO at :math:`\theta`
    and load the learnt means back into it.

    Not :func:`~comparisons.networks.lenet.train_lenet` with an option: that one is dropout SGD
    on the module itself (cross-entropy of ``nn.Dropout`` passes, torch's ``weight_decay``),
    this one optimises a guide over every covered layer's weights against the converted
    network's Pyro model (the ELBO's KL in place of the weight decay, the masks drawn by the
    objective), then writes its means into the module. Only the minibatch loop is shared
    (:func:`~comparisons.networks.lenet.run_minibatch_epochs`, the same shuffling for the same
    ``seed``).

    SVI runs :class:`vi_dropout.models.ModuleBNN` (categorical; every ``nn.Conv2d`` / ``nn.Linear``
    covered, the last with the LeNet's ``keep_prob``, the others with 1),
    :class:`vi_dropout.guides.DropoutGuide` (means :math:`\mathbf{M} = \mathbf{W}'/\pi` and
    bias means from the module's weights), ``pyro.optim.Adam`` and
    :class:`vi_dropout.infer.per_example_elbo.PerExampleDropoutELBO` (one weight draw per example),
    one step per minibatch of a shuffled epoch with ``num_data = N``, after
    ``pyro.clear_param_store()``. Then ``guide.load_into(model)`` sets
    :math:`\mathbf{W}' = \pi\mathbf{M}`: MC dropout of the module
    (:func:`~vi_dropout.predict.mc_predict`) is the :math:`\theta \to 0` limit of the
    trained family. The KL's :math:`\theta \to 0` part is the weight decay
    :math:`l^2/(2\pi N)\lVert\mathbf{W}'\rVert^2` per image, so the default
    :math:`l = \sqrt{\text{weight\_decay}\cdot N}` matches
    :func:`~comparisons.networks.lenet.train_lenet` on the :math:`\pi = 1` layers.

    Args:
        model: a :class:`~comparisons.networks.lenet.LeNet` (its weights are the starting means
            and are replaced by the trained ones).
        x: ``N x 1 x H x W`` images; y: ``N`` integer labels.
        theta: :math:`\theta > 0`; prior_length_scale: :math:`l > 0` (``None``: the default).
        weight_decay: used only for the default ``prior_length_scale`` (must then be ``> 0``).
        epochs, batch_size, lr: Adam on shuffled minibatches; progress: tqdm bar over epochs.
        seed: seeds the shuffling (as ``train_lenet`` does); ``seed + 1`` the masks and noise.

    Returns:
        :class:`~comparisons.networks.lenet.TrainHistory` (``epoch_losses``: per epoch, the mean
        over minibatches of the negative ELBO per training image less the KL's terms that do not
        depend on the means, i.e. cross-entropy plus implied weight decay; ``weight_decay``:
        :math:`l^2/N`). The model is left in eval mode.

    Example:
        >>> from comparisons.datasets.digits import load_digits_split
        >>> d = load_digits_split()
        >>> h = train_converted_lenet(LeNet(8, seed=0), d.x_train[:64], d.y_train[:64],
        ...                           epochs=1, progress=False)
        >>> len(h.epoch_losses)
        1
    """
    import pyro

    from vi_dropout.guides import DropoutGuide
    from vi_dropout.infer.per_example_elbo import PerExampleDropoutELBO
    from vi_dropout.models import ModuleBNN

    theta, length, epochs, batch_size, lr = _check_converted_args(
        model, x, y, theta, prior_length_scale, weight_decay, epochs, batch_size, lr)
    n = int(x.shape[0])
    pyro.clear_param_store()
    bnn = ModuleBNN(model, prior_length_scale=length, likelihood="categorical").train()
    guide = DropoutGuide(bnn, theta=theta, init_from_module=True)
    kl_const = _kl_constant(guide, length, n)
    svi = pyro.infer.SVI(bnn, guide, pyro.optim.Adam({"lr": lr}),
                         loss=PerExampleDropoutELBO(num_masks_seed=int(seed) + 1))
    x, y = x.to(model.head.weight.dtype), y.long()

    def step(idx: torch.Tensor) -> float:
        return svi.step(x[idx], y[idx], num_data=n) / n - kl_const

    losses, seconds = run_minibatch_epochs(n, step, epochs=epochs, batch_size=batch_size,
                                           seed=seed, progress=progress,
                                           desc="train LeNet (SVI, per-example ELBO)")
    guide.load_into(model)
    model.eval()
    return TrainHistory(losses, seconds, epochs, batch_size, lr, length ** 2 / n, int(seed), n)


def _per_image(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correct, nll)`` per test image of ``T x N x C`` (or ``N x C``) logits: whether the
    MC-averaged softmax ranks the label first, and ``-log`` of its probability."""
    s = logits if logits.dim() == 3 else logits.unsqueeze(0)
    logp = torch.logsumexp(torch.log_softmax(s.double(), -1), 0) - math.log(s.shape[0])
    correct = (logp.argmax(-1) == labels).double()
    return correct, -logp.gather(-1, labels.long()[:, None])[:, 0]


def path_agreement(logits_plain: dict[str, torch.Tensor], logits_pyro: dict[str, torch.Tensor],
                   labels: torch.Tensor, dataset: str, num_se: float = 2.0) -> list[dict]:
    r"""Do the plain and the ELBO-trained network agree on the test split within Monte Carlo error?

    For each method ``m`` (``mc_dropout``, ``standard_dropout``) and per test image :math:`n`, the
    paired differences :math:`d_n` (pyro minus plain) of correctness (accuracy) and of the
    per-image NLL :math:`-\log\bar{p}_n(y_n)`; the verdict is

    .. math::
        |\bar{d}| \le \text{num\_se}\cdot \operatorname{sd}(d)/\sqrt{N}.

    The standard error contains the test-set sampling error and the MC error of the ``T``
    samples (each image's :math:`\bar{p}_n` is a ``T``-sample average), not the randomness of
    the two trainings.

    Args:
        logits_plain, logits_pyro: ``{method: T x N x C or N x C}`` of the two networks.
        labels: ``N`` labels.
        dataset: the ``dataset`` field.
        num_se: how many standard errors count as agreement.

    Returns:
        Tidy records, ``method = "pyro_vs_plain_<m>"``, empty ``split``, metrics
        ``accuracy_diff``, ``accuracy_diff_se``, ``nll_diff``, ``nll_diff_se`` and
        ``agree`` (1.0 when both differences are within ``num_se`` standard errors, else 0.0).

    Example:
        >>> lg = {"mc_dropout": torch.zeros(2, 3, 4)}
        >>> recs = path_agreement(lg, lg, torch.tensor([0, 1, 2]), "digits")
        >>> [r["value"] for r in recs if r["metric"] == "agree"]
        [1.0]
    """
    num_se = check_positive(num_se, "num_se")
    recs = []
    for m in logits_plain:
        if m not in logits_pyro:
            continue
        (ca, na), (cb, nb) = _per_image(logits_plain[m], labels), _per_image(logits_pyro[m], labels)
        out, ok = {}, True
        for name, d in (("accuracy", cb - ca), ("nll", nb - na)):
            mean = float(d.mean())
            se = float(d.std(unbiased=True) / math.sqrt(len(d))) if len(d) > 1 else 0.0
            out[f"{name}_diff"], out[f"{name}_diff_se"] = mean, se
            ok = ok and abs(mean) <= num_se * se + 1e-12
        out["agree"] = float(ok)
        recs += [{"dataset": dataset, "method": f"pyro_vs_plain_{m}", "split": "", "metric": k,
                  "value": v} for k, v in out.items()]
    return recs
