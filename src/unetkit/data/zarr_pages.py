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
SLAB_BYTES = 256 << 20  # pages of one chunk depth are read together up to this size


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


AXIS_NAMES = {"t": "T", "time": "T", "c": "C", "channel": "C", "channels": "C", "z": "Z", "y": "Y", "x": "X"}


def _dimension_names(path: Path, array: Any) -> str | None:
    """The axes a plain array names itself (zarr 3's dimension_names, xarray's _ARRAY_DIMENSIONS in zarr 2) as
    letters, or None when it names none of t, c, z, y, x; names that do not say which axes are Y and X are
    refused, not guessed past: a (y, x, z) array read as Z, Y, X gave 64 pages of 64 x 5."""
    names = getattr(getattr(array, "metadata", None), "dimension_names", None) or \
        dict(array.attrs).get("_ARRAY_DIMENSIONS")
    if not names or all(name is None for name in names):
        return None
    letters = [AXIS_NAMES.get(str(name).lower()) for name in names]
    if all(letter is None for letter in letters):  # xarray's dim_0, dim_1 when none were given: no layout said
        return None
    plain = _plain_axes(tuple(array.shape))
    if None in letters and plain is not None and all(letter in (None, given) for letter, given in zip(letters, plain)):
        return None  # some named (z, None, None) as the plain layout has them: read as before
    if None in letters or len(set(letters)) != len(letters) or not {"Y", "X"} <= set(letters) \
            or len(names) != len(array.shape):
        raise InputError(f"{path}: names its axes {list(names)}; unetkit lays out axes named t, c, z, y and x (time "
                         "and channel too): rename them, or save the image as OME-Zarr")
    return "".join(letters)  # type: ignore[arg-type]


def _plain_axes(shape: tuple[int, ...]) -> str | None:
    """How a plain array without axis names is laid out: Y, X; Y, X, RGB(A) (numpy's colour images, not 3-pixel-wide
    pages: a last axis of 3 or 4 after two longer ones); else Z, Y, X; None for other dimensions."""
    if len(shape) == 3 and shape[-1] in COLOUR_CHANNELS and min(shape[:2]) > PLAIN_COLOUR_SIDE:
        return "YXC"
    return "ZYX"[3 - len(shape):] if len(shape) in (2, 3) else None


def _inside(path: Path, group: Any) -> str:
    """What to give instead of a group that is not an image: its images (OME-Zarr groups one level down, as
    bioformats2raw's 0/ or a labels/ group's masks) and arrays, or the way to a plate's wells."""
    attributes = dict(group.attrs)
    if "plate" in attributes or "plate" in (attributes.get("ome") or {}):
        return "; it is an OME-Zarr plate: give the image of one well's field, e.g. " + str(path / "A" / "1" / "0")
    images = sorted(name for name, child in group.groups() if _multiscales(dict(child.attrs)) is not None)
    arrays = sorted(name for name, _ in group.arrays())
    choices = images + arrays
    if not choices:
        return "; give the zarr array or OME-Zarr image itself"
    kind = "images" if images and not arrays else "arrays" if arrays and not images else "images and arrays"
    return (f" (it holds the {kind} {', '.join(choices[:3])}{', ...' if len(choices) > 3 else ''}: give one of them, "
            f"e.g. {path / choices[0]})")


