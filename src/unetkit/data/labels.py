"""Label values <-> class indices, and predictions written back in the user's encoding.

Users' masks come as 0/255, 0/1, bool, 0..K, arbitrary grey levels, palette
indices or RGB colours. The sorted set of values found in the training masks
becomes the classes 0..K-1; that mapping is saved in the run, every later mask
is checked against it, and predicted classes are turned back into the same
values (and dtype, and palette) before they are written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from unetkit.errors import InputError

# More distinct values than this is an image or a lossy mask, not a set of classes.
MAX_CLASSES = 64
# The class index of unlabelled pixels (a mask value given as --ignore-value): no loss, no score, never predicted.
IGNORE_CLASS = 255
# A PNG holds grey values up to 16 bits and colours of 8 bits a channel; other masks are written as TIFF.
MAX_PNG_GREY = 65535
MAX_COLOUR_CHANNEL = 255


def _pack_colours(mask: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 colours -> (H, W) int64 codes, so colours compare like scalars."""
    rgb = mask.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


CODE_LIMIT = 2**53  # float mask values beyond this are not whole numbers a float holds exactly


class ColourValue(int):
    """A colour's packed code (what colour masks' classes compare as) that prints as the user wrote it, R,G,B:
    messages about --ignore-value 1,2,3 said 66051."""

    text: str

    def __new__(cls, code: int, text: str) -> ColourValue:
        value = super().__new__(cls, code)
        value.text = text
        return value

    def __str__(self) -> str:
        return self.text

    def __getnewargs__(self) -> tuple[int, str]:  # type: ignore[override]
        """What copy and pickle rebuild it from (TrainConfig.to_json deep-copies its fields)."""
        return int(self), self.text


def parse_label_value(text: str) -> int:
    """A mask value as users write it, "255" or a colour "R,G,B", as the packed code colour masks use for classes."""
    parts = [part.strip() for part in text.split(",")]
    try:
        numbers = [int(part) for part in parts]
    except ValueError:
        raise ValueError(f"{text!r}: give a label value such as 0 or 255, or a colour as R,G,B") from None
    if len(numbers) == 1:
        return numbers[0]
    if len(numbers) != 3 or not all(0 <= n <= MAX_COLOUR_CHANNEL for n in numbers):
        raise ValueError(f"{text!r}: a colour is three values 0..255, as R,G,B")
    red, green, blue = numbers
    return colour_value((red << 16) | (green << 8) | blue)


def colour_value(code: int) -> ColourValue:
    """A packed colour code (as run.json keeps one) as the value that prints R,G,B."""
    red, green, blue = (code >> 16) & 255, (code >> 8) & 255, code & 255
    return ColourValue(code, f"{red},{green},{blue}")


def refuse_grey_value_for_colour(value: int, option: str, masks: str) -> None:
    """A mask value given as one number for colour masks: 255 meant white, and was taken as the packed code of
    blue (0,0,255), a class, which then trained as unlabelled without a word. Colours are given as R,G,B."""
    if not isinstance(value, ColourValue):
        raise InputError(f"{option} {value}: {masks} and the other masks are colour masks; give the colour as R,G,B "
                         f"(white is 255,255,255)")


def unpack_colours(codes: np.ndarray) -> np.ndarray:
    return np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)


def is_colour(mask: np.ndarray) -> bool:
    """An RGB mask whose channels differ somewhere (grey saved as RGB is not colour)."""
    return mask.ndim == 3 and not (np.array_equal(mask[..., 0], mask[..., 1]) and np.array_equal(mask[..., 0], mask[..., 2]))


def mostly_colour(masks: Iterable[np.ndarray]) -> bool:
    """Whether the masks are a colour set: any RGB mask whose channels differ (black or grey RGB masks fit
    either kind). Only when 2-D masks and such colour masks are mixed does the majority of those two kinds
    decide, so that the odd masks out are the ones an error names."""
    masks = list(masks)
    chromatic = sum(is_colour(mask) for mask in masks)
    flat = sum(mask.ndim == 2 for mask in masks)
    return chromatic >= flat if chromatic and flat else chromatic > 0


