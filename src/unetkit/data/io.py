"""Read and write images, masks and stacks, always in one axis order.

Every reader returns pages: an array of shape (P, H, W) for single-channel data
or (P, H, W, C) for colour, with P = 1 for an ordinary 2-D file. TIFF goes
through tifffile (which decodes LZW, Deflate, JPEG... through imagecodecs);
everything else through Pillow; zarr arrays and OME-Zarr images (folders) through
zarr (data/zarr_pages.py). Problems come back as `InputError` naming the
file, never as a library traceback.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import tifffile
from PIL import GifImagePlugin, Image, ImageOps, ImageSequence

from unetkit.data.calibration import Calibration, PageAxes
from unetkit.data.lazy_pages import LazyPages
from unetkit.data.zarr_pages import ZarrPages, is_zarr
from unetkit.errors import InputError, WriteError
from unetkit.text import counted

TIFF_SUFFIXES = frozenset({".tif", ".tiff"})
PILLOW_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".pgm", ".ppm", ".pbm"})
IMAGE_SUFFIXES = TIFF_SUFFIXES | PILLOW_SUFFIXES
ZARR_SUFFIX = ".zarr"  # zarr folders inside a folder of images are images when so named (any zarr given directly is)
LOSSY_SUFFIXES = frozenset({".jpg", ".jpeg"})
EXIF_ORIENTATION = 0x0112  # the EXIF tag saying how a photo is to be turned for display

# Larger images are refused before decoding: a decompression bomb would fill memory.
DEFAULT_MAX_PIXELS = 1 << 31  # per image page; a larger one is more likely a damaged header than a real image



def without_missing_dots(path: Path) -> Path:
    """`xx/..` as the folder it names on paper when `xx` does not exist (the system cannot go through it): as
    given, `train --out xx/..` made an empty `xx`, then refused `.` as written into by another process (audit).
    A path that exists keeps its `..`, which the system resolves through links."""
    if ".." not in path.parts:
        return path
    before = Path(*path.parts[:path.parts.index("..")])  # what the first `..` leaves: through a link, elsewhere
    return path if before.exists() else Path(os.path.normpath(path))

def max_pixels() -> int:
    """The per-page pixel limit: UNETKIT_MAX_PIXELS if set (read when used: a bad value is an error line, not an
    import-time traceback)."""
    text = os.environ.get("UNETKIT_MAX_PIXELS", "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    if not (text.isascii() and text.isdecimal()) or int(text) < 1:
        raise InputError(f"UNETKIT_MAX_PIXELS={text}: give a whole number of pixels, e.g. {DEFAULT_MAX_PIXELS} "
                         "(the default), or unset it")
    return int(text)


@dataclass(frozen=True)
class Page:
    """One 2-D image of the input: a file, or one page of a stack."""

    path: Path
    index: int | None  # page number inside a stack, None for a single-page file
    array: np.ndarray  # (H, W) or (H, W, C)

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 2 else self.array.shape[-1]

    @property
    def name(self) -> str:
        """What users see in messages and what outputs are named after."""
        return self.path.stem if self.index is None else f"{self.path.stem}[{self.index}]"

    @property
    def location(self) -> str:
        """The file (and page) in full, for messages that must say where to look."""
        return str(self.path) if self.index is None else f"{self.path}[{self.index}]"


def natural_key(text: str) -> list[object]:
    """Sort key that puts "2" before "10" (ISBI files are 0..29 without padding)."""
    # isdecimal, not isdigit: "²" is a digit that int() refuses and that \d does not split off
    return [int(part) if part.isdecimal() else part.lower() for part in re.split(r"(\d+)", text)]


# What `unetkit predict` writes beside NAME.png: probabilities (--prob) and cells (--instances).
PROB_SUFFIX = "_prob"
CELLS_SUFFIX = "_cells"


def first_clash(outputs: list[tuple[str, Path | str]]) -> tuple[str, Path | str, Path | str] | None:
    """(name, first owner, second owner) of the first output name two sources would both write, or None.

    Names compare case-insensitively: on macOS and Windows A.png and a.png are one file.
    """
    owners: dict[str, Path | str] = {}
    for name, source in outputs:
        key = name.casefold()
        if key in owners:
            return name, owners[key], source
        owners[key] = source
    return None


def list_image_files(path: Path) -> list[Path]:
    """The image files a path stands for: the file itself, or a folder's images (not recursive)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder; check the path")
    if is_zarr(path):  # a folder that is one image, named as itself also when given as "." or ".."
        return [Path(os.path.abspath(path)) if path.name in ("", ".", "..") else path]
    _refuse_zarr_without_metadata(path)
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise InputError(f"{path}: not an image file (expected one of {', '.join(sorted(IMAGE_SUFFIXES))})")
        return [path]
    children = [entry for entry in path.iterdir() if not entry.name.startswith(".")]
    entries = [entry for entry in children if entry.suffix.lower() in IMAGE_SUFFIXES]
    broken = sorted((entry for entry in entries if broken_link(entry)), key=lambda p: natural_key(p.name))
    if broken:  # skipped, it left its partner an orphan ("has no mask") or a pair out without a word
        more = f" ({counted(len(broken) - 1, 'more broken link')} in {path})" if len(broken) > 1 else ""
        raise InputError(f"{broken[0]}: {broken_link(broken[0])}{more}; fix the link or remove it")
    files = [entry for entry in entries if entry.is_file()]
    zarrs = [entry for entry in children if entry.suffix.lower() == ZARR_SUFFIX and entry.is_dir()]
    for entry in zarrs:
        _refuse_zarr_without_metadata(entry)
    files += [entry for entry in zarrs if is_zarr(entry)]
    if not files:
        inside = sorted(entry.name for entry in children if entry.is_dir())
        where = (f" but subfolders ({', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''}): subfolders are not "
                 "searched; point to the folder that holds the images themselves, or move them into one folder") if inside else ""
        hidden = sorted(entry.name for entry in path.iterdir() if entry.name.startswith(".")
                        and entry.suffix.lower() in IMAGE_SUFFIXES and not entry.name.startswith("._"))
        if hidden and not where:  # names starting with "." are hidden files (macOS's ._x.png metadata among them)
            where = (f" but hidden ones ({', '.join(hidden[:3])}{', ...' if len(hidden) > 3 else ''}), which are "
                     "skipped as system files; rename them without the leading '.'")
        raise InputError(f"{path}: the folder holds no images (PNG, TIFF, ...){where or '; point to the folder with the images'}")
    return sorted(files, key=lambda p: natural_key(p.name))


