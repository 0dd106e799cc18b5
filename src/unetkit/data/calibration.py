"""The physical pixel size and page axes an image file declares, read so that the files predicted from it
declare them too.

A biologist measures a predicted mask in Fiji, napari or QuPath in the image's units (um, nm): masks written
without the input's calibration measured in pixels, and a stack's section spacing was lost. Where it is read:
ImageJ's description (unit, spacing) with the X/YResolution tags, OME-XML's PhysicalSize, plain TIFF
resolution tags in inch, cm, mm or um, and the pHYs/JFIF density of PNG and JPEG (Pillow's dpi). A file that
declares nothing, or only tifffile's and Pillow's placeholder of 1 pixel per unit, has no calibration.
Where it is written: ImageJ TIFFs get unit and spacing in their description, other TIFFs the resolution tags
in centimetres (what TIFF readers, and ImageJ, take), PNG masks a pHYs density in pixels per metre.
A stack's pages keep their axes too: a time-lapse's frames (T) stay frames, and a time-lapse of z-stacks
keeps its T and Z, where they came as one run of pages in which Fiji showed frames as slices.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import tifffile
from PIL import Image

from unetkit.data.zarr_pages import ZarrPages
from unetkit.errors import InputError

METRES_PER_UNIT = {
    "m": 1.0, "cm": 1e-2, "mm": 1e-3, "um": 1e-6, "micron": 1e-6, "microns": 1e-6, "\u00b5m": 1e-6,
    "\u03bcm": 1e-6, "nm": 1e-9, "pm": 1e-12, "\u00c5": 1e-10, "angstrom": 1e-10, "inch": 0.0254, "in": 0.0254,
}
TIFF_UNIT_NAMES = {tifffile.RESUNIT.INCH: "inch", tifffile.RESUNIT.CENTIMETER: "cm",
                   tifffile.RESUNIT.MILLIMETER: "mm", tifffile.RESUNIT.MICROMETER: "um"}
PLACEHOLDER_RESOLUTION = (1.0, 1.0)  # what tifffile and Pillow write when given none
NO_UNIT = ("", "pixel", "pixels", "px")  # ImageJ's words for an uncalibrated image
PAGE_AXES = ("T", "Z", "TZ")  # the page axes an ImageJ TIFF holds, in its order
IMAGEJ_MICRON = "micron"  # how ImageJ writes um: its description is ASCII, and tifffile refuses other text there
# Resolutions (pixels per unit) a file can hold: TIFF rationals and PNG's pHYs are 32-bit counts. A pixel size
# beyond them (a 0.1 nm pixel is 10^10 pixels per metre) is left out of that file, never an error or a wrap.
LARGEST_RESOLUTION = 2**32 - 1
SMALLEST_RESOLUTION = 1 / LARGEST_RESOLUTION


def unescaped(unit: str) -> str:
    """A unit as written, with ImageJ's escapes decoded: Fiji writes um as the six characters \u00B5m."""
    return re.sub(r"\\u([0-9a-fA-F]{4})", lambda match: chr(int(match.group(1), 16)), unit).strip()


def _holdable(*resolutions: float) -> bool:
    return all(math.isfinite(r) and SMALLEST_RESOLUTION <= r <= LARGEST_RESOLUTION for r in resolutions)