class ZarrPages(LazyPages):
    """The (P, H, W[, C]) pages of a zarr array, each read when it is indexed (`pages[i]`), as prediction takes
    them: a volume larger than memory is segmented a plane at a time.

    `axes`: one letter per array axis (OME-Zarr's names, upper case); `scale`: OME-Zarr's per-axis pixel size
    and `units` per axis where it declares them.
    """

    def __init__(self, path: Path, array: Any, axes: str, scale: list[float] | None, units: list[str | None],
                 alpha: bool = False) -> None:
        self.path, self._array, self.axes, self.scale, self.units = path, array, axes, scale, units
        self.array_path = path  # the folder of the array read (an OME-Zarr image's first level)
        self._page_dims = [i for i, axis in enumerate(axes) if axis not in "CYX"]
        self._channel_dim = axes.index("C") if "C" in axes else None
        channels = array.shape[self._channel_dim] if self._channel_dim is not None else 1
        self._channels = channels - 1 if alpha else channels  # a plain RGBA array's alpha is dropped, as a PNG's
        channels = self._channels
        self.metadata_folder: Path | None = None  # the image whose axes and scale lay out this array, if any
        self._slab: tuple[tuple[int, ...], np.ndarray] | None = None  # the chunk-deep pages last read
        self._stamp_at_first_read: dict[str, int] | None = None
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
        try:  # not the consolidated metadata: a copy of it left stale by a resize read the old shape without a word
            node = zarr.open(store=str(path), mode="r", use_consolidated=False)
        except Exception as exc:  # noqa: BLE001 - damaged metadata raises anything
            missing_codec = "codec" in str(exc).lower() or isinstance(exc, (ImportError, KeyError))
            fix = ("install the package of its compressor (e.g. pip install imagecodecs), or re-export it with "
                   "a standard one" if missing_codec else "check that the folder is a whole zarr array or OME-Zarr image")
            raise InputError(f"{path}: cannot be read as zarr ({type(exc).__name__}: {exc}); {fix}") from None
        try:
            multiscales = _multiscales(dict(node.attrs))
            if isinstance(node, zarr.Group):
                if multiscales is None:
                    raise InputError(f"{path}: a zarr group, not an image (no OME-Zarr multiscales){_inside(path, node)}")
                return cls._ome_image(path, node, multiscales[0])
            if multiscales is not None:  # an array with the metadata on itself: read as its own level 0
                return cls._ome_level(path, node, multiscales[0], 0)
            level_of = cls._level_of_an_image(path)  # img.zarr/0 given itself: the image's axes lay it out
            if level_of is not None:
                pages = cls._ome_level(path, node, *level_of)
                pages.metadata_folder = path.parent
                return pages
            return cls._plain(path, node)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - hand-edited or foreign metadata: any shape of JSON
            raise InputError(f"{path}: its OME-Zarr metadata cannot be laid out ({type(exc).__name__}: {exc}); "
                             "re-export the image, or fix its multiscales (axes, datasets, scale)") from None

    @staticmethod
    def _level_of_an_image(path: Path) -> tuple[dict[str, Any], int] | None:
        """(multiscale, level index) when `path` is a level of the OME-Zarr image in its parent folder."""
        import zarr

        if not is_zarr(path.parent):
            return None
        try:
            multiscales = _multiscales(dict(zarr.open_group(str(path.parent), mode="r", use_consolidated=False).attrs))
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
        pages.array_path, pages.metadata_folder = path / level, path
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
        units = [OME_UNITS.get(str(axis.get("unit") or "").lower(), str(axis.get("unit") or "") or None)
                 for axis in axes]  # "um" or "µm" instead of OME's "micrometer": calibration knows them too
        return cls._checked(path, array, "".join(names).upper(), scale, units)

    @classmethod
    def _plain(cls, path: Path, array: Any) -> ZarrPages:
        shape = tuple(array.shape)
        named = _dimension_names(path, array)
        if named is not None:
            return cls._checked(path, array, named, None, [None] * len(shape))
        axes = _plain_axes(shape)
        if axes is None:
            raise InputError(f"{path}: a {len(shape)}-D zarr array without OME-Zarr axes; unetkit takes a plain "
                             "zarr array as Y, X, as Z, Y, X or as Y, X, RGB(A): save the image as OME-Zarr, whose "
                             "axes say which are channels and which pages")
        # numpy's (H, W, 4) is RGBA: its alpha is transparency, dropped as a PNG's is
        return cls._checked(path, array, axes, None, [None] * len(shape), alpha=axes == "YXC" and shape[-1] == 4)

    @classmethod
    def _checked(cls, path: Path, array: Any, axes: str, scale: list[float] | None,
                 units: list[str | None], alpha: bool = False) -> ZarrPages:
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise InputError(f"{path}: its OME-Zarr level is a group, not an array; re-export the image")
        dtype = np.dtype(array.dtype)
        if dtype.kind not in "biuf":
            raise InputError(f"{path}: a zarr array of {dtype}, not of numbers; save the image as integers or floats")
        pages = cls(path, array, axes, scale, units, alpha)
        if min(pages.shape[:3]) < 1:
            raise InputError(f"{path}: an empty zarr array (shape {tuple(array.shape)}); give a zarr array that holds "
                             "an image")
        return pages

    def __getitem__(self, index: int) -> np.ndarray:
        """Page `index`. Chunks deeper than one page are decoded whole whatever is read of them: the pages of one
        chunk depth are read together and kept for the next index (a 64-deep chunk was decoded 64 times, once
        for each of its pages), so memory holds that many pages, up to SLAB_BYTES (_slab_depth). Reading the last page checks that the array did
        not change since the first was read (a mask half of old and half of new pixels otherwise)."""
        index = self._page_index(index)
        if self._stamp_at_first_read is None:
            self._stamp_at_first_read = self.stamp()
        where = [int(at) for at in np.unravel_index(index, [self._array.shape[i] for i in self._page_dims])] \
            if self._page_dims else []
        depth = self._slab_depth()
        key = (*where[:-1], where[-1] // depth) if where else ()
        if self._slab is None or self._slab[0] != key:
            selection: list[Any] = [slice(None)] * len(self.axes)
            for dim, at in zip(self._page_dims, where):
                selection[dim] = int(at)
            if where:  # the innermost page axis: its whole chunk
                start = where[-1] // depth * depth
                selection[self._page_dims[-1]] = slice(start, start + depth)
            try:
                self._slab = (key, np.asarray(self._array[tuple(selection)]))
            except Exception as exc:  # noqa: BLE001 - codecs raise anything on damaged chunks
                self._slab = None
                raise InputError(f"{self.path}: page {index + 1} of {len(self)} cannot be read ({type(exc).__name__}: "
                                 f"{exc}); re-export the array") from None
        slab = self._slab[1]
        if where:
            inner = self._page_dims[-1]
            position = sum(1 for dim in range(inner) if dim not in self._page_dims[:-1])  # its axis in the slab
            slab = np.take(slab, where[-1] % depth, axis=position)
        if index == len(self) - 1:
            self._check_unchanged()
        return self._laid_out(slab, [axis for dim, axis in enumerate(self.axes) if dim not in self._page_dims])

    def _slab_depth(self) -> int:
        """Pages one chunk spans along the innermost page axis (1 for a plane, or chunks one page deep), when that
        many pages take at most SLAB_BYTES; else 1: each page read alone, its chunks decoded once for each page
        (slow, but a 20000^2 plane of 64-deep chunks held 64 planes, 25 GB)."""
        if not self._page_dims:
            return 1
        chunks = getattr(self._array, "chunks", None)
        depth = max(1, int(chunks[self._page_dims[-1]])) if chunks else 1
        page_bytes = math.prod(self.shape[1:]) * self.dtype.itemsize
        return depth if depth * page_bytes <= SLAB_BYTES else 1

    def _check_unchanged(self) -> None:
        if self._stamp_at_first_read is not None and self.stamp() != self._stamp_at_first_read:
            self._stamp_at_first_read = None
            raise InputError(f"{self.path}: the array changed while its pages were being read; run again once it "
                             "is written")

    def _laid_out(self, block: np.ndarray, axes: list[str]) -> np.ndarray:
        """`block` of these axes (the page axes first, in order, then Y, X and C in any order) as (..., Y, X[, C]),
        a single channel dropped."""
        order = [i for i, axis in enumerate(axes) if axis not in "YXC"] + [axes.index("Y"), axes.index("X")]
        if "C" in axes:
            order.append(axes.index("C"))
        block = block.transpose(order)
        if "C" in axes:
            block = block[..., : self._channels]
        return block[..., 0] if "C" in axes and block.shape[-1] == 1 else block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All pages read (what read_pages gives), in one read: page by page decoded a chunk spanning several
        pages once for each (40 times as long for 64-deep chunks)."""
        before = self.stamp()
        try:
            block = np.asarray(self._array[...])
        except Exception as exc:  # noqa: BLE001 - codecs raise anything on damaged chunks
            raise InputError(f"{self.path}: cannot be read ({type(exc).__name__}: {exc}); re-export the array"
                             ) from None
        self._stamp_at_first_read = before
        self._check_unchanged()
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

    def stamp(self) -> dict[str, int]:
        """The total size and newest modification of the files of the array read (an OME-Zarr image's first
        level, not the labels or levels added beside it) and of the image's metadata (its axes and scale, also
        when a level is given itself): a chunk rewritten in place changes the folder's own time only when zarr
        writes it under a new name, and a nested array's never."""
        files = list(Path(self.array_path).rglob("*"))
        if self.metadata_folder is not None:
            files += [self.metadata_folder / name for name in (*ZARR_MARKERS, ".zattrs")]
        return _files_stamp(files)


def zarr_stamp(path: Path) -> dict[str, int]:
    """ZarrPages.stamp of the array at `path`, or of the folder's files when it cannot be opened."""
    try:
        return ZarrPages.open(path).stamp()
    except InputError:
        return _files_stamp(list(Path(path).rglob("*")))


def _files_stamp(files: list[Path]) -> dict[str, int]:
    """The total size and newest modification of `files` (those that exist)."""
    size, newest = 0, 0
    for file in files:
        if file.is_file():
            status = file.stat()
            size, newest = size + status.st_size, max(newest, status.st_mtime_ns)
    return {"size": size, "mtime_ns": newest}
