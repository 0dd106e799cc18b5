"""Zarr arrays and OME-Zarr images as stacks of pages, each read when it is indexed.

Large EM and light-sheet volumes come as zarr (OME-Zarr from Fiji's N5/zarr export, webKnossos, BigStitcher,
ome-zarr-py): a folder of compressed chunks that no one wants converted to a TIFF first. A zarr array here is a
(P, H, W[, C]) stack like a TIFF's: OME-Zarr's axes say which are the pages (t, z), the channels (c) and the
plane (y, x), and its first (full-resolution) level is the one read; a plain zarr array is a plane (Y, X) or a
stack of planes (Z, Y, X). Its pixel size and page axes come from OME-Zarr's scale and axes, as a TIFF's do from
its tags. What zarr cannot read (a damaged chunk) is one line naming the array and the page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from unetkit.data.lazy_pages import LazyPages
from unetkit.errors import InputError

ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")  # zarr 2's array and group, zarr 3's node
OME_UNITS = {"angstrom": "angstrom", "picometer": "pm", "nanometer": "nm", "micrometer": "um", "millimeter": "mm",
             "centimeter": "cm", "meter": "m", "inch": "inch"}  # OME-Zarr's (UDUNITS) names -> calibration's
PLANE_AXES = ("y", "x")
COLOUR_CHANNELS = (3, 4)  # a plain array's last axis of this size is RGB(A)...
PLAIN_COLOUR_SIDE = 16  # ...when both other sides are longer than this (a stack of 3-pixel-wide planes is not)


def _scale(transforms: list[dict[str, Any]], axes: int) -> list[float] | None:
    """The pixel size per axis of OME-Zarr transformations (a dataset's, then the multiscale's own, which OME-NGFF
    applies after it): their scales multiplied; None when none is given."""
    scales = [[float(value) for value in transform["scale"]] for transform in transforms
              if transform.get("type") == "scale" and len(transform.get("scale") or []) == axes]
    if not scales:
        return None
    return [math.prod(values) for values in zip(*scales)]


def is_zarr(path: Path) -> bool:
    """Whether `path` is a zarr array or group: a folder holding zarr's metadata file."""
    path = Path(path)
    return path.is_dir() and any((path / marker).is_file() for marker in ZARR_MARKERS)


def _multiscales(attributes: dict[str, Any]) -> list[dict[str, Any]] | None:
    """OME-Zarr's multiscales list: at the top (0.4 and before, zarr 2) or under "ome" (0.5, zarr 3)."""
    found = attributes.get("multiscales") or (attributes.get("ome") or {}).get("multiscales")
    return found if isinstance(found, list) and found else None


def _axes(entries: list[Any]) -> list[dict[str, Any]]:
    """OME-Zarr axes as dicts (0.3 wrote them as bare names)."""
    return [{"name": entry} if isinstance(entry, str) else dict(entry) for entry in entries]


