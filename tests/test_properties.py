"""Property-based tests (issue 7): the readers on any bytes and any arrays, the label mapping on any value set,
tiling at any size.

They add to, and do not repeat, tests/data/test_io.py (cut and bit-flipped files of fixed formats),
tests/data/test_labels.py (grey round trip for arbitrary values and dtypes in memory) and tests/test_predict.py
(1-D window coverage, identity runs at fixed sizes): here whole files of arbitrary bytes behind every format's
magic number, arrays of every dtype and channel count through every writer, colour / bool / 1..K / 16-bit
encodings through mask files, and 2-D tiling with a model that writes back where each pixel came from.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from io import BytesIO
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import tifffile
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from unetkit.data import io
from unetkit.data.io import list_image_files, read_pages, read_pages_lazily, write_mask
from unetkit.data.labels import LabelEncoding
from unetkit.errors import InputError
from unetkit.models import unet_valid
from unetkit.predict import mirrored_reader, overlap_tile_layout, predict_rows, window_spans

# --- readers ----------------------------------------------------------------------------------------------


def _pages_or_none(path: Path, read) -> np.ndarray | None:  # noqa: ANN001
    """What `read` gives, or None after an InputError that names the file on one line; anything else is a bug."""
    try:
        return read(path)
    except InputError as error:
        message = str(error)
        assert path.name in message and "\n" not in message, message
        return None


def _read_lazily_as_if_large(path: Path) -> np.ndarray:
    """read_pages_lazily down the paths it takes for TIFFs above 256 MiB (memory-mapped, or a page at a time:
    every page decoded here, as prediction decodes them)."""
    with mock.patch.object(io, "LAZY_BYTES", 0):
        return np.asarray(read_pages_lazily(path))


READERS = {
    "read_pages": lambda path: read_pages(path)[0],
    "read_pages(labels=True)": lambda path: read_pages(path, labels=True)[0],
    "read_pages_lazily": _read_lazily_as_if_large,
}

MAGIC = {  # arbitrary bytes behind these get past each decoder's first check
    "none": b"",
    "png": b"\x89PNG\r\n\x1a\n",
    "png-ihdr": b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR",
    "tiff-le": b"II*\x00",
    "tiff-be": b"MM\x00*",
    "tiff-le-ifd8": b"II*\x00\x08\x00\x00\x00",
    "bigtiff": b"II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00",
    "jpeg": b"\xff\xd8\xff\xe0\x00\x10JFIF\x00",
}


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the broken EXIF tags it skips
@settings(max_examples=200, deadline=None)
@given(
    suffix=st.sampled_from([".png", ".tif", ".tiff", ".jpg"]),
    magic=st.sampled_from(sorted(MAGIC)),
    body=st.binary(max_size=600),
)
def test_readers_on_arbitrary_bytes_give_pages_or_an_input_error(suffix: str, magic: str, body: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"arbitrary{suffix}"
        path.write_bytes(MAGIC[magic] + body)
        assert list_image_files(path) == [path]
        for read in READERS.values():
            pages = _pages_or_none(path, read)
            if pages is not None:
                assert isinstance(pages, np.ndarray) and pages.ndim in (3, 4) and min(pages.shape[:3]) >= 1


WRITABLE = {  # writer -> dtype -> the channel counts it stores
    "pillow-png": {"uint8": (1, 2, 3, 4), "uint16": (1,), "bool": (1,)},
    "tifffile": {"uint8": (1, 2, 3, 4), "uint16": (1, 2, 3, 4), "float32": (1, 2, 3, 4), "bool": (1,)},
    "tifffile-page-by-page": {"uint8": (1, 3), "uint16": (1,), "float32": (1,)},  # one series per page
    "pillow-tiff": {"uint8": (1, 3, 4), "uint16": (1,), "float32": (1,), "bool": (1,)},
    "pillow-jpeg": {"uint8": (1, 3)},
}


@st.composite
def written_arrays(draw: st.DrawFn) -> tuple[str, np.ndarray, str]:
    """(writer, pages as (P, H, W[, C]), suffix): odd sizes, full value ranges, NaN and infinities for floats."""
    writer = draw(st.sampled_from(sorted(WRITABLE)))
    dtype = draw(st.sampled_from(sorted(WRITABLE[writer])))
    channels = draw(st.sampled_from(WRITABLE[writer][dtype]))
    pages = draw(st.integers(1, 3)) if writer.startswith("tifffile") else 1
    # tifffile.imwrite stores a trailing axis of 1 as the samples of a pixel: (P, H, 1) becomes one P x H page
    # (shape in its metadata), which read_pages reads as the far commoner (H, W, 1) single-channel image would be
    narrowest = 2 if writer == "tifffile" and channels == 1 else 1
    shape = (pages, draw(st.integers(1, 29)), draw(st.integers(narrowest, 29))) + ((channels,) if channels > 1 else ())
    array = draw(hnp.arrays(np.dtype(dtype), shape))
    suffix = {"pillow-png": ".png", "pillow-jpeg": ".jpg"}.get(writer) or draw(st.sampled_from([".tif", ".tiff"]))
    return writer, array, suffix


def _write(path: Path, writer: str, pages: np.ndarray) -> None:
    samples = pages.ndim == 4
    photometric = "rgb" if samples and pages.shape[-1] in (3, 4) else "minisblack"  # explicit: 3 pages stay pages
    if writer == "tifffile":
        tifffile.imwrite(path, pages, photometric=photometric, planarconfig="contig" if samples else None)
    elif writer == "tifffile-page-by-page":
        with tifffile.TiffWriter(path) as tif:
            for page in pages:
                tif.write(page, photometric=photometric)
    else:
        Image.fromarray(pages[0]).save(path, format={"pillow-png": "PNG", "pillow-tiff": "TIFF", "pillow-jpeg": "JPEG"}[writer])


@settings(max_examples=150, deadline=None)
@given(written_arrays())
def test_written_arrays_come_back_exactly_or_as_an_input_error(case: tuple[str, np.ndarray, str]) -> None:
    """Lossless formats give the exact pages back (an alpha channel dropped: RGBA, and Pillow's grey + alpha; a TIFF's
    2 channels are data), JPEG the shape and dtype."""
    writer, pages, suffix = case
    channels = pages.shape[-1] if pages.ndim == 4 else 1
    expected = pages[..., :3] if channels == 4 else pages[..., 0] if channels == 2 and writer == "pillow-png" else pages
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"written{suffix}"
        _write(path, writer, pages)
        for name, read in READERS.items():
            back = _pages_or_none(path, read)
            assert back is not None, f"{name} refused a valid {writer} file of {pages.dtype} {pages.shape}"
            assert back.shape == expected.shape and back.dtype == expected.dtype, (name, back.shape, back.dtype)
            if writer != "pillow-jpeg":
                np.testing.assert_array_equal(back, expected, err_msg=name)


# found by benchmarks/fuzz_readers.py: tiny damaged files that declared gigapixels took 15-27 s and 4-12 GB before
# an error (or, for a grey JPEG, came back as 2 gigapixels of grey)


def _declare_size(data: bytes, kind: str, width: int, height: int) -> bytes:
    """The file with another declared width and height: PNG IHDR (CRC fixed), JPEG SOF0, or a TIFF's first page's tags."""
    buffer = bytearray(data)
    if kind == "png":
        header = buffer[12:29]  # b"IHDR", width, height, the rest
        header[4:12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
        buffer[12:33] = header + zlib.crc32(header).to_bytes(4, "big")
        return bytes(buffer)
    if kind == "jpeg":
        at = buffer.index(b"\xff\xc0")
        buffer[at + 5 : at + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        return bytes(buffer)
    with tifffile.TiffFile(BytesIO(data)) as tif:
        entries = [(tag.offset, tag.code) for tag in tif.pages[0].tags.values() if tag.code in (256, 257)]
    for entry, code in entries:  # as a LONG, count 1, the value inline
        buffer[entry + 2 : entry + 12] = struct.pack("<HII", 4, 1, width if code == 256 else height)
    return bytes(buffer)


@pytest.mark.parametrize(("mode", "kind"), [("L", "jpeg"), ("RGB", "jpeg"), ("L", "png"), ("RGBA", "png")])
def test_a_file_too_small_for_its_declared_size_is_refused_before_decoding(mode: str, kind: str) -> None:
    frames = [Image.new(mode, (24, 24), 90) for _ in range(2)]
    buffer = BytesIO()  # the PNG animated: Pillow filled the whole declared canvas for the frame to come
    frames[0].save(buffer, format=kind.upper(), **({"save_all": True, "append_images": frames[1:]} if kind == "png" else {}))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"gigapixel.{kind}"
        path.write_bytes(_declare_size(buffer.getvalue(), kind, 46340, 46340))
        started = time.perf_counter()
        with pytest.raises(InputError, match=rf"gigapixel\.{kind}: declares 46340 x 46340 pixels"):
            read_pages(path)
        assert time.perf_counter() - started < 5


@pytest.mark.parametrize(("mode", "suffix", "options"), [
    ("L", ".jpg", {"optimize": True}), ("L", ".jpg", {"progressive": True}), ("1", ".png", {"optimize": True}),
])
def test_the_most_compressed_real_files_pass_the_size_check(mode: str, suffix: str, options: dict) -> None:
    """Blank images: Huffman-optimised JPEG is 2 bits per 8 x 8 block (the check allows 1), a 1-bit PNG is
    compressed about 1029:1 by zlib (the check allows 2064:1)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"blank{suffix}"
        Image.new(mode, (4096, 4000), 0 if mode == "1" else 128).save(path, **options)
        least = 4096 * 4000 / 64 / 8 * 2.1 if suffix == ".jpg" else 4000 * (1 + 4096 // 8) / 1032 * 1.1
        assert path.stat().st_size < least  # as small as such files get
        assert read_pages(path)[0].shape == (1, 4000, 4096)


def test_a_tiled_tiff_declaring_gigapixels_is_refused_before_decoding() -> None:
    buffer = BytesIO()
    tifffile.imwrite(buffer, np.zeros((32, 32), np.uint8), tile=(16, 16), compression="zlib")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tiles.tif"
        path.write_bytes(_declare_size(buffer.getvalue(), "tiff", 46340, 46340))
        started = time.perf_counter()
        with pytest.raises(InputError, match=r"tiles\.tif: is damaged"):
            read_pages(path)
        assert time.perf_counter() - started < 5  # it filled 3.6 GB of zeros for 17 s first


# --- label mapping ----------------------------------------------------------------------------------------


channel = st.integers(0, 255)
colours = st.tuples(channel, channel, channel)


@st.composite
def label_masks(draw: st.DrawFn, kinds: tuple[str, ...] = ("grey", "16-bit", "1..K", "bool", "rgb")) -> tuple[str, np.ndarray]:
    """(kind, one mask holding every value of a drawn value set), at least one pixel per value."""
    kind = draw(st.sampled_from(kinds))
    if kind == "grey":
        table = np.array(draw(st.lists(st.integers(0, 255), min_size=2, max_size=8, unique=True)), dtype=np.uint8)
    elif kind == "16-bit":
        table = np.array(draw(st.lists(st.integers(0, 65535), min_size=2, max_size=8, unique=True)), dtype=np.uint16)
    elif kind == "1..K":  # no background value 0
        table = np.arange(1, draw(st.integers(2, 30)) + 1, dtype=draw(st.sampled_from([np.uint8, np.uint16])))
    elif kind == "bool":
        table = np.array([False, True])
    else:  # at least one colour that is not grey, else the masks are grey saved as RGB
        chosen = draw(st.lists(colours, min_size=2, max_size=8, unique=True).filter(lambda cs: any(len(set(c)) > 1 for c in cs)))
        table = np.array(chosen, dtype=np.uint8)
    count = len(table)
    height = draw(st.integers(1, 9))
    width = draw(st.integers(-(-count // height), -(-count // height) + 6))
    index = draw(hnp.arrays(np.int64, height * width, elements=st.integers(0, count - 1)))
    start = draw(st.integers(0, height * width - count))
    index[start : start + count] = np.arange(count)  # every value appears
    return kind, table[index.reshape(height, width)]


@settings(max_examples=150, deadline=None)
@given(label_masks())
def test_label_values_come_back_in_memory_and_through_a_mask_file(case: tuple[str, np.ndarray]) -> None:
    kind, mask = case
    encoding = LabelEncoding.from_masks([("train.png", mask)])
    assert encoding.colour == (kind == "rgb")
    classes = encoding.to_classes(mask, "train.png")
    assert classes.shape == mask.shape[:2] and int(classes.max()) == encoding.num_classes - 1
    back = encoding.to_values(classes)
    assert back.dtype == mask.dtype
    np.testing.assert_array_equal(back, mask)
    with tempfile.TemporaryDirectory() as folder:  # as `unetkit predict` writes it and training reads it
        path = Path(folder) / "prediction.png"
        write_mask(path, back, list(encoding.palette) if encoding.palette else None)
        pages, _ = read_pages(path, labels=True)
        again = encoding.to_values(encoding.to_classes(pages[0], path.name))
        assert again.dtype == mask.dtype
        np.testing.assert_array_equal(again, mask)


@settings(max_examples=100, deadline=None)
@given(label_masks(kinds=("grey", "16-bit", "1..K", "rgb")), st.data())
def test_unseen_values_are_refused_naming_the_file_and_the_value(case: tuple[str, np.ndarray], data: st.DataObject) -> None:
    kind, mask = case
    encoding = LabelEncoding.from_masks([("train.png", mask)])
    if kind == "rgb":
        known = {tuple(c) for c in mask.reshape(-1, 3).tolist()}
        unseen = data.draw(colours.filter(lambda c: c not in known), label="unseen")
        shown = str(list(unseen))
    else:
        known = set(np.unique(mask).tolist())
        unseen = data.draw(st.integers(0, np.iinfo(mask.dtype).max).filter(lambda v: v not in known), label="unseen")
        shown = str(unseen)
    bad = mask.copy()
    bad[data.draw(st.integers(0, mask.shape[0] - 1)), data.draw(st.integers(0, mask.shape[1] - 1))] = unseen
    with pytest.raises(InputError) as error:
        encoding.to_classes(bad, "unseen_values.png")
    message = str(error.value)
    assert "unseen_values.png" in message and f"[{shown}]" in message and "\n" not in message, message


# --- tiling -----------------------------------------------------------------------------------------------


def position_image(height: int, width: int) -> torch.Tensor:
    """3 x H x W, each pixel a probability vector (a, b, 1 - a - b) that encodes its row (a) and column (b)."""
    rows = (torch.arange(height, dtype=torch.float64) + 1) / (2 * (height + 1))
    cols = (torch.arange(width, dtype=torch.float64) + 1) / (2 * (width + 1))
    a, b = rows[:, None].expand(height, width), cols[None, :].expand(height, width)
    return torch.stack([a, b, 1 - a - b]).float()


class PositionIdentity(torch.nn.Module):
    """Logits log(x): for a position image the softmax gives the input back, so the output tells where each
    predicted pixel came from; a misplaced, missing or half-blended window shows. `depth` sets the pooling grid."""

    def __init__(self, depth: int = 0) -> None:
        super().__init__()
        self.config = SimpleNamespace(depth=depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)


class ValidPositionIdentity(PositionIdentity):
    """The same as a valid network (overlap-tile): the paper network's sizes, the output cropped by its margin."""

    @property
    def margin(self) -> int:
        return unet_valid.margin(self.config.depth)

    def valid_output_size(self, size: int) -> int:
        return unet_valid.valid_output_size(size, self.config.depth)

    def nearest_valid_input_size(self, size: int) -> int:
        return unet_valid.nearest_valid_input_size(size, self.config.depth)

    def input_size_for_output(self, size: int) -> int:
        return unet_valid.input_size_for_output(size, self.config.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.margin
        assert self.valid_output_size(x.shape[-2]) == x.shape[-2] - 2 * m  # only valid tiles are asked for
        assert self.valid_output_size(x.shape[-1]) == x.shape[-1] - 2 * m
        return torch.log(x[..., m : x.shape[-2] - m, m : x.shape[-1] - m])


def _predict_and_check(model: torch.nn.Module, height: int, width: int, **options: object) -> None:
    """Run predict_rows on a position image: rows reach the sink once, in order; every pixel gets its own position."""
    image = position_image(height, width)
    bands: list[tuple[int, torch.Tensor]] = []
    predict_rows(model, mirrored_reader(image), height, width, lambda top, probs: bands.append((top, probs.clone())), **options)
    assert bands and bands[0][0] == 0
    assert all(top + probs.shape[1] == following for (top, probs), (following, _) in zip(bands, bands[1:]))
    assert all(probs.shape[0] == 3 and probs.shape[1] >= 1 and probs.shape[2] == width for _, probs in bands)
    probs = torch.cat([probs for _, probs in bands], dim=1)
    assert probs.shape == (3, height, width)
    rows = torch.round(probs[0].double() * 2 * (height + 1) - 1)
    cols = torch.round(probs[1].double() * 2 * (width + 1) - 1)
    assert torch.equal(rows, torch.arange(height, dtype=torch.float64)[:, None].expand(height, width))
    assert torch.equal(cols, torch.arange(width, dtype=torch.float64)[None, :].expand(height, width))
    assert torch.allclose(probs, image, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 96), width=st.integers(1, 96), tile=st.integers(16, 128), overlap=st.floats(0.0, 0.5),
    depth=st.integers(0, 3), halo=st.none() | st.integers(0, 40), tta=st.booleans(),
)
def test_sliding_windows_give_every_pixel_its_own_position_back(
    height: int, width: int, tile: int, overlap: float, depth: int, halo: int | None, tta: bool
) -> None:
    _predict_and_check(PositionIdentity(depth), height, width, tile=tile, overlap=overlap, halo=halo, tta=tta)


@settings(max_examples=30, deadline=None)
@given(height=st.integers(1, 120), width=st.integers(1, 120), extra=st.integers(0, 200), depth=st.integers(1, 3),
       tta=st.booleans())
def test_overlap_tiles_give_every_pixel_its_own_position_back(height: int, width: int, extra: int, depth: int, tta: bool) -> None:
    model = ValidPositionIdentity(depth)
    tile = model.input_size_for_output(4 * 2**depth) + extra  # not necessarily a valid size: overlap_tile rounds it
    _predict_and_check(model, height, width, tile=tile, tta=tta)


@settings(max_examples=200, deadline=None)
@given(height=st.integers(1, 700), width=st.integers(1, 700), tile=st.integers(1, 300), overlap=st.floats(0.0, 0.9),
       depth=st.integers(0, 5))
def test_windows_and_tiles_cover_every_pixel_and_stay_bounded(height: int, width: int, tile: int, overlap: float, depth: int) -> None:
    """2-D coverage by sliding windows, with windows no larger than a tile plus one grid step; overlap-tile
    layouts cover the image with the fewest tiles, each on the grid."""
    align = 2**depth
    coverage = np.zeros((height, width), dtype=np.int32)
    rows, cols = window_spans(height, tile, overlap, align), window_spans(width, tile, overlap, align)
    for top, bottom in rows:
        for left, right in cols:
            coverage[top:bottom, left:right] += 1
    assert coverage.min() >= 1
    assert all(stop - start < max(tile, align) + align for start, stop in rows + cols)  # memory stays a tile's
    for length in (height, width):
        output = max(align, tile)
        out, stride, count = overlap_tile_layout(length, output, align)
        assert out == output and stride % align == 0 and 0 < stride <= out
        assert (count - 1) * stride + out >= length  # covered
        assert count == 1 or (count - 2) * stride + out < length  # and not one tile more than needed