def scalar_codes(mask: np.ndarray, source: str, colour: bool, reference: str = "most masks") -> np.ndarray:
    """A mask as (H, W) int64 codes: colours packed (in a colour encoding), integral floats accepted.

    `reference` names the masks whose kind (colour or not) `colour` comes from, for the error when this one differs.
    """
    if mask.ndim == 3:
        if mask.shape[-1] != 3:
            raise InputError(f"{source}: mask has {mask.shape[-1]} channels; save masks as greyscale, palette or RGB")
        if colour:
            if mask.size and (mask.min() < 0 or mask.max() > MAX_COLOUR_CHANNEL):
                raise InputError(f"{source}: colour mask with channel values beyond 0..255 (a 16-bit RGB mask); "
                                 "save colour masks as 8-bit RGB, or the classes as grey values or a palette")
            return _pack_colours(mask)
        if is_colour(mask):  # its first channel alone would pass red (255, 0, 0) as grey 255
            raise InputError(f"{source}: colour mask, but {reference} hold grey values or palette indices; save all "
                             "masks the same way")
        mask = mask[..., 0]
    elif colour:
        raise InputError(f"{source}: a mask of grey values or palette indices, but {reference} are RGB colour masks; save "
                         "all masks the same way")
    return whole_values(mask, source)


def whole_values(mask: np.ndarray, source: str) -> np.ndarray:
    """A grey mask (class values or object ids) as int64, refusing what int64 cannot hold exactly: NaN, fractions,
    floats beyond 2^53 and uint64 beyond 2^63 (a float mask of 0 and 1e20 trained class -9223372036854775808)."""
    if mask.dtype.kind == "f":
        if not np.all(np.isfinite(mask)):
            raise InputError(f"{source}: mask holds NaN or infinite values; masks must hold class values")
        if not np.array_equal(mask, np.round(mask)):
            raise InputError(f"{source}: mask holds fractional values; masks must hold whole class values (0, 1, 255, ...)")
        if mask.size and (mask.min() < -CODE_LIMIT or mask.max() > CODE_LIMIT):  # int64 would wrap them (1e20 -> -9e18)
            raise InputError(f"{source}: mask holds values beyond +-2^53 (up to {mask.max():g}); save the classes as "
                             "small whole numbers (0, 1, 2, ... or 0/255)")
    elif mask.dtype == np.uint64 and mask.size and mask.max() > np.iinfo(np.int64).max:
        raise InputError(f"{source}: mask holds values beyond 2^63 (up to {mask.max()}); save the classes as small whole "
                         "numbers (0, 1, 2, ... or 0/255)")
    return mask.astype(np.int64)