class ZarrPages(LazyPages):
    """The (P, H, W[, C]) pages of a zarr array, each read when it is indexed (`pages[i]`), as prediction takes
    them: a volume larger than memory is segmented a plane at a time.

    `axes`: one letter per array axis (OME-Zarr's names, upper case); `scale`: OME-Zarr's per-axis pixel size
    and `units` per axis where it declares them.
    """

    def __init__(self, path: Path, array: Any, axes: str, scale: list[float] | None, units: list[str | None]) -> None:
        self.path, self._array, self.axes, self.scale, self.units = path, array, axes, scale, units
        self.array_path = path  # the folder of the array read (an OME-Zarr image's first level)
        self._page_dims = [i for i, axis in enumerate(axes) if axis not in "CYX"]
        self._channel_dim = axes.index("C") if "C" in axes else None
        channels = array.shape[self._channel_dim] if self._channel_dim is not None else 1
        pages = math.prod(array.shape[i] for i in self._page_dims)
        height, width = array.shape[axes.index("Y")], array.shape[axes.index("X")]
        self.shape: tuple[int, ...] = (pages, height, width, channels) if channels > 1 else (pages, height, width)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(array.dtype)

    @classmethod
    def open(cls, path: Path) -> ZarrPages:
        """The array at `path`, or the full-resolution level of the OME-Zarr image there; InputError naming the
        folder and the fix for anything else (a plate, a group without an image, axes unetkit cannot lay out)."""
        import zarr  # here: reading images must not pay for zarr's import

        path = Path(path)
        try:
            node = zarr.open(store=str(path), mode="r")
        except Exception as exc:  # noqa: BLE001 - damaged metadata raises anything
            raise InputError(f"{path}: cannot be read as zarr ({type(exc).__name__}: {exc}); check that the folder "
                             "is a whole zarr array or OME-Zarr image") from None
        attributes = dict(node.attrs)
        multiscales = _multiscales(attributes)
        if isinstance(node, zarr.Group):
            if multiscales is None:
                arrays = sorted(name for name, _ in node.arrays())
                fix = (f" (it holds the arrays {', '.join(arrays[:3])}{', ...' if len(arrays) > 3 else ''}: give one "
                       f"of them, e.g. {path / arrays[0]})" if arrays else "; give the zarr array of the image")
                raise InputError(f"{path}: a zarr group, not an image (no OME-Zarr multiscales){fix}")
            return cls._ome_image(path, node, multiscales[0])
        if multiscales is not None:  # an array with the metadata on itself: read as its own level 0
            return cls._ome_level(path, node, multiscales[0], 0)
        level_of = cls._level_of_an_image(path)  # img.zarr/0 given itself: the image's axes lay it out
        if level_of is not None:
            return cls._ome_level(path, node, *level_of)
        return cls._plain(path, node)

    @staticmethod
    def _level_of_an_image(path: Path) -> tuple[dict[str, Any], int] | None:
        """(multiscale, level index) when `path` is a level of the OME-Zarr image in its parent folder."""
        import zarr

        if not is_zarr(path.parent):
            return None
        try:
            multiscales = _multiscales(dict(zarr.open_group(str(path.parent), mode="r").attrs))
        except Exception:  # noqa: BLE001 - a parent that is not a readable group: the array alone
            return None
        datasets = (multiscales or [{}])[0].get("datasets") or []
        index = next((i for i, dataset in enumerate(datasets) if str(dataset.get("path")) == path.name), None)
        return None if index is None else (multiscales[0], index)  # type: ignore[index]

    @classmethod
    def _ome_image(cls, path: Path, group: Any, multiscale: dict[str, Any]) -> ZarrPages:
        datasets = multiscale.get("datasets") or []
        if not datasets or "path" not in datasets[0]:
            raise InputError(f"{path}: its OME-Zarr multiscales list no dataset; re-export the image")
        level = str(datasets[0]["path"])
        try:
            array = group[level]
        except Exception as exc:  # noqa: BLE001
            raise InputError(f"{path}: its full-resolution level {level!r} cannot be opened ({type(exc).__name__}: "
                             f"{exc}); re-export the image") from None
        pages = cls._ome_level(path, array, multiscale, 0)
        pages.array_path = path / level
        return pages

    @classmethod
    def _ome_level(cls, path: Path, array: Any, multiscale: dict[str, Any], index: int) -> ZarrPages:
        axes = _axes(multiscale.get("axes") or [])
        if not axes:  # OME-Zarr 0.1/0.2: always t, c, z, y, x
            axes = [{"name": name} for name in "tczyx"[5 - len(array.shape):]]
        names = [str(axis.get("name", "")).lower() for axis in axes]
        if len(names) != len(array.shape) or names[-2:] != list(PLANE_AXES) or len(set(names)) != len(names) \
                or any(name not in "tczyx" or not name for name in names):
            raise InputError(f"{path}: OME-Zarr axes {names} for an array of shape {tuple(array.shape)}; unetkit takes "
                             "axes among t, c, z with y, x last")
        datasets = multiscale.get("datasets") or []
        scale = _scale([*((datasets[index].get("coordinateTransformations") or []) if len(datasets) > index else []),
                        *(multiscale.get("coordinateTransformations") or [])], len(names))
        units = [OME_UNITS.get(str(axis.get("unit", "")).lower()) for axis in axes]
        return cls._checked(path, array, "".join(names).upper(), scale, units)

    @classmethod
    def _plain(cls, path: Path, array: Any) -> ZarrPages:
        shape = tuple(array.shape)
        if len(shape) == 3 and shape[-1] in COLOUR_CHANNELS and min(shape[:2]) > PLAIN_COLOUR_SIDE:
            return cls._checked(path, array, "YXC", None, [None] * 3)  # numpy's (H, W, 3): RGB, not 3-pixel-wide pages
        if len(shape) not in (2, 3):
            raise InputError(f"{path}: a {len(shape)}-D zarr array without OME-Zarr axes; unetkit takes a plain "
                             "zarr array as Y, X, as Z, Y, X or as Y, X, RGB(A): save the image as OME-Zarr, whose "
                             "axes say which are channels and which pages")
        return cls._checked(path, array, "ZYX"[3 - len(shape):], None, [None] * len(shape))

    @classmethod
    def _checked(cls, path: Path, array: Any, axes: str, scale: list[float] | None,
                 units: list[str | None]) -> ZarrPages:
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biuf":
            raise InputError(f"{path}: a zarr array of {dtype}, not of numbers; save the image as integers or floats")
        pages = cls(path, array, axes, scale, units)
        if min(pages.shape[:3]) < 1:
            raise InputError(f"{path}: an empty zarr array (shape {tuple(array.shape)}); give a zarr array that holds "
                             "an image")
        return pages

    def __getitem__(self, index: int) -> np.ndarray:
        index = self._page_index(index)
        where = np.unravel_index(index, [self._array.shape[i] for i in self._page_dims]) if self._page_dims else ()
        selection: list[Any] = [slice(None)] * len(self.axes)
        for dim, at in zip(self._page_dims, where):
            selection[dim] = int(at)
        try:
            plane = np.asarray(self._array[tuple(selection)])
        except Exception as exc:  # noqa: BLE001 - codecs raise anything on damaged chunks
            raise InputError(f"{self.path}: page {index + 1} of {len(self)} cannot be read ({type(exc).__name__}: "
                             f"{exc}); re-export the array") from None
        return self._laid_out(plane, [axis for dim, axis in enumerate(self.axes) if dim not in self._page_dims])

    def _laid_out(self, block: np.ndarray, axes: list[str]) -> np.ndarray:
        """`block` of these axes (the page axes first, in order, then Y, X and C in any order) as (..., Y, X[, C]),
        a single channel dropped."""
        order = [i for i, axis in enumerate(axes) if axis not in "YXC"] + [axes.index("Y"), axes.index("X")]
        if "C" in axes:
            order.append(axes.index("C"))
        block = block.transpose(order)
        return block[..., 0] if "C" in axes and block.shape[-1] == 1 else block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All pages read (what read_pages gives), in one read: page by page decoded a chunk spanning several
        pages once for each (40 times as long for 64-deep chunks)."""
        try:
            block = np.asarray(self._array[...])
        except Exception as exc:  # noqa: BLE001 - codecs raise anything on damaged chunks
            raise InputError(f"{self.path}: cannot be read ({type(exc).__name__}: {exc}); re-export the array"
                             ) from None
        pages = self._laid_out(block, list(self.axes)).reshape(self.shape)
        return pages if dtype is None else pages.astype(dtype)

    def page_axes(self) -> tuple[str, tuple[int, ...]]:
        """The page axes' letters (T, Z, TZ) and sizes, in the array's order."""
        return ("".join(self.axes[i] for i in self._page_dims),
                tuple(int(self._array.shape[i]) for i in self._page_dims))

    def pixel_size(self) -> tuple[float, float, float | None, str] | None:
        """(width, height, z spacing or None, unit) from OME-Zarr's scale, when x and y declare a unit."""
        if self.scale is None:
            return None
        x, y = self.axes.index("X"), self.axes.index("Y")
        unit = self.units[x]
        if unit is None or self.units[y] != unit:
            return None
        z = self.axes.index("Z") if "Z" in self.axes else None
        spacing = self.scale[z] if z is not None and self.units[z] == unit else None
        return self.scale[x], self.scale[y], spacing, unit


def zarr_stamp(path: Path) -> dict[str, int]:
    """The total size and newest modification of the files of the array read (an OME-Zarr image's first level,
    not the labels or levels added beside it): a chunk rewritten in place changes the folder's own time only
    when zarr writes it under a new name, and a nested array's never."""
    try:
        folder = ZarrPages.open(path).array_path
    except InputError:
        folder = Path(path)
    files = list(Path(folder).rglob("*"))
    if folder != Path(path):  # and the image's own metadata (its axes and scale)
        files += [Path(path) / name for name in (*ZARR_MARKERS, ".zattrs")]
    size, newest = 0, 0
    for file in files:
        if file.is_file():
            status = file.stat()
            size, newest = size + status.st_size, max(newest, status.st_mtime_ns)
    return {"size": size, "mtime_ns": newest}
