"""A method written outside the package: diagonal SWAG (Maddox et al., 2019), registered for the
UCI comparison.

Run it next to the built-in methods on the standard splits, then tabulate it::

    python -m comparisons uci --method-file examples/swag_method.py \\
        --methods mc_dropout,swag --dataset yacht --splits 0-4 --out runs/swag
    python -m comparisons uci-table --records runs/swag --out runs/swag-table

and against the HMC references::

    python -m comparisons reference-scores --method-file examples/swag_method.py \\
        --methods mc_dropout,swag --reference docs/reference/hmc --dataset yacht --out runs/ref

A 50-unit ReLU network is trained by SGD with momentum on the standardised training rows. Over
the last quarter of the epochs, SWAG keeps the running mean and the running second moment of
the weights; their difference is a diagonal Gaussian over the weights. The test predictive
averages networks drawn from it, with the noise variance estimated from the training residuals
of the SWAG mean. Everything the comparison needs is `fit_predict` and one `register_method`
call.
"""

from __future__ import annotations

import torch
from torch import nn

from comparisons.protocols.registry import register_method, split_method

EPOCHS = 40  # times the run's --epochs-multiplier, as the built-in protocols
SWAG_SAMPLES = 30


def fit_predict(x_train, y_train, x_test, settings):
    """SWAG-diagonal predictive ``(mean, var)`` of the test targets (standardised scale)."""
    gen = torch.Generator().manual_seed(settings.seed)
    torch.manual_seed(settings.seed)
    x, y = torch.as_tensor(x_train), torch.as_tensor(y_train)
    net = nn.Sequential(nn.Linear(x.shape[1], 50), nn.ReLU(), nn.Linear(50, 1)).to(x.dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    epochs = max(4, round(EPOCHS * settings.epochs_multiplier))
    params = nn.utils.parameters_to_vector(net.parameters())
    first, second, count = torch.zeros_like(params), torch.zeros_like(params), 0
    for epoch in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(32):
            opt.zero_grad()
            nn.functional.mse_loss(net(x[idx]), y[idx]).backward()
            opt.step()
        if epoch >= epochs - max(1, epochs // 4):  # SWAG moments over the last quarter
            w = nn.utils.parameters_to_vector(net.parameters()).detach()
            first, second, count = first + w, second + w**2, count + 1
    mean_w = first / count
    var_w = (second / count - mean_w**2).clamp_min(1e-12)
    with torch.no_grad():
        nn.utils.vector_to_parameters(mean_w, net.parameters())
        noise = float(((net(x) - y) ** 2).mean())
        draws = []
        for _ in range(SWAG_SAMPLES):
            w = mean_w + var_w.sqrt() * torch.randn(mean_w.shape, generator=gen, dtype=x.dtype)
            nn.utils.vector_to_parameters(w, net.parameters())
            draws.append(net(torch.as_tensor(x_test))[:, 0])
    f = torch.stack(draws)
    return f.mean(0).numpy(), (f.var(0, unbiased=False) + noise).numpy()


register_method(split_method("swag", fit_predict, label="SWAG (diagonal)", color="tab:gray",
                             help="swag (diagonal SWAG over SGD iterates; examples/)"))

__all__ = ["fit_predict"]
