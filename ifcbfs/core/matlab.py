"""Opening product files with the optional packages (h5py, scipy), and MATLAB values as Python.

The packages are imported only when a product is read, so the mount works without them; a
missing one is a `ProductDependencyMissing` that names the extra to install.
"""
from __future__ import annotations

import io
from typing import Any

from .errors import ProductDependencyMissing, ProductError, one_line

EXTRA_HINT = "pip install 'ifcbfs[products]'"


def require(module: str, what: str) -> Any:
    """Import `module` (h5py, scipy.io, numpy), or raise the one clear error that says what to install."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise ProductDependencyMissing(f"reading {what} needs {module.split('.')[0]}: {EXTRA_HINT}") from None


def load_mat(data: bytes, names: tuple[str, ...], what: str) -> dict:
    """The variables `names` (those present) of a MATLAB v4/v5/v7 `.mat` file given as bytes."""
    sio = require("scipy.io", what)
    if data[:8] == b"\x89HDF\r\n\x1a\n" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise ProductError(f"{what}: a MATLAB v7.3 (HDF5) .mat file, which is not read; save it with -v7")
    try:
        return sio.loadmat(io.BytesIO(data), variable_names=list(names))
    except NotImplementedError as err:  # v7.3 files with another header offset
        raise ProductError(f"{what}: {err}") from None
    except Exception as err:  # scipy raises ValueError, TypeError, EOFError, zlib.error ... on bad bytes
        raise ProductError(f"{what}: not a readable MATLAB .mat file ({one_line(err)})") from None


def strings(value: Any, what: str) -> list[str]:
    """A MATLAB cell array of strings, or a char matrix (rows padded with blanks), as a list.

    An empty cell is the empty string. Anything else (numbers, structs) is a ProductError."""
    np = require("numpy", what)
    arr = np.asarray(value)
    if arr.dtype.kind == "U":  # a char matrix: one string per row, padded on the right
        if arr.ndim == 0:
            return [str(arr)]
        return [str(s).rstrip(" ") for s in arr.reshape(-1)]
    if arr.dtype.kind == "S":
        return [text(s) for s in arr.reshape(-1)]
    if arr.dtype.kind != "O":
        raise ProductError(f"{what}: expected strings, found {arr.dtype} values")
    out = []
    for cell in arr.reshape(-1, order="F"):
        cell = np.asarray(cell)
        if cell.size == 0:
            out.append("")
        elif cell.dtype.kind in "US" and cell.size == 1:
            out.append(text(cell.reshape(-1)[0]))
        else:
            raise ProductError(f"{what}: expected a string in each cell, found {cell.dtype} {cell.shape}")
    return out


def text(value: Any) -> str:
    """A label from a file as text: bytes are UTF-8 (invalid bytes become U+FFFD)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
