import pytest
import torch

from tests.common import DTYPES
from vi_dropout.network import Architecture, mlp_forward


@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_matches_explicit_two_layer_formula(dtype):
    arch = Architecture((3, 5, 2), activation="tanh")
    g = torch.Generator().manual_seed(1)
    ws, bs = arch.init_params(generator=g, dtype=dtype)
    bs = [torch.randn(b.shape, generator=g, dtype=dtype) for b in bs]
    x = torch.randn(7, 3, generator=g, dtype=dtype)
    z1 = torch.bernoulli(torch.full((7, 3), 0.5, dtype=dtype), generator=g)
    z2 = torch.bernoulli(torch.full((7, 5), 0.5, dtype=dtype), generator=g)
    out = mlp_forward(x, ws, bs, "tanh", masks=[z1, z2])
    for n in range(7):
        h = torch.tanh(ws[0] @ torch.diag(z1[n]) @ x[n] + bs[0])
        expected = ws[1] @ torch.diag(z2[n]) @ h + bs[1]
        torch.testing.assert_close(out[n], expected)


def test_batched_weights_broadcast():
    arch = Architecture((2, 4, 1))
    ws, bs = arch.init_params(generator=torch.Generator().manual_seed(0))
    x = torch.randn(6, 2, dtype=torch.float64)
    wb = [w.expand(3, *w.shape) for w in ws]
    bb = [b.expand(3, *b.shape) for b in bs]
    out = mlp_forward(x, wb, bb)
    assert out.shape == (3, 6, 1)
    torch.testing.assert_close(out[1], mlp_forward(x, ws, bs))


def test_bad_architecture_and_shapes():
    with pytest.raises(ValueError, match="activation"):
        Architecture((2, 3, 1), activation="swishy")
    with pytest.raises(ValueError, match=r"widths\[1\]"):
        Architecture((2, 0, 1))
    arch = Architecture((2, 3, 1))
    ws, bs = arch.init_params()
    with pytest.raises(ValueError, match="features"):
        mlp_forward(torch.randn(4, 5, dtype=torch.float64), ws, bs)