@dataclass(frozen=True)
class Calibration:
    """Pixel width and height in `unit`, and the spacing of a stack's pages (None: the file gave none)."""

    pixel_width: float
    pixel_height: float
    unit: str
    z_spacing: float | None = None

    def metres_per_unit(self) -> float | None:
        """What one of `unit` is in metres, or None when the unit is not a length unetkit knows."""
        return METRES_PER_UNIT.get(self.unit.lower()) or METRES_PER_UNIT.get(self.unit)

    def in_metres(self) -> tuple[float, float] | None:
        """Pixel width and height in metres, or None when the unit is not a length unetkit knows."""
        metres = self.metres_per_unit()
        if metres is None or not _usable(self.pixel_width * metres, self.pixel_height * metres):
            return None
        return self.pixel_width * metres, self.pixel_height * metres

    def _ascii(self) -> Calibration:
        """This calibration in words ImageJ's description can hold (tifffile refuses other than ASCII there): um
        as ImageJ writes it, micron; another length with a non-ASCII name (A with a ring) in nm."""
        metres = self.metres_per_unit()
        if metres == 1e-6:
            return replace(self, unit=IMAGEJ_MICRON)
        if self.unit.isascii():
            return self
        if metres is None:
            return replace(self, unit=self.unit.encode("ascii", "ignore").decode() or "unit")
        scale = metres / 1e-9
        spacing = None if self.z_spacing is None else self.z_spacing * scale
        return Calibration(self.pixel_width * scale, self.pixel_height * scale, "nm", spacing)

    def tiff_tags(self, imagej: bool) -> dict[str, Any]:
        """tifffile.imwrite/memmap keywords that declare this calibration: for an ImageJ TIFF the resolution
        with `metadata` items (unit, spacing) to merge into its description; for another TIFF the resolution
        tags in centimetres, or in the file's own unitless terms when the unit is not a length. {} when the
        resolution is beyond what a TIFF holds."""
        if imagej:
            ascii_ = self._ascii()
            resolution = (1 / ascii_.pixel_width, 1 / ascii_.pixel_height)
            if not _holdable(*resolution):
                return {}
            items: dict[str, Any] = {"unit": ascii_.unit}
            if ascii_.z_spacing is not None:
                items["spacing"] = ascii_.z_spacing
            return {"resolution": resolution, "metadata": items}
        metres = self.metres_per_unit()
        per_unit = 1.0 if metres is None else 1e-2 / metres  # pixels per cm from pixels per unit
        resolution = (per_unit / self.pixel_width, per_unit / self.pixel_height)
        if not _holdable(*resolution):
            return {}
        unit = tifffile.RESUNIT.NONE if metres is None else tifffile.RESUNIT.CENTIMETER
        return {"resolution": resolution, "resolutionunit": unit}

    def png_dpi(self) -> tuple[float, float] | None:
        """Pillow's `dpi` for this calibration (saved as a pHYs density per metre), or None when the unit is not
        a length or the density is beyond a PNG's 32-bit count (pixels under 0.23 nm or over 4 km)."""
        metres = self.metres_per_unit()
        if metres is None:
            return None
        sizes = (self.pixel_width * metres, self.pixel_height * metres)
        if not _usable(*sizes):
            return None
        per_metre = (1 / sizes[0], 1 / sizes[1])
        if not all(1 <= round(d) <= LARGEST_RESOLUTION for d in per_metre):
            return None
        return (per_metre[0] * 0.0254, per_metre[1] * 0.0254)


def _usable(*values: float | None) -> bool:
    """Sizes and resolutions a calibration can be made of: positive, finite, and with a finite reciprocal."""
    return all(value is not None and math.isfinite(value) and value > 0 and math.isfinite(1 / value)
               for value in values)


def _from_resolution(resolution: tuple[float, float], unit: str, z_spacing: float | None,
                     declared: bool = False) -> Calibration | None:
    """`declared`: the unit was written out (ImageJ's unit=micron), so 1 pixel per unit is a real 1 um pixel,
    not the placeholder of a writer that was given no resolution."""
    if not _usable(*resolution) or (not declared and tuple(resolution) == PLACEHOLDER_RESOLUTION):
        return None
    width, height = 1 / resolution[0], 1 / resolution[1]
    if not _usable(width, height):  # a denormal resolution: no size a file can say
        return None
    return Calibration(width, height, unescaped(unit), z_spacing if _usable(z_spacing) else None)


OME_DEFAULT_UNIT = "\u00b5m"  # each of PhysicalSizeX, Y and Z is in um unless its own unit says otherwise


