r"""Exact, sparse sampling of dropout masks: where the DROPPED units are, not a uniform per unit.

Dropout masks are rows of independent Bernoulli variables: unit :math:`c` of row :math:`r` is
dropped with probability :math:`\text{drop\_rate}_c = 1 - \text{keep\_prob}_c`. With the drop
rates of the UCI grids (0.005 to 0.1) almost every draw of a dense ``floor(u + keep_prob)`` mask
says "keep", and on a CPU the uniforms and the elementwise passes that turn them into masks cost
far more than the matrix products of a 50-unit network. :class:`DropStream` samples the same
masks from the positions of the drops alone.

Lay all masks out as one flat sequence, row after row of ``C`` columns (position
:math:`j \mapsto` row :math:`\lfloor j / C \rfloor`, column :math:`j \bmod C`). With
:math:`q = \max_c \text{drop\_rate}_c`, the gaps between successive candidate positions are
i.i.d. geometric,

.. math::
    G = 1 + \left\lfloor \frac{\log(1 - u)}{\log(1 - q)} \right\rfloor, \quad
    u \sim U[0, 1), \qquad P(G = k) = (1 - q)^{k - 1} q,

which makes every position a candidate independently with probability :math:`q` (a Bernoulli
process). A candidate in column :math:`c` is then kept as a drop with probability
:math:`\text{drop\_rate}_c / q` (thinning; skipped when all rates are equal), so position
:math:`j` is dropped independently with probability exactly :math:`\text{drop\_rate}_c`. The
cost is about :math:`2 q` float64 uniforms per mask entry instead of one per entry, and the mask
is applied by zeroing those positions (:meth:`torch.Tensor.index_fill_`) instead of a dense
multiply.

Random stream: candidates are generated in fixed batches of ``batch_size`` gaps (one
``torch.rand(batch_size, float64)`` for the gaps, then one for the thinning when the rates
differ), independently of how the sequence is later cut into blocks. So the drops of positions
``[0, n)`` are the same whether they are taken in one :meth:`DropStream.take` or in many: a
chunked vectorised pass and a loop of single passes over the same stream see the same masks.

Precision: uniforms are float64 (53 bits), so the geometric tail is exact up to
:math:`P(u > 1 - 2^{-53})`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vi_dropout.validation import check_keep_prob, check_positive_int, refuse_non_numbers

__all__ = ["DropStream", "layer_drop_streams", "sample_drop_mask"]

_MAX_GAP = float(2**40)
# From this drop rate on, a gap above _MAX_GAP has probability below exp(-1000) per draw.
_FAST_MIN_RATE = 1e-9
# Below this position a float64 running sum of integer gaps is exact (2^53 with a 2^40 margin).
_FAST_MAX_POSITION = 2**52


class DropStream:
    r"""An endless stream of Bernoulli dropout positions over rows of ``C`` mask columns.

    Args:
        keep_probs: per column :math:`\text{keep\_prob}_c \in (0, 1]`, length ``C`` (e.g. the
            concatenated input widths of the layers, each with its layer's keep_prob); the
            stream samples the drops, column :math:`c` at the rate
            :math:`1 - \text{keep\_prob}_c` (``max_rate``: the largest of them).
        generator: source of the uniforms (``None``: torch's global generator).
        batch_size: candidate gaps drawn per refill (part of the random-stream contract).

    Example:
        >>> s = DropStream([0.5, 1.0, 0.9], generator=torch.Generator().manual_seed(0))
        >>> drops = s.take(3 * 4)       # positions (row * 3 + column) dropped in rows 0..3
        >>> bool(((drops % 3) != 1).all())  # column 1 has keep_prob 1: never dropped
        True
    """

    def __init__(
        self,
        keep_probs: Sequence[float] | torch.Tensor,
        generator: torch.Generator | None = None,
        batch_size: int = 65536,
    ):
        if isinstance(keep_probs, Sequence) and not isinstance(keep_probs, str | bytes):
            for i, kp in enumerate(keep_probs):
                refuse_non_numbers(kp, f"keep_probs[{i}]", "a real number in (0, 1]")
        else:  # a number, a tensor or an array of them
            refuse_non_numbers(keep_probs, "keep_probs", "real numbers in (0, 1]")
        kps = torch.as_tensor(keep_probs, dtype=torch.float64).reshape(-1)
        if kps.numel() == 0:
            raise ValueError("keep_probs must hold at least one column, got an empty sequence")
        if not bool(((kps > 0) & (kps <= 1)).all()):
            raise ValueError(
                f"keep_probs must lie in (0, 1] (the probability that a unit is KEPT), got "
                f"{kps.tolist()}"
            )
        rates = 1.0 - kps  # the sampler draws the drops: column c at rate 1 - keep_probs[c]
        batch_size = check_positive_int(batch_size, "batch_size")
        self.num_columns = rates.numel()
        self.generator = generator
        self.batch_size = batch_size
        self.max_rate = float(rates.max())
        self._accept = rates / self.max_rate if self.max_rate > 0 else rates
        self._thin = self.max_rate > 0 and bool((rates != self.max_rate).any())
        self._log1m = math.log1p(-self.max_rate) if self.max_rate > 0 else 0.0
        self._base = 0  # absolute position of the next block's start
        self._last = -1  # absolute position of the last candidate generated
        self._pending = torch.empty(0, dtype=torch.long)  # drops at positions >= _base

    def _refill(self) -> None:
        u = torch.rand(self.batch_size, generator=self.generator, dtype=torch.float64)
        gaps = torch.log1p(u.neg_()).div_(self._log1m).floor_().add_(1.0)
        if self.max_rate >= _FAST_MIN_RATE and self._last < _FAST_MAX_POSITION:
            # No gap can come near _MAX_GAP (P < exp(-1000)): positions stay exact integers in a
            # float64 cumulative sum (below 2^53), converted once.
            cand = gaps.cumsum_(0).add_(float(self._last)).to(torch.long)
            keep = None
        else:
            # Gaps beyond _MAX_GAP (only for drop rates below ~1e-11) advance the stream without
            # a drop: exact, because the geometric law is memoryless.
            keep = gaps <= _MAX_GAP
            cand = gaps.clamp_(max=_MAX_GAP).to(torch.long).cumsum_(0).add_(self._last)
        self._last = int(cand[-1])
        if self._thin:
            v = torch.rand(self.batch_size, generator=self.generator, dtype=torch.float64)
            accept = v < self._accept[cand % self.num_columns]
            keep = accept if keep is None else keep & accept
        if keep is not None and not bool(keep.all()):
            cand = cand[keep]
        self._pending = torch.cat([self._pending, cand]) if self._pending.numel() else cand

    def take(self, size: int) -> torch.Tensor:
        """The dropped positions among the next ``size`` (relative to the block start), sorted."""
        size = int(size)
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        end = self._base + size
        if self.max_rate == 0.0:
            self._base = end
            return torch.empty(0, dtype=torch.long)
        while self._last < end:
            self._refill()
        n = int(torch.searchsorted(self._pending, end))
        out = self._pending[:n] - self._base
        self._pending = self._pending[n:]
        self._base = end
        return out


def sample_drop_mask(
    shape: Sequence[int],
    keep_prob: float,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""A dense 0/1 mask of ``shape`` drawn through :class:`DropStream` (one column rate).

    Entries are independent :math:`\text{Bernoulli}(\text{keep\_prob})`; positions are taken in
    row-major order of ``shape``, so a loop over the rows of a bigger mask sees the same values.

    Example:
        >>> m = sample_drop_mask((1000, 10), keep_prob=0.9, generator=torch.Generator().manual_seed(0))
        >>> 0.88 < float(m.mean()) < 0.92
        True
    """
    shape = tuple(int(s) for s in shape)
    keep_prob = check_keep_prob(keep_prob)
    stream = DropStream([keep_prob], generator=generator)
    mask = torch.ones(math.prod(shape), dtype=dtype)
    mask.index_fill_(0, stream.take(mask.numel()), 0.0)
    return mask.view(shape)


def layer_drop_streams(
    keep_probs: Sequence[float], generator: torch.Generator | None = None
) -> list[DropStream]:
    r"""One independent :class:`DropStream` per layer, seeded from ``generator``.

    Draws ``L`` seeds with ``torch.randint(2**62, (L,), generator=generator)`` and gives layer
    ``i`` a stream of rate ``1 - keep_probs[i]`` on ``torch.Generator().manual_seed(seed_i)``.
    Separate streams keep each layer's positions a plain row-major index into that layer's
    ``... x in_i`` inputs, whatever the other layers consume.

    Example:
        >>> s0, s1 = layer_drop_streams([0.9, 0.5], torch.Generator().manual_seed(0))
        >>> s0.max_rate, s1.max_rate
        (0.09999999999999998, 0.5)
    """
    kps = [check_keep_prob(k, f"keep_probs[{i}]") for i, k in enumerate(keep_probs)]
    seeds = torch.randint(2**62, (len(kps),), generator=generator).tolist()
    return [
        DropStream([kp], generator=torch.Generator().manual_seed(int(sd)))
        for kp, sd in zip(kps, seeds)
    ]