@dataclass(frozen=True)
class LabelEncoding:
    """How class indices map to the values of the user's masks."""

    values: tuple[int, ...]  # the mask value of class i (RGB colours packed as 0xRRGGBB)
    dtype: str  # numpy dtype of the masks, restored on output ("bool", "uint8", "uint16", ...)
    colour: bool = False  # masks are RGB colours
    palette: tuple[int, ...] | None = None  # palette of palette-PNG masks, restored on output
    ignore_value: int | None = None  # the mask value of unlabelled pixels (packed like the values), not a class

    @property
    def num_classes(self) -> int:
        return len(self.values)

    @classmethod
    def from_masks(cls, masks: list[tuple[str, np.ndarray]], palette: list[int] | None = None,
                   minimum_classes: int = 2, ignore_value: int | None = None) -> "LabelEncoding":
        """Collect the classes from (name, mask) pairs of the training set (scoring may take a single class).
        `ignore_value`: the value of unlabelled pixels, which is not a class."""
        if not masks:
            raise InputError("no masks given; point --labels to the folder with the masks")
        found: set[int] = set()
        colour = mostly_colour(mask for _, mask in masks)
        for name, mask in masks:
            codes = scalar_codes(mask, name, colour)
            found.update(np.unique(codes).tolist())
            found.discard(ignore_value)
            if len(found) > MAX_CLASSES:
                raise InputError(
                    f"{name}: masks hold more than {MAX_CLASSES} distinct values; labels must be a few classes "
                    "(is this an image, an instance map or a lossy JPEG mask?)"
                )
        one_bit = next((name for name, mask in masks if mask.dtype == bool), None)
        wider = next((name for name, mask in masks if mask.dtype != bool), None)
        if one_bit and wider and not found <= {0, 1}:  # True would be class 1 here and 255 (say) there
            raise InputError(f"{one_bit}: a 1-bit mask among masks like {wider} that hold {sorted(found - {0, 1})[:3]}; "
                             "save all masks the same way (all 1-bit, or all 8-bit)")
        if len(found) < minimum_classes:
            if not found:
                raise InputError(f"every mask holds only the --ignore-value {ignore_value}; label some pixels with classes")
            only = next(iter(found))
            raise InputError(f"every mask holds only the value {only}"
                             f"{'' if ignore_value is None else ' besides the --ignore-value'}; labels need at least two "
                             "classes (object and background)")
        dtype = np.result_type(*[mask.dtype for _, mask in masks]).name
        return cls(tuple(sorted(found)), dtype, colour, tuple(palette) if palette else None, ignore_value)

    def to_classes(self, mask: np.ndarray, source: str) -> np.ndarray:
        """A mask as (H, W) class indices; values outside the classes are an error naming the file."""
        codes = scalar_codes(mask, source, self.colour)
        values = np.asarray(self.values, dtype=np.int64)
        classes = np.searchsorted(values, codes)
        classes = np.clip(classes, 0, len(values) - 1)
        unlabelled = codes == self.ignore_value if self.ignore_value is not None else None
        unknown = values[classes] != codes
        if unlabelled is not None:
            unknown &= ~unlabelled
            classes[unlabelled] = IGNORE_CLASS
        if unknown.any():
            bad_codes = np.unique(codes[unknown])[:5]
            # as users wrote them, like the classes: colours as [r, g, b], not packed codes
            bad = unpack_colours(bad_codes).tolist() if self.colour else bad_codes.tolist()
            raise InputError(
                f"{source}: mask values {bad} are not among the classes {list(self.describe_values())}; "
                "fix the mask or train with masks that contain these values"
            )
        return classes.astype(np.uint8 if len(values) <= 256 else np.int64)

    def to_values(self, classes: np.ndarray) -> np.ndarray:
        """Class indices -> a mask in the user's encoding (dtype, colours).

        The lookup table is built in the output dtype first, so a large image
        never passes through an int64 array of its size.
        """
        values = np.asarray(self.values, dtype=np.int64)
        table = unpack_colours(values) if self.colour else values.astype(self.output_dtype)  # K [x 3]
        return table[classes]

    @property
    def fits_png(self) -> bool:
        """Whether a PNG holds these masks as they came: 1, 8 or 16-bit unsigned. Others (int16 -1, int32,
        float32 0.0/1.0) go to TIFF in their own dtype, so that values and type come back unchanged."""
        if self.colour or self.dtype in ("bool", "uint8"):
            return True
        return self.dtype == "uint16" and max(self.values) <= MAX_PNG_GREY

    @property
    def output_dtype(self) -> np.dtype:
        """The dtype predictions are written in: the masks' own (uint8 for colours)."""
        return np.dtype(np.uint8 if self.colour else bool if self.dtype == "bool" else self.dtype)

    def channel_names(self) -> list[str]:
        """A name per class made of letters, digits and _ (bioimage.io channel names): class_255, and a colour
        class as class_255_0_0, where its packed code (class_16711680) named nothing a person knows (audit)."""
        return [f"class_{'_'.join(map(str, value)) if isinstance(value, list) else int(value)}".replace("-", "minus")
                for value in self.describe_values()]  # int: a 1-bit mask's classes are class_0, class_1

    def describe_values(self) -> list[object]:
        """The class values as users wrote them: numbers, or [r, g, b] colours."""
        if self.colour:
            return [unpack_colours(np.asarray(v)).tolist() for v in self.values]
        if self.dtype == "bool":
            return [bool(v) for v in self.values]
        return list(self.values)

    def to_json(self) -> dict:
        return {
            "values": list(self.values),
            "dtype": self.dtype,
            "colour": self.colour,
            "palette": list(self.palette) if self.palette else None,
            "readable": self.describe_values(),
            **({"ignore_value": self.ignore_value} if self.ignore_value is not None else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> "LabelEncoding":
        """The classes as run.json keeps them, checked: hand-edited values [255, 0] wrote inverted masks and
        exited 0, a dtype "foo" ended predict in a traceback (audit)."""
        values, dtype, palette, ignore = data["values"], data["dtype"], data.get("palette"), data.get("ignore_value")
        if not (isinstance(values, list) and values and all(_whole(v) for v in values)
                and all(a < b for a, b in zip(values, values[1:]))):
            raise InputError(f"classes.values {values!r}: not the mask values in increasing order")
        try:
            known = isinstance(dtype, str) and np.dtype(dtype).kind in "biuf" and np.dtype(dtype).name == dtype
        except TypeError:
            known = False
        if not known:
            raise InputError(f"classes.dtype {dtype!r}: not a mask data type such as uint8")
        if palette is not None and not (isinstance(palette, list) and len(palette) % 3 == 0 and len(palette) <= 768
                                        and all(_whole(v) and 0 <= v <= 255 for v in palette)):
            raise InputError("classes.palette: not a PNG palette (R, G, B numbers 0-255)")
        if ignore is not None and not _whole(ignore):
            raise InputError(f"classes.ignore_value {ignore!r}: not a mask value")
        colour = data["colour"] is True
        if colour and ignore is not None:  # prints as the R,G,B it was given as, not its packed code
            ignore = colour_value(ignore)
        return cls(tuple(values), dtype, colour, tuple(palette) if palette else None, ignore)


def _whole(value: object) -> bool:
    """An int that is not a bool (JSON's true is not a mask value)."""
    return isinstance(value, int) and not isinstance(value, bool)


OBJECT_VALUE = 255  # the objects' value in the masks made of instance maps: visible in any viewer, unlike 1


def objects_and_borders(mask: np.ndarray, background: int | None = None, source: str = "mask") -> np.ndarray:
    """An instance label map (objects 1..N on 0, grey ids or colours) -> a 0/OBJECT_VALUE uint8 mask of the
    objects, with the pixels where two objects touch made background: the U-Net paper's separating borders.
    Learnt as classes, ids are arbitrary (a useless model); learnt as plain foreground, touching nuclei fuse into
    one object. With the borders the network learns to draw the gap, and `predict --instances` splits there.
    `background`: the set's background value (0 where any mask of the set holds it: a dense crop without a 0
    pixel must not take its largest cell for the background); None: 0 where this mask holds it, else its most
    common value."""
    from scipy import ndimage

    ids = _pack_colours(mask) if is_colour(mask) else whole_values(np.asarray(mask), source)
    if ids.size and (ids.max() > CODE_LIMIT or ids.min() < -CODE_LIMIT):  # scipy's filters compare them as doubles
        raise InputError(f"{source}: object ids beyond +-2^53 (up to {ids.max()}); number the objects 1, 2, 3, ...")
    if background is None:
        values, counts = np.unique(ids, return_counts=True)
        background = 0 if values[0] == 0 else int(values[np.argmax(counts)])
    objects = ids != background
    larger_neighbour = ndimage.maximum_filter(np.where(objects, ids, -1), size=3) > ids
    smaller_neighbour = ndimage.minimum_filter(np.where(objects, ids, CODE_LIMIT + 1), size=3) < ids
    inside = objects & ~larger_neighbour & ~smaller_neighbour
    return np.where(inside, OBJECT_VALUE, 0).astype(np.uint8)
