"""Property-based checks of the kernels (hypothesis): random shapes, dtypes, variances and inputs
(NaN / inf included) give either a finite covariance of shape ``... x N x M`` (``... x N`` for the
diagonal) or a ``ValueError`` naming the argument."""

from __future__ import annotations

import math

import torch
from hypothesis import given
from hypothesis import strategies as st

from comparisons.kernels.arc_cosine import ArcCosineKernel
from comparisons.kernels.nngp import NNGPKernel
from comparisons.kernels.random_features import RandomFeatureKernel
from tests.common import (
    FLOAT_DTYPES,
    PROPERTY_SETTINGS,
    assert_finite,
    expect_finite_or_value_error,
    tensors_with_specials,
)

VARIANCES = st.one_of(st.floats(1e-3, 10.0), st.sampled_from([0.0, -1.0, math.nan, math.inf]))


@st.composite
def kernel_case(draw):
    dtype = draw(FLOAT_DTYPES)
    d = draw(st.integers(1, 3))
    n, m = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    x1, x2 = tensors_with_specials(draw, (n, d), dtype), tensors_with_specials(draw, (m, d), dtype)
    kind = draw(st.sampled_from(["arccos0", "arccos1", "arccos2", "nngp-relu", "nngp-erf", "rf"]))
    sw2, sb2 = draw(VARIANCES), draw(VARIANCES)
    return dtype, d, x1, x2, kind, sw2, sb2


def _make(kind, d, sw2, sb2, dtype):
    if kind.startswith("arccos"):
        k = ArcCosineKernel(order=int(kind[-1]), weight_variance=sw2, bias_variance=sb2)
    elif kind.startswith("nngp"):
        k = NNGPKernel(depth=2, activation=kind.split("-")[1], weight_variance=sw2,
                       bias_variance=sb2)
    else:
        k = RandomFeatureKernel(num_features=16, input_dim=d, weight_variance=sw2,
                                bias_variance=sb2, generator=torch.Generator().manual_seed(0))
    return k.to(dtype)


@PROPERTY_SETTINGS
@given(kernel_case(), st.booleans())
def test_kernels(case, diag):
    dtype, d, x1, x2, kind, sw2, sb2 = case
    kernel = expect_finite_or_value_error(lambda: _make(kind, d, sw2, sb2, dtype),
                     ("weight_variance", "bias_variance"), lambda k: None)
    if kernel is None:
        return
    if diag:
        expect_finite_or_value_error(lambda: kernel(x1, diag=True), ("x1",), lambda k: assert_finite(k, (x1.shape[0],)))
    else:
        expect_finite_or_value_error(lambda: kernel(x1, x2).to_dense(), ("x1", "x2"),
                lambda k: assert_finite(k, (x1.shape[0], x2.shape[0])))