def _ome_calibration(xml: str) -> Calibration | None:
    """PhysicalSizeX/Y/Z of the first Pixels element, Y and Z in X's unit (each has its own, default um; when
    one is not a length unetkit knows, Y is taken as X and Z left out)."""
    root = ElementTree.fromstring(xml)
    pixels = next((element for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None or "PhysicalSizeX" not in pixels.attrib:
        return None
    attributes = pixels.attrib
    unit = attributes.get("PhysicalSizeXUnit", OME_DEFAULT_UNIT)
    width = float(attributes["PhysicalSizeX"])

    def in_x_unit(axis: str) -> float | None:
        if f"PhysicalSize{axis}" not in attributes:
            return None
        size, own = float(attributes[f"PhysicalSize{axis}"]), attributes.get(f"PhysicalSize{axis}Unit", OME_DEFAULT_UNIT)
        if own == unit:
            return size
        theirs, mine = METRES_PER_UNIT.get(own), METRES_PER_UNIT.get(unit)
        return None if theirs is None or mine is None else size * theirs / mine

    height = in_x_unit("Y")
    height = width if height is None else height
    z_spacing = in_x_unit("Z")
    if not _usable(width, height):
        return None
    return Calibration(width, height, unit, z_spacing if _usable(z_spacing) else None)


def _tiff_calibration(path: Path) -> Calibration | None:
    with tifffile.TiffFile(path) as tif:
        if tif.is_ome and tif.ome_metadata:
            found = _ome_calibration(tif.ome_metadata)
            if found is not None:
                return found
        page = tif.pages.first
        imagej = tif.imagej_metadata or {}
        if unescaped(str(imagej.get("unit", ""))).lower() not in NO_UNIT:
            spacing = imagej.get("spacing")
            return _from_resolution(page.resolution, str(imagej["unit"]),
                                    float(spacing) if isinstance(spacing, (int, float)) else None, declared=True)
        unit = TIFF_UNIT_NAMES.get(page.resolutionunit)
        return None if unit is None else _from_resolution(page.resolution, unit, None)


def _pillow_calibration(path: Path) -> Calibration | None:
    with Image.open(path) as image:
        dpi = image.info.get("dpi")
    if not dpi or len(dpi) != 2:
        return None
    return _from_resolution((float(dpi[0]), float(dpi[1])), "inch", None)


def _zarr_calibration(path: Path) -> Calibration | None:
    declared = ZarrPages.open(path).pixel_size()
    if declared is None:
        return None
    width, height, spacing, unit = declared
    if not _usable(width, height):
        return None
    return Calibration(width, height, unit, spacing if _usable(spacing) else None)


def calibration_of(path: Path) -> Calibration | None:
    """The calibration `path` declares, or None. Never raises: a file that was read for its pixels but whose
    metadata cannot be made sense of is predicted as before, uncalibrated."""
    try:
        if path.is_dir():  # a zarr array or OME-Zarr image (OME-Zarr's scale)
            return _zarr_calibration(path)
        if path.suffix.lower() in (".tif", ".tiff"):
            return _tiff_calibration(path)
        return _pillow_calibration(path)
    except Exception:  # metadata is a courtesy: its damage must not stop a prediction the pixels allow
        return None


@dataclass(frozen=True)
class PageAxes:
    """How a stack's pages are laid out: frames of a time-lapse (T), slices of a z-stack (Z), or both, T outer."""

    letters: str
    sizes: tuple[int, ...]

    def holds(self, pages: int) -> bool:
        """Whether these axes lay out `pages` pages (a file read as more or fewer pages keeps one run of pages)."""
        return math.prod(self.sizes) == pages


def page_axes_of(path: Path) -> PageAxes | None:
    """The page axes an ImageJ or OME TIFF declares, or None: other files, one page, or axes ImageJ cannot
    hold in its own order (e.g. Z outside T, or tifffile's unnamed I)."""
    if path.is_dir():  # a zarr array or OME-Zarr image: its axes
        try:
            letters, sizes = ZarrPages.open(path).page_axes()
        except Exception:  # noqa: BLE001 - as below
            return None
        return PageAxes(letters, sizes) if letters in PAGE_AXES else None
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            if not (tif.is_imagej or tif.is_ome):
                return None
            series = tif.series[0]
            kept = [(axis, size) for axis, size in zip(series.axes, series.shape) if axis not in "YXCS"]
    except Exception:  # as for calibration_of: the pixels were read, the layout is a courtesy
        return None
    letters = "".join(axis for axis, _ in kept)
    return PageAxes(letters, tuple(int(size) for _, size in kept)) if letters in PAGE_AXES else None


PIXEL_SIZE_TOLERANCE = 1.25  # pixel sizes within this factor of each other are the same scale to a network
PLAUSIBLE_PIXEL_M = (1e-11, 1e-2)  # typed pixel sizes outside these (8pm for 8nm) are typos


def length_unit(metres: float) -> tuple[str, float]:
    """The unit people write a pixel size in (nm below 0.1 um, um below 1 mm, mm below 1 m, else m) and its
    size in metres."""
    for unit, size, below in (("nm", 1e-9, 1e-7), ("um", 1e-6, 1e-3), ("mm", 1e-3, 1.0)):
        if metres < below:
            return unit, size
    return "m", 1.0


def readable_length(metres: float) -> str:
    """A pixel size as people write it: 4 nm, 0.65 um, 1.2 mm."""
    unit, size = length_unit(metres)
    return f"{metres / size:.3g} {unit}"


def pixel_size_record(files: list[Path]) -> dict[str, Any] | None:
    """What run.json keeps of the training images' pixel size: the median width and height in metres over the
    files that declare one in a length unit, how many do, and the spread (largest / smallest width); None when
    none does. predict compares its inputs with it (rescale.PixelSizes).
    """
    sizes = [size for size in (calibration_of(file) for file in files) if size is not None]
    metres = [m for m in (size.in_metres() for size in sizes) if m is not None]
    if not metres:
        return None
    widths, heights = sorted(m[0] for m in metres), sorted(m[1] for m in metres)
    return {"width_m": widths[len(widths) // 2], "height_m": heights[len(heights) // 2],
            "declared_by": len(metres), "files": len(files), "spread": widths[-1] / widths[0],
            "width_range_m": [widths[0], widths[-1]]}


def matched_pixel_size(declared: dict[str, Any] | None) -> tuple[float, float]:
    """The pixel size train --match-pixel-size resamples the training images to: the median the files declare
    (`declared`, their pixel_size_record)."""
    if declared is None:
        raise InputError("--match-pixel-size: none of the training images declares a pixel size, so there is none to "
                         "match them to; if they share one, give it with --pixel-size instead")
    return declared["width_m"], declared["height_m"]


def training_pixel_size(declared: dict[str, Any] | None, files: int, given: float | None,
                        base: dict[str, Any] | None = None, matched: bool = False,
                        ) -> tuple[dict[str, Any] | None, list[str]]:
    """run.json's `pixel_size` for a new run and the notes train says about it: --pixel-size (`given`, metres)
    for all `files` over what they declare (`declared`, their pixel_size_record; a note when they declare
    another size), else the files' (a note when they are
    of mixed scales), else, fine-tuning, the base run's `base` record: its network learnt at that scale, and a
    fine-tuned run that forgot it could not be matched (a note when the new images declare another).
    `matched` (--match-pixel-size): the images were resampled to the median, which is then their one scale."""
    if matched and declared:
        declared = {**declared, "spread": 1.0, "matched": True,
                    "width_range_m": [declared["width_m"], declared["width_m"]]}
    notes = []
    record = declared if given is None else {"width_m": given, "height_m": given, "declared_by": 0, "files": files,
                                             "spread": 1.0, "width_range_m": [given, given], "given": True}
    mixed_scales = mixed_scale_note(declared)
    if given is not None and declared and not same_scale(given, declared["width_m"]):
        notes.append(f"--pixel-size {readable_length(given)}: the images declare {readable_length(declared['width_m'])} "
                     f"({declared['declared_by']} of {declared['files']} files); run.json keeps {readable_length(given)}, "
                     "as given")
    elif given is None and mixed_scales:
        notes.append(mixed_scales)
    if record is None and base:
        return {**base, "inherited": True}, notes
    other_scale = scale_change_note(record, base)
    if other_scale:
        notes.append(f"{other_scale}; run.json keeps theirs")
    return record, notes


def scale_change_note(images: dict[str, Any] | None, run: dict[str, Any] | None) -> str | None:
    """What train --from (and check --run, before it) says when the images' pixel size record is not at the
    scale of the run's: fine-tuning teaches the network theirs. None when either is unknown or they agree."""
    if not images or not run or same_scale(images["width_m"], run["width_m"]):
        return None
    return (f"the run learnt at {readable_length(run['width_m'])} pixels, these images are "
            f"{readable_length(images['width_m'])}: fine-tuning teaches it their scale")


def same_scale(first: float, second: float, tolerance: float = PIXEL_SIZE_TOLERANCE) -> bool:
    """Whether two pixel sizes (or a ratio and 1) are within `tolerance` times of each other."""
    return 1 / tolerance <= first / second <= tolerance


def mixed_scale_note(record: dict[str, Any] | None) -> str | None:
    """What train notes and check warns about when the training images declare pixel sizes over
    PIXEL_SIZE_TOLERANCE apart; None otherwise."""
    if not record or record["spread"] <= PIXEL_SIZE_TOLERANCE:
        return None
    smallest, largest = (readable_length(m) for m in record["width_range_m"])
    return (f"the training images declare pixels from {smallest} to {largest} wide ({record['spread']:.2g}x apart); "
            "a network learns objects at the scales it is shown, so rescale them to one pixel size if that was not meant")


def parse_length(text: str, option: str) -> float:
    """A length a person typed (8nm, 0.5 um, 1e-3 mm) in metres; one InputError line naming `option` otherwise."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\s0-9]+)\s*", str(text))
    unit = unescaped(match.group(2)) if match else ""
    metres = METRES_PER_UNIT.get(unit.lower()) or METRES_PER_UNIT.get(unit) if match else None
    value = float(match.group(1)) * metres if match and metres else 0.0
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{option} {text!r}: give a pixel size with its unit, e.g. {option} 8nm or {option} 0.65um "
                         f"(units: nm, um, mm, m)")
    if not PLAUSIBLE_PIXEL_M[0] <= value <= PLAUSIBLE_PIXEL_M[1]:  # a typo kept in run.json could not be undone
        raise InputError(f"{option} {text}: {value:.3g} m is no pixel size an instrument makes (0.01 nm to 1 cm); "
                         "check the unit (nm, um, mm)")
    return value
