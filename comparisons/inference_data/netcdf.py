r"""ArviZ ``DataTree`` files: written atomically (optionally compressed), read eagerly, in
both the ArviZ 1.x layout and the ``InferenceData`` layout of ArviZ 0.x.

Both ArviZ generations write one NetCDF-4 group per ArviZ group (``/posterior``,
``/sample_stats``, ...): ``xarray.open_datatree`` reads either, so a file written by ArviZ 0.x
(the committed HMC references were) needs no conversion. :func:`read_datatree` loads it whole
and closes the file, so that the caller may replace or delete it afterwards.

Example:
    >>> import numpy as np, xarray as xr
    >>> tree = xr.DataTree.from_dict({"posterior": xr.Dataset(
    ...     {"f": (("chain", "draw"), np.zeros((2, 5)))})})
    >>> path = write_datatree(tree, "/tmp/example.nc", compress=True)  # doctest: +SKIP
    >>> read_datatree(path).posterior["f"].shape  # doctest: +SKIP
    (2, 5)
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import xarray as xr

from vi_dropout.io import TEMP_PREFIX, atomic_write_bytes

__all__ = ["NETCDF_ENGINE", "read_datatree", "render_datatree", "write_datatree"]

#: the engine of every file written or read here (pure Python h5py; no netCDF4 C library)
NETCDF_ENGINE = "h5netcdf"


def _compression(tree: xr.DataTree) -> dict[str, dict[str, dict]]:
    """zlib (deflate, level 4) for every data variable of every group."""
    encoding = {}
    for node in tree.subtree:
        if node.has_data:
            encoding[node.path] = {name: {"zlib": True, "complevel": 4}
                                   for name in node.data_vars}
    return encoding


def render_datatree(tree: xr.DataTree, *, compress: bool = False,
                    folder: str | os.PathLike | None = None) -> bytes:
    """The bytes of ``tree`` as a NetCDF-4 file (rendered in a private temporary folder inside
    ``folder``, default the system's, and removed again).

    Example:
        >>> tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"a": ("draw", [0.0])})})
        >>> render_datatree(tree)[:4]
        b'\x89HDF'
    """
    if not isinstance(tree, xr.DataTree):
        raise ValueError(f"render_datatree: tree must be an xarray.DataTree (ArviZ 1.x), got "
                         f"{type(tree).__name__}")
    with tempfile.TemporaryDirectory(dir=folder, prefix=TEMP_PREFIX) as tmp:
        rendered = Path(tmp) / "tree.nc"
        tree.to_netcdf(rendered, engine=NETCDF_ENGINE,
                       encoding=_compression(tree) if compress else None)
        return rendered.read_bytes()


def write_datatree(tree: xr.DataTree, path: str | os.PathLike, *,
                   compress: bool = False) -> Path:
    """Write ``tree`` to ``path`` atomically (:func:`render_datatree`, then
    :func:`~vi_dropout.io.atomic_write_bytes`): a reader sees the old file or the new one,
    never a part. Returns the path.

    Args:
        tree: the ``DataTree``.
        path: the ``.nc`` file (its folder is created).
        compress: deflate every data variable (zlib level 4).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_bytes(path, render_datatree(tree, compress=compress, folder=path.parent))


def read_datatree(path: str | os.PathLike) -> xr.DataTree:
    """The whole ``DataTree`` of a NetCDF file (ArviZ 1.x or 0.x layout), loaded into memory
    and the file closed.

    Raises:
        FileNotFoundError: no such file; whatever h5py / xarray raise on a file that is not
        NetCDF-4.
    """
    return xr.load_datatree(Path(path), engine=NETCDF_ENGINE)
