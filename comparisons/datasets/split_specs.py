"""Split specs of the command line and the protocols: ``'0-19'``, ``'0,3,5'`` or ``'all'``.

Syntax only, and the indices of one data set (:func:`parse_splits`); numpy-free, so that
``python -m comparisons`` checks ``--splits`` when it parses its arguments.
"""

from __future__ import annotations

__all__ = ["split_items", "parse_splits"]


def split_items(spec: str) -> list[tuple[str, int, int, bool]]:
    """The parts of a split spec as ``(text, first, last, is_range)``: ``"0-4,7"`` ->
    ``[("0-4", 0, 4, True), ("7", 7, 7, False)]``. Checks the syntax only (no data set).

    Raises:
        ValueError: not of the form ``'0-19'``, ``'0,3,5'`` or ``'all'``, a negative split or an
            empty range such as ``'5-2'``, naming the part.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"splits must look like '0-19' or '0,3,5' or 'all', got {spec!r}")
    if spec.strip() == "all":
        return []
    items = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-"))
            else:
                lo = hi = int(part)
        except ValueError:
            raise ValueError(f"splits must look like '0-19' or '0,3,5' or 'all', got {spec!r}") \
                from None
        if lo < 0:
            raise ValueError(f"splits must be integers >= 0, got {part!r} in {spec!r}")
        if lo > hi:
            raise ValueError(f"split range {part!r} is empty (its start is after its end); "
                             f"write it as '{hi}-{lo}'")
        items.append((part, lo, hi, "-" in part))
    return items


def parse_splits(spec: str, n_splits: int, *, clip_ranges: bool = False) -> list[int]:
    """``"0-19"``, ``"0,3,5"`` or ``"all"`` -> split indices, checked against ``n_splits``.

    With ``clip_ranges``, a range is clipped to the data set's splits (``"0-19"`` on a data set
    with 5 splits gives 0..4); a listed split beyond them is still an error.

    Example:
        >>> parse_splits("0-19", 5, clip_ranges=True)
        [0, 1, 2, 3, 4]
    """
    if isinstance(spec, str) and spec.strip() == "all":
        return list(range(n_splits))
    out: list[int] = []
    for _, lo, hi, is_range in split_items(spec):
        out.extend(range(lo, (min(hi, n_splits - 1) if clip_ranges and is_range else hi) + 1))
    bad = [s for s in out if not 0 <= s < n_splits]
    if bad:
        raise ValueError(f"splits {bad} are out of range: this data set has splits 0..{n_splits - 1}")
    return sorted(set(out))