def _refuse_zarr_without_metadata(path: Path) -> None:
    """A folder named .zarr that holds files but no zarr metadata: zarr's .zarray / .zgroup are hidden files, which
    a copy of the visible ones (`cp dir/*`, some file managers) leaves behind; skipped, it went unpredicted."""
    if path.suffix.lower() == ZARR_SUFFIX and path.is_dir() and not is_zarr(path) and any(path.iterdir()):
        raise InputError(f"{path}: named .zarr but holds no zarr metadata (.zarray, .zgroup or zarr.json), as a copy "
                         "without its hidden files is; copy the zarr again whole, or rename the folder")


def _check_pixel_count(path: Path, shape: tuple[int, ...]) -> None:
    pixels = int(np.prod(shape[:2])) if len(shape) >= 2 else 0
    limit = max_pixels()
    if pixels > limit:
        raise InputError(
            f"{path}: {shape[1]} x {shape[0]} pixels is above the limit of {limit}; "
            "crop it, or raise UNETKIT_MAX_PIXELS if it is genuine"
        )


class _LoggedErrors(logging.Handler):
    """Collects what tifffile logs as errors: it logs, not raises, when a stack is cut short and drops pages."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _damaged(path: Path, errors: _LoggedErrors) -> InputError:
    return InputError(f"{path}: is damaged or cut short ({errors.messages[0][:200]}); re-export it")


@contextmanager
def _logged_errors() -> Iterator[_LoggedErrors]:
    """The problems tifffile logs instead of raising (that is how damage shows), collected meanwhile."""
    tifffile_log, errors = logging.getLogger("tifffile"), _LoggedErrors()
    tifffile_log.addHandler(errors)
    try:
        yield errors
    finally:
        tifffile_log.removeHandler(errors)


@contextmanager
def _open_tiff(path: Path) -> Iterator[tuple[tifffile.TiffFile, _LoggedErrors]]:
    """A TIFF with every page indexed (series detection loops forever on a circular IFD chain otherwise) and the
    problems tifffile logs collected while it is open."""
    with _logged_errors() as errors, tifffile.TiffFile(path) as tif:
        len(tif.pages)
        yield tif, errors


def _is_overview(series: tifffile.TiffPageSeries, first: tifffile.TiffPageSeries) -> bool:
    """A reduced-resolution page (flagged, or smaller than the first image both ways) is a preview, not a page."""
    if series is first:
        return False
    if getattr(series.keyframe, "is_reduced", False):
        return True
    size = lambda s: (s.shape[s.axes.index("Y")], s.shape[s.axes.index("X")])  # noqa: E731
    return all(a < b for a, b in zip(size(series), size(first)))


def _describe(series: tifffile.TiffPageSeries) -> str:
    """A series' size as messages give sizes, width x height, then its other axes (channels, pages): `700 x 300
    uint8`, `512 x 512 x 3 uint8`."""
    shape, axes = series.shape, series.axes
    if "X" in axes and "Y" in axes:
        rest = [str(n) for n, axis in zip(shape, axes) if axis not in "XY"]
        shape = (shape[axes.index("X")], shape[axes.index("Y")], *rest)
    return f"{' x '.join(map(str, shape))} {series.dtype}"


def planar_colour_hint(path: Path | str) -> str:
    """For messages about an image's channels or pages: if `path` is a TIFF whose colour planes are stored one after
    another (what tifffile saves for a (3, H, W) array by default), the planes may be grey sections; else ""."""
    path = Path(str(path).split("[")[0])  # a stack page's location reads PATH[i]
    if path.suffix.lower() not in (".tif", ".tiff") or not path.is_file():
        return ""
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            planar = page.photometric == tifffile.PHOTOMETRIC.RGB and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
            planes = page.samplesperpixel
    except Exception:  # the reader gives its own message for a damaged file; a hint is only a hint
        return ""
    if not planar:
        return ""
    return (f" (it is read as one colour image because its {planes} planes are stored as RGB, as tifffile saves a "
            f"({planes}, H, W) array by default; if they are {planes} grey sections, re-save it with "
            "tifffile.imwrite(path, array, photometric='minisblack'))")


MAX_CHANNEL_PAGES = 4  # an image of this many pages beside a one-page mask may be one image's channels


def channel_pages_hint(path: Path | str, pages: int, mask_pages: int) -> str:
    """For a TIFF of a few pages beside a one-page mask: the pages may be one image's channels, which is what
    tifffile.imwrite saves for a (C, H, W) array (DAPI + membrane), and how to re-save them as channels; else ""."""
    if mask_pages != 1 or not 2 <= pages <= MAX_CHANNEL_PAGES or Path(path).suffix.lower() not in (".tif", ".tiff"):
        return ""
    return (f" (if its {pages} pages are the channels of one image, as tifffile.imwrite saves a ({pages}, H, W) "
            f"array, re-save it as channels: tifffile.imwrite(path, array, imagej=True, metadata={{'axes': 'CYX'}}))")


def _refuse_planar_colour_mask(path: Path, page: tifffile.TiffPage, shape: tuple[int, ...]) -> None:
    """Refuse a mask TIFF whose RGB colours are stored as separate planes: what tifffile writes for a (3, H, W) array.

    Whether such a file is one colour mask or a stack of 3 masks cannot be told
    from the file; read as colour, a 3-section label stack became one mask of up
    to 8 colours (8 classes) without a word. Images are read as colour (Bio-Formats
    and EPICS write planar RGB too): a 3-section image stack then meets its mask's
    page count or the run's channels, which say what is wrong.
    """
    if page.photometric == tifffile.PHOTOMETRIC.RGB and page.planarconfig == tifffile.PLANARCONFIG.SEPARATE:
        planes = page.samplesperpixel
        raise InputError(
            f"{path}: a mask whose {planes} colour planes are stored one after another, as tifffile saves a "
            f"{' x '.join(map(str, shape))} array by default, so it may be {planes} masks or one colour mask; re-save "
            f"a stack of masks with tifffile.imwrite(path, array, photometric='minisblack'), or colour with the channels last "
            f"(tifffile.imwrite(path, numpy.moveaxis(array, -3, -1)))")


CHANNELS_LAST_SIDE = 16  # a numpy array's "pages" no wider than this are its channels (H, W, C)


def series_axes(series: tifffile.TiffPageSeries) -> str:
    """A series' axes, with numpy's channels-last arrays read as images: `tifffile.imwrite` stores an (H, W, C)
    array of 2 or 5+ channels (3 and 4 become RGB) as H grey pages C pixels wide (axes QYX, or IYX without its
    metadata), which Fiji shows the same way; a 512 x 512 two-channel image was read as 512 images of 512 x 2.
    Where the pages are no wider than CHANNELS_LAST_SIDE and the two axes before are longer, the last axis is
    the channels (a stack of 16-pixel-wide images is no use to a U-Net; 10-channel images are)."""
    axes, shape = series.axes, series.shape
    if (getattr(series, "kind", "") in ("shaped", "generic", "uniform") and len(axes) >= 3 and axes[-2:] == "YX"
            and axes[-3] in "QI" and not any(axis in "SC" for axis in axes)
            and 2 <= shape[-1] <= CHANNELS_LAST_SIDE < min(shape[-3], shape[-2])):
        return axes[:-3] + "YXC"
    return axes


def _data_series(series: list) -> tuple[list, bool]:
    """A TIFF's series of data (thumbnails and overviews left out), and whether they are the pages of one stack:
    equal in axes, shape and type, as pages written one TiffWriter.write at a time are, one series each."""
    full = [s for s in series if not _is_overview(s, series[0])]
    return full, len(full) > 1 and all((s.axes, s.shape, s.dtype) == (series[0].axes, series[0].shape, series[0].dtype)
                                       for s in full)


def _tiff_pages(path: Path, labels: bool = False) -> tuple[np.ndarray, bool]:
    """A TIFF as (P, H, W[, C]): leading axes become pages, 'S'/'C' axes become channels; and whether the last is alpha.
    `labels`: a mask, whose planar colour is refused as ambiguous (`_refuse_planar_colour_mask`)."""
    with _open_tiff(path) as (tif, errors):
        series = tif.series
        if errors.messages:  # damaged structure: refuse before decoding (a cut tiled file fills gigabytes of zeros)
            raise _damaged(path, errors)
        axes, shape = series_axes(series[0]), series[0].shape
        if labels:
            _refuse_planar_colour_mask(path, tif.pages[0], shape)
        alpha = any(int(sample) in (1, 2) for sample in (tif.pages[0].extrasamples or ()))  # associated/unassociated
        _check_pixel_count(path, (shape[axes.index("Y")], shape[axes.index("X")]))
        full, one_stack = _data_series(series)
        if one_stack:
            # Pages written one call at a time (a loop over TiffWriter.write) are one series each: one stack.
            array = np.stack([s.asarray() for s in full])
            axes, shape = "Q" + axes, (len(full), *shape)
        elif len(full) > 1:  # reading the first alone would drop the others without a word
            other = next(s for s in full if (s.axes, s.shape, s.dtype) != (axes, shape, series[0].dtype))
            raise InputError(f"{path}: holds {len(full)} images that differ in size or type (width x height: {_describe(series[0])} "
                             f"and {_describe(other)}); save them as separate files, or as one stack of equal pages")
        else:
            array = series[0].asarray()
    if errors.messages:
        raise _damaged(path, errors)
    channel_axes = [i for i, axis in enumerate(axes) if axis in "SC"]
    if len(channel_axes) > 1:
        raise InputError(f"{path}: has several channel axes ({axes}); save one channel axis")
    y, x = axes.index("Y"), axes.index("X")
    page_axes = [i for i in range(len(axes)) if i not in (y, x, *channel_axes)]
    array = np.transpose(array, page_axes + [y, x] + channel_axes)
    pages = int(np.prod([shape[i] for i in page_axes])) if page_axes else 1
    return array.reshape((pages, shape[y], shape[x]) + tuple(shape[i] for i in channel_axes)), alpha


ARITHMETIC_SOF = tuple(bytes([0xFF, marker]) for marker in (0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))


def _check_file_size(path: Path, image: Image.Image) -> None:
    """Refuse a PNG or JPEG too small for its declared size, before decoding: a damaged header that declares
    gigapixels is otherwise decoded into gigabytes (found by fuzzing: a 654-byte JPEG took 15 s and 6 GB and came
    back as grey, a 1 KB animated PNG 7 s and 8 GB). The bounds hold for every valid file: Deflate compresses at
    most 1032:1 and a PNG stores at least 1 bit per pixel and a filter byte per row; Huffman-coded JPEG spends at
    least one bit on every 8 x 8 block (its DC code). Arithmetic-coded JPEG has no such bound and is not checked."""
    width, height, size = image.width, image.height, path.stat().st_size
    if image.format == "PNG":
        least = height * (1 + -(-width // 8)) / 1032 / 2  # with slack: blank 1-bit PNGs from zlib reach 1029:1
    elif image.format in ("JPEG", "MPO"):
        least = -(-width // 8) * -(-height // 8) / 8
    else:
        return
    if size < least and not (image.format != "PNG" and any(marker in path.read_bytes() for marker in ARITHMETIC_SOF)):
        raise InputError(f"{path}: declares {width} x {height} pixels but holds only {size} bytes; it is damaged, re-export it")


def _is_16_bit_colour_png(path: Path) -> bool:
    """A PNG of 16-bit RGB, RGBA or grey+alpha, which Pillow would cut to 8 bits (its header's bit depth and colour type)."""
    with open(path, "rb") as handle:
        header = handle.read(26)
    return header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR" and header[24] == 16 and header[25] in (2, 4, 6)


@contextmanager
def _pillow_image(path: Path) -> Iterator[Image.Image]:
    """Image.open without Pillow's decompression-bomb guard, which unetkit's own pixel limit replaces, for this
    read only: the guard is a process-wide setting of the host program's, and is put back as it was."""
    guard = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            yield image
    finally:
        Image.MAX_IMAGE_PIXELS = guard


def _pillow_page(path: Path, keep_palette_indices: bool) -> tuple[np.ndarray, list[int] | None]:
    """A Pillow image as (1, H, W[, C]) and its palette when the indices are kept."""
    with _pillow_image(path) as image:
        _check_pixel_count(path, (image.height, image.width))
        _check_file_size(path, image)
        if image.format == "PNG" and _is_16_bit_colour_png(path):
            import imagecodecs  # tifffile's codec library, already installed: Pillow keeps 8 bits of 16-bit colour

            return imagecodecs.png_decode(Path(path).read_bytes())[None], None
        if getattr(image, "n_frames", 1) > 1:  # an animated GIF, WebP or PNG: its frames are the pages
            return _pillow_frames(path, image, keep_palette_indices)
        image.load()
        if image.getexif().get(EXIF_ORIENTATION, 1) != 1:  # a camera's photo stored sideways: as viewers show it,
            image = ImageOps.exif_transpose(image)  # the way its mask was drawn (and its predicted mask is looked at)
        palette = None
        if image.mode == "P":
            if keep_palette_indices:
                palette = image.getpalette()
            else:
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif image.mode == "CMYK":
            image = image.convert("RGB")
        elif image.mode in ("I;16", "I;16B", "I;16L"):
            return np.asarray(image, dtype=np.uint16)[None], None
        array = np.asarray(image)
    return array[None], palette


def _pillow_frames(path: Path, image: Image.Image, keep_palette_indices: bool) -> tuple[np.ndarray, list[int] | None]:
    """Every frame of a multi-frame Pillow image as (P, H, W[, C]): the first alone dropped the rest without a word
    (a 4-frame GIF was predicted as one image). Frames of one palette keep their indices when asked (a GIF's later
    frames that carry a palette of their own, as Pillow writes them, come as RGB: then the mask is read as
    colours); otherwise all frames are read in one mode, grey when every frame is grey."""
    frames: list[Image.Image] = []
    strategy = GifImagePlugin.LOADING_STRATEGY  # a GIF's later frames came as RGB, their palette indices lost
    GifImagePlugin.LOADING_STRATEGY = GifImagePlugin.LoadingStrategy.RGB_AFTER_DIFFERENT_PALETTE_ONLY
    try:
        for frame in ImageSequence.Iterator(image):
            _check_pixel_count(path, (frame.height, frame.width))
            frames.append(frame.copy())
    finally:
        GifImagePlugin.LOADING_STRATEGY = strategy
    palettes = {tuple(frame.getpalette() or ()) for frame in frames}
    if keep_palette_indices and all(frame.mode == "P" for frame in frames) and len(palettes) == 1:
        return np.stack([np.asarray(frame) for frame in frames]), frames[0].getpalette()
    modes = {frame.mode for frame in frames}
    if modes <= {"L", "I;16", "I;16B", "I;16L", "I", "F"} and len(modes) == 1:
        return np.stack([np.asarray(frame) for frame in frames]), None
    alpha = any(frame.mode in ("RGBA", "LA", "PA") or "transparency" in frame.info for frame in frames)
    return np.stack([np.asarray(frame.convert("RGBA" if alpha else "RGB")) for frame in frames]), None


def read_pages(path: Path, *, labels: bool = False) -> tuple[np.ndarray, list[int] | None]:
    """Decode a file into (P, H, W[, C]) pages, and a palette for palette-PNG masks.

    With `labels=True` a palette image keeps its indices (the classes) instead of
    being turned into colours.
    """
    path = Path(path)
    if is_zarr(path):
        return _zarr_pages(path), None
    if not path.is_file():
        raise InputError(f"{path}: no such file; check the path")
    try:
        if path.suffix.lower() in TIFF_SUFFIXES:
            (array, alpha), palette = _tiff_pages(path, labels), None
        else:
            array, palette = _pillow_page(path, keep_palette_indices=labels)
            alpha = True  # Pillow's 2- and 4-channel modes are LA and RGBA (CMYK was converted above)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001
        # Decoders raise anything on damaged files (seen: codec RuntimeErrors, ZeroDivisionError, TypeError,
        # AssertionError, MemoryError); the message keeps the type and text.
        raise InputError(f"{path}: cannot be read as an image ({type(exc).__name__}: {exc}); re-export it as PNG or TIFF") from None
    if array.ndim not in (3, 4) or min(array.shape[1:3]) < 1:
        raise InputError(f"{path}: unexpected image shape {array.shape}; save it as a 2-D image or a stack of 2-D images")
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 4 and array.shape[-1] in (2, 4) and alpha:  # drop an alpha channel; a TIFF's 2 channels are data
        array = array[..., :-1]
        if array.shape[-1] == 1:
            array = array[..., 0]
    return array, palette


def _zarr_pages(path: Path) -> np.ndarray:
    """A zarr array's (P, H, W[, C]) pages, all read."""
    pages = ZarrPages.open(path)
    _check_pixel_count(path, pages.shape[1:])
    return np.asarray(pages)


def one_image(path: Path) -> bool:
    """Whether `path` is one image or stack (a file, or a zarr folder), not a folder of them."""
    return Path(path).is_file() or is_zarr(Path(path))


def declared_size(path: Path) -> tuple[int, int] | None:
    """(pages, pixels of all pages) a file's header declares, without decoding it; None when the header cannot be
    read (the reader reports that file properly later)."""
    try:
        if is_zarr(path):
            shape = ZarrPages.open(path).shape
            return shape[0], int(np.prod(shape[:3]))
        if Path(path).suffix.lower() in TIFF_SUFFIXES:
            with _open_tiff(path) as (tif, _):
                series = tif.series[0]
                # a stack written page by page is one series a page, read as pages (_tiff_pages): counted so too;
                # counted as one page, --instances began a stack it refuses and the disk check saw one page (audit)
                full, one_stack = _data_series(tif.series)
                same = len(full) if one_stack else 1
                axes = series_axes(series)
                pages = same * int(np.prod([n for n, axis in zip(series.shape, axes) if axis not in "YXSC"]))
                return pages, same * int(np.prod([n for n, axis in zip(series.shape, axes) if axis not in "SC"]))
        with _pillow_image(path) as image:
            frames = int(getattr(image, "n_frames", 1))
            return frames, image.width * image.height * frames
    except Exception:  # noqa: BLE001 - any damage: unknown here, reported by read_pages
        return None


LAZY_BYTES = 256 << 20  # TIFFs whose pixels take more than this are memory-mapped or decoded a page at a time
COMPRESSION_SEEN = 64  # a compressed TIFF this many times smaller than LAZY_BYTES may still hold that much


def read_pages_lazily(path: Path) -> np.ndarray | TiffPages | ZarrPages:
    """Like `read_pages` for images, but a large grey TIFF stack is not decoded whole: one stored uncompressed
    in one piece (ImageJ, tifffile) comes back memory-mapped, one of compressed or separately stored pages as
    TiffPages, which decodes a page when it is indexed; a zarr array of grey pages as ZarrPages, likewise.

    Prediction then reads only the rows of the tiles it is working on, and a stack's pages one at a time, so an
    image or a volume larger than memory can be segmented.
    """
    path = Path(path)
    if is_zarr(path):  # grey pages are read one at a time, colour ones whole (as read_pages gives them)
        pages = ZarrPages.open(path)
        _check_pixel_count(path, pages.shape[1:])
        return pages if pages.ndim == 3 else np.asarray(pages)
    if path.suffix.lower() in TIFF_SUFFIXES and path.is_file():
        size = path.stat().st_size
        mapped = _memory_mapped_pages(path) if size > LAZY_BYTES else None
        if mapped is not None:
            _check_pixel_count(path, mapped.shape[1:])
            return mapped
        paged = TiffPages.of(path) if size > LAZY_BYTES // COMPRESSION_SEEN else None
        if paged is not None:
            _check_pixel_count(path, paged.shape[1:])
            return paged
    return read_pages(path)[0]


def _stamp(path: Path) -> tuple[int, int, int]:
    """What changes when a file is rewritten or replaced: its inode, size and modification time."""
    status = os.stat(path)
    return status.st_ino, status.st_size, status.st_mtime_ns


def _plane_layout(tif: tifffile.TiffFile) -> tuple[list[int], tuple[int, int, int], np.dtype] | None:
    """(page indices, (P, H, W), dtype) of a TIFF whose data is grey planes, one a page, all in this file (a stack
    written page by page too); None for anything else."""
    full, one_stack = _data_series(tif.series)
    if len(full) > 1 and not one_stack:
        return None  # images of other sizes: read_pages refuses the file
    if any(axes[-2:] != "YX" or any(axis in "SC" for axis in axes) for axes in map(series_axes, full)):
        return None
    if one_stack:  # pages written one at a time: one series each, one page each
        indices = [series.pages[0].index for series in full
                   if len(series.pages) == 1 and series.ndim == 2 and series.pages[0].parent is tif]
        if len(indices) != len(full):
            return None
    else:
        series = full[0]
        indices = [page.index for page in series.pages if page is not None]
        if series.ndim < 2 or len(indices) != int(np.prod(series.shape[:-2])):
            return None  # a page holding several planes, or pages tifffile left out
        if any(page.parent is not tif for page in series.pages):
            return None  # an OME series spread over several files: read_pages reads them all
    height, width = full[0].shape[-2:]
    return indices, (len(indices), int(height), int(width)), np.dtype(full[0].dtype)


class TiffPages(LazyPages):
    """The (P, H, W) grey pages of a TIFF stack, each decoded when it is indexed (`pages[i]`), as prediction takes
    them: a 500-page compressed stack was decoded whole, into memory, before its first page was predicted.

    The file stays open while the object lives (reopening it for each page indexed every page again: 90 s of a
    5000-page stack's prediction); a page that cannot be decoded, or a file changed since it was opened, is an
    InputError naming the file and the page.
    """

    ndim = 3

    def __init__(self, path: Path, tif: tifffile.TiffFile, indices: list[int], shape: tuple[int, int, int],
                 dtype: np.dtype, stamp: tuple[int, int, int]) -> None:
        self.path, self._tif, self._indices, self.shape, self.dtype, self._stamp = path, tif, indices, shape, dtype, stamp
        weakref.finalize(self, tif.close)

    @classmethod
    def of(cls, path: Path) -> TiffPages | None:
        """The file's pages, when it is a grey stack of one plane a page whose pixels take more than LAZY_BYTES;
        None for anything else (read_pages decodes it, or reports what is wrong with it). The file is opened once,
        and the handle kept for the pages."""
        tif = None
        try:
            stamp = _stamp(path)  # before reading: a change from here on is seen when a page is read
            with _logged_errors() as errors:
                tif = tifffile.TiffFile(path)
                len(tif.pages)  # every page indexed, as _open_tiff does
                layout = _plane_layout(tif)
        except Exception:  # noqa: BLE001 - damaged files: read_pages names what is wrong
            layout = None
        if layout is not None and not errors.messages:
            indices, shape, dtype = layout
            if len(indices) > 1 and int(np.prod(shape)) * dtype.itemsize > LAZY_BYTES:
                return cls(path, tif, indices, shape, dtype, stamp)
        if tif is not None:
            tif.close()
        return None

    def __getitem__(self, index: int) -> np.ndarray:
        index = self._page_index(index)
        where = f"{self.path}: page {index + 1} of {len(self)}"
        try:
            changed = _stamp(self.path) != self._stamp
        except OSError:  # removed meanwhile
            changed = True
        if changed:
            raise InputError(f"{where}: the file changed while its pages were being read; run again once it is "
                             "complete (--skip-done starts such a stack again)")
        try:
            with _logged_errors() as errors:
                page = self._tif.pages[self._indices[index]].asarray()
        except Exception as exc:  # noqa: BLE001 - decoders raise anything on damaged data
            raise InputError(f"{where} cannot be read ({type(exc).__name__}: {exc}); re-export the stack") from None
        if errors.messages:
            raise InputError(f"{where} is damaged or cut short ({errors.messages[0][:200]}); re-export the stack")
        if page.shape != self.shape[1:] or page.dtype != self.dtype:
            raise InputError(f"{where} is {page.shape} {page.dtype}, not {self.shape[1:]} {self.dtype} as the file "
                             "said when it was opened; re-export the stack")
        return page

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        """All pages decoded (what read_pages gives): for code that needs the whole stack at once."""
        pages = np.stack([self[i] for i in range(len(self))])
        return pages if dtype is None else pages.astype(dtype)


def _memory_mapped_pages(path: Path) -> np.ndarray | None:
    """The (P, H, W) grey pages of an uncompressed TIFF whose data is one contiguous block, memory-mapped; None
    for anything else, which read_pages decodes (pages written one at a time, colour or channels, compressed or
    tiled data) or reports (a damaged file: read_pages names what is wrong)."""
    try:
        with _open_tiff(path) as (tif, errors):
            series = tif.series
            if len(_data_series(series)[0]) > 1:  # pages written one at a time (a stack, read_pages stacks them),
                return None  # or images of other sizes (read_pages refuses the file): never just the first
            axes, shape = series_axes(series[0]), series[0].shape
            if axes[-2:] != "YX" or any(axis in "SC" for axis in axes) or series[0].dataoffset is None:
                return None  # page axes first, then the rows: pages of the C-ordered block are (P, H, W) as read_pages'
            dtype, offset = np.dtype(tif.byteorder + series[0].dtype.char), series[0].dataoffset
            if tif.pages[0].bitspersample != 8 * dtype.itemsize:  # packed bits (bilevel) are not one value a byte
                return None
        if errors.messages or not shape or 0 in shape:
            return None
        pages = int(np.prod(shape[:-2]))
        return np.memmap(path, dtype, "r", offset, (pages, *shape[-2:]), "C")
    except Exception:  # noqa: BLE001 - decoders raise anything on damaged files (seen: ZeroDivisionError, OverflowError)
        return None


def read_image_pages(path: Path) -> list[Page]:
    """All pages of every image file that `path` stands for, in natural name order."""
    result: list[Page] = []
    for file in list_image_files(path):
        pages, _ = read_pages(file)
        result.extend(Page(file, index if len(pages) > 1 else None, page) for index, page in enumerate(pages))
    return result


def write_mask(path: Path, mask: np.ndarray, palette: list[int] | None = None,
               calibration: Calibration | None = None) -> None:
    """Write one mask as PNG: bool as bilevel, uint8/uint16 as grey, (H, W, 3) as RGB, indices with a palette;
    with the pixel size of `calibration` as its pHYs density.

    Values a PNG cannot hold (negative, above 65535, colours above 255) are refused, never wrapped around.
    """
    top = 255 if mask.ndim == 3 else 65535
    if mask.dtype != bool and mask.size and (mask.min() < 0 or mask.max() > top):
        raise InputError(f"{path}: mask values outside 0..{top} cannot be written as PNG; renumber the classes")
    if mask.dtype == bool:
        image = Image.fromarray(mask)
    elif mask.ndim == 3:
        image = Image.fromarray(mask.astype(np.uint8))
    elif mask.dtype.itemsize > 1 or mask.max(initial=0) > 255:
        image = Image.fromarray(mask.astype(np.uint16))
    elif palette is not None:
        image = Image.frombytes("P", (mask.shape[1], mask.shape[0]), np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
        image.putpalette(palette)
    else:
        image = Image.fromarray(mask.astype(np.uint8))
    dpi = None if calibration is None else calibration.png_dpi()
    options = {} if dpi is None else {"dpi": dpi}
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG", **options))


IMAGEJ_MAX_BYTES = 4 * 1024**3 - 1024**2  # an ImageJ TIFF is a classic TIFF: its offsets end at 4 GiB
IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)  # the pixel types ImageJ has (and tifffile writes for it)


def imagej_can_hold(shape: tuple[int, ...], dtype: Any) -> bool:
    """Whether an ImageJ TIFF can hold this array: its pixel types, under its 4 GiB, and pages wider than one
    pixel (tifffile's ImageJ writer drops a last axis of length 1: classes x 300 x 1 read back as 2 x 300)."""
    return (np.dtype(dtype) in [np.dtype(t) for t in IMAGEJ_DTYPES] and shape[-1] > 1
            and np.prod(shape) * np.dtype(dtype).itemsize <= IMAGEJ_MAX_BYTES)


def tiff_options(shape: tuple[int, ...], dtype: Any, calibration: Calibration | None, imagej_axes: str | None = None,
                 imagej_items: dict[str, Any] | None = None, photometric: str = "minisblack") -> dict[str, Any]:
    """tifffile keywords for pages (pages first) declaring `calibration` (None: no pixel size): with
    `imagej_axes`, an ImageJ TIFF when ImageJ can hold the array, so that Fiji reads the unit, a stack's
    spacing and `imagej_items` (Labels); else a plain TIFF of `photometric` with resolution tags."""
    if imagej_axes is not None and imagej_can_hold(shape, dtype):
        metadata = {"axes": imagej_axes, **(imagej_items or {})}
        options: dict[str, Any] = {"imagej": True, "metadata": metadata, "photometric": photometric}
        declared = calibration.tiff_tags(imagej=True) if calibration is not None else {}
        metadata.update(declared.get("metadata", {}))
        if "resolution" in declared:
            options["resolution"] = declared["resolution"]
        return options
    options = {"photometric": photometric, **(calibration.tiff_tags(imagej=False) if calibration else {})}
    if len(shape) >= 3 and shape[-1] == 1:  # tifffile stores (K, H, 1) as one K x H page (YXQ), as it does (H, W, 1)
        options["metadata"] = {"axes": imagej_axes or "Q" * (len(shape) - 2) + "YX"}  # said, so read back as written
    return options


def tiff_layout(shape: tuple[int, ...], dtype: Any, calibration: Calibration | None = None,
                page_axes: PageAxes | None = None) -> tuple[tuple[int, ...], dict[str, Any]]:
    """How `write_tiff` stores an array of this shape and dtype: the shape it is written as and tifffile's
    keywords. Deflate-compressed, except in ImageJ's own layout (used to carry what the input declared, the
    page axes and the pixel size), which ImageJ reads uncompressed only, and which a memory map can then fill."""
    dtype = np.dtype(dtype)
    colour = len(shape) == 4 and shape[-1] == 3
    # ImageJ's own layout only to carry what the input declared: other files stay as they were
    axes = None if calibration is None or colour else "ZYX"[3 - len(shape):]
    laid_out = (page_axes is not None and len(shape) == (4 if colour else 3) and page_axes.holds(shape[0])
                and (dtype == np.uint8 or not colour))  # ImageJ's RGB is 8-bit
    stored = tuple(shape)
    if laid_out and imagej_can_hold(shape, dtype):  # T and Z: ImageJ's; other TIFFs keep pages
        assert page_axes is not None
        stored, axes = (*page_axes.sizes, *shape[1:]), page_axes.letters + ("YXS" if colour else "YX")
    options = tiff_options(stored, dtype, calibration, axes, photometric="rgb" if colour else "minisblack")
    if not options.get("imagej"):
        options["compression"] = "zlib"
    return stored, options


def write_tiff(path: Path, array: np.ndarray, calibration: Calibration | None = None,
               page_axes: PageAxes | None = None) -> None:
    """Write a stack (P, H, W[, 3]) or a float map as a TIFF, declaring `calibration` and laying a stack's pages
    out along `page_axes` (the input's T and Z; colour pages too, as ImageJ's 8-bit RGB), as `tiff_layout` says.

    The photometric is explicit: left to tifffile, a stack of 3 pages would be saved as one RGB image.
    """
    stored, options = tiff_layout(array.shape, array.dtype, calibration, page_axes)
    write_atomic(path, lambda tmp: tifffile.imwrite(tmp, array.reshape(stored), **options))


def reserve_disk_space(path: Path, output: Path) -> None:
    """Allocate a memory-mapped file's blocks now: it is created sparse, and a disk that fills while its pages are
    written kills the process with SIGBUS (no message, a disk-filling hidden file left); reserved, a full disk is
    a write error naming `output` (the file it becomes), before any work. File systems that cannot reserve go on
    as before."""
    if not hasattr(os, "posix_fallocate"):  # Windows, macOS
        return
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(descriptor, 0, os.fstat(descriptor).st_size)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            fix = ("the file system takes no file that large (FAT32: 4 GiB); choose an --out on another one"
                   if exc.errno == errno.EFBIG else "free space on its disk or choose another --out")
            raise WriteError(f"{output}: could not be written ({exc.strerror}); {fix}", output, exc.strerror) from None
        # EOPNOTSUPP, EINVAL: a file system without it
    finally:
        os.close(descriptor)


PREDICTIONS_MARKER = ".unetkit-predictions"  # in every folder `unetkit predict` writes to


def is_predictions_folder(path: Path) -> bool:
    """Whether `path` (a folder, or a file in one) was written by `unetkit predict`."""
    path = Path(path)
    return ((path if path.is_dir() else path.parent) / PREDICTIONS_MARKER).exists()


def refuse_predictions_folder(path: Path, option: str) -> None:
    """Training and checks never read predictions back as images or as true masks."""
    if is_predictions_folder(path):
        where = "is a folder" if Path(path).is_dir() else "is in a folder"
        raise InputError(f"{option} {path}: {where} unetkit wrote (predictions or samples); give your own images "
                         f"and masks (to train on corrected ones, copy the files, not the hidden {PREDICTIONS_MARKER} "
                         "marker, to a folder of their own)")


def missing_folders(path: Path) -> list[Path]:
    """`path` and those of its parents that do not exist yet, innermost first: what creating it will make."""
    return [folder for folder in [Path(path), *Path(path).parents] if not folder.exists()]


def remove_empty_folders(folders: list[Path], leftover: str | None = None) -> None:
    """Remove `folders` (innermost first, as missing_folders lists them) that are empty, or hold only the file
    named `leftover` (a marker this program wrote); stops at the first that holds anything else."""
    for folder in folders:
        try:
            if leftover is not None and [entry.name for entry in folder.iterdir()] == [leftover]:
                (folder / leftover).unlink()
            folder.rmdir()
        except OSError:
            return


LOSSY_GREY_TOLERANCE = 2  # 8-bit levels a lossy codec leaves between the channels of a grey image (WebP: +-1)


def grey_of(array: np.ndarray) -> np.ndarray | None:
    """The one grey channel of an (..., 3) colour array that is grey, else None: its three channels equal (a grey
    image saved as RGB, a grey GIF's palette, Fiji's RGB export of a grey image) give the first; in 8 bits,
    channels within LOSSY_GREY_TOLERANCE of each other (a grey image saved as lossy WebP or JPEG: Pillow's default
    WebP was read as colour, and one such file among grey PNGs was refused for its channel count) give their
    rounded mean. One pass decides and converts."""
    if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
        return np.ascontiguousarray(array[..., 0])
    if array.dtype != np.uint8:
        return None
    wide = np.asarray(array, dtype=np.int16)
    if np.abs(wide[..., 1:] - wide[..., :1]).max() > LOSSY_GREY_TOLERANCE:
        return None
    return ((wide.sum(axis=-1) + 1) // 3).astype(np.uint8)  # the rounded mean: thirds never fall on a half


def broken_link(path: Path) -> str | None:
    """What is wrong with a symbolic link that leads nowhere (to nothing, or round a loop), or None."""
    if not path.is_symlink():
        return None
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link that points back to itself (a loop)"
        return f"a link to {os.readlink(path)}, which does not exist"
    return None


def make_writable_folder(folder: Path) -> None:
    """Create `folder` (and its parents) and write and delete a probe file in it; OSError if either fails
    (a link that leads nowhere says so: mkdir's own word for it was "File exists")."""
    problem = broken_link(folder)
    if problem:
        raise FileNotFoundError(errno.ENOENT, f"{problem}; fix the link or remove it", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


def _read_umask() -> int:
    """The process's file-creation mask (reading it means setting it; it is put back at once), read once at import."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_read_umask()  # what open() would give a new file


def write_atomic(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: no half-written outputs.

    A failure of the disk (full, read-only, gone) is an InputError naming the file; the previous file stays.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, FILE_MODE)  # writers that make private temporary files (safetensors: 0600) would pass it on
        os.replace(tmp, path)
    except OSError as exc:
        raise WriteError(f"{path}: could not be written ({exc.strerror or exc}); free space on its disk or choose a "
                         "writable folder (the previous file, if any, is unchanged)", path, exc.strerror or str(exc)) from None
    finally:
        tmp.unlink(missing_ok=True)
