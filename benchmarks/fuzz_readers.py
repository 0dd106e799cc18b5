"""Fuzz the image readers (issue 7): thousands of damaged PNG, TIFF and JPEG files, and what each one does.

    .venv/bin/python benchmarks/fuzz_readers.py [--count 10000] [--seed 0] [--timeout 60] [--memory-gb 4]
                                                [--keep DIR] [--record]

Valid seed files are written first: PNG (grey, 16-bit, RGB, RGBA, grey + alpha,
palette with transparency, 4-bit palette, bilevel, animated), TIFF from tifffile
(uncompressed, LZW, Deflate, PackBits, Zstd, JPEG, predictors, tiled, BigTIFF,
stacks written at once and page by page, RGB, RGBA, planar RGB, 16-bit,
float32, bilevel, ImageJ, a thumbnail series) and from Pillow (multi-page,
palette, LZW, Group 4, JPEG, 16-bit, float), JPEG (grey, RGB, progressive, CMYK,
4:4:4, optimised). Every seed must read back. Then `--count` files are made
from them, one mutation each, in turn:

  truncate   cut at a random point
  bitflip    1-16 random bits flipped
  overwrite  a run of up to 32 random bytes written over the file
  structure  format-aware: a PNG chunk changed and its CRC fixed, or the pixel
             stream changed and recompressed (so the decoder gets past its
             checks); a TIFF tag's value, count, type or code, or the
             next-page pointer (into the page itself, past the end, ...);
             a JPEG segment or the entropy-coded data changed
  splice     the start of one seed joined to the rest of another
  huge       the declared width and height set to large or zero values (PNG
             IHDR with its CRC fixed, TIFF ImageWidth / ImageLength, JPEG SOF)
  random     up to 4 KiB of random bytes, half of them behind a magic number
  duplicate  a block of the file repeated
  suffix     a seed, half of the time with a flipped bit, under another format's suffix

Each file goes through `read_pages`; every third file also through
`read_pages(labels=True)`, every third through `read_pages_lazily` with its
threshold at 0, i.e. down the memory-mapping path it takes for TIFFs above
256 MiB (whose pages must then equal `read_pages`'). A file counts as
ok (every reader gave pages), input_error (some reader raised unetkit's
InputError, naming the file on one line: what a user sees) or traceback (any
other exception, an InputError without the file name or on several lines, no
answer within --timeout seconds, or lazily read pages that differ: a bug).
The process runs under an address-space limit (--memory-gb, 0 for none) so
that declared sizes of gigapixels cannot take the machine's memory: what the
limit stops ends as MemoryError, which read_pages reports as an InputError
(counted in the output). Deterministic for a --seed. Prints a table per
mutation and per format; the last line is
`files=N ok=A input_errors=B tracebacks=C`. Exits 1 on any traceback, keeping
those files (in --keep or a printed temporary folder). --record appends the
output to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import resource
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import warnings
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from unetkit.data import io as unetkit_io
from unetkit.data.io import read_pages, read_pages_lazily
from unetkit.errors import InputError

MUTATIONS = ["truncate", "bitflip", "overwrite", "structure", "splice", "huge", "random", "duplicate", "suffix"]
SUFFIXES = {"png": [".png"], "tif": [".tif", ".tiff"], "jpg": [".jpg"]}
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "tif": b"II*\x00", "jpg": b"\xff\xd8\xff"}
# declared (width, height): over the pixel limit, just under it (gigapixels to allocate), zero, one-pixel strips
HUGE_SIZES = [(65535, 65535), (40000, 40000), (46340, 46340), (2**31 - 1, 1), (1, 2**31 - 1), (0, 16), (16, 0),
              (100000, 100000), (30000, 60000), (2**32 - 1, 2**32 - 1)]


class Hang(BaseException):
    """Raised by the timer: a BaseException, so that read_pages' `except Exception` does not turn it into an InputError."""


# --- seeds ------------------------------------------------------------------------------------------------


def _picture(rng: np.random.Generator, height: int, width: int, channels: int = 1, high: float = 255) -> np.ndarray:
    """Smooth structure and noise in [0, high]: compresses like an image, not like noise or a constant."""
    y, x = np.mgrid[:height, :width]
    planes = [(np.sin(y / (3 + c) + x / 5) + np.cos(x / (4 + c))) / 4 + 0.5 + rng.normal(0, 0.05, (height, width))
              for c in range(channels)]
    picture = np.clip(np.stack(planes, -1) if channels > 1 else planes[0], 0, 1) * high
    return picture


def _pillow(image: Image.Image, format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _tifffile(array: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, array, **options)
    return buffer.getvalue()


def _tifffile_pages(pages: list[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    with tifffile.TiffWriter(buffer) as tif:
        for page in pages:
            tif.write(page, photometric="minisblack")
    return buffer.getvalue()


def make_seeds(rng: np.random.Generator) -> list[tuple[str, str, bytes]]:
    """(name, format, bytes) of valid files of every kind the readers meet."""
    u8 = lambda h, w, c=1: _picture(rng, h, w, c).astype(np.uint8)  # noqa: E731
    u16 = lambda h, w, c=1: _picture(rng, h, w, c, 65535).astype(np.uint16)  # noqa: E731
    f32 = lambda h, w, c=1: (_picture(rng, h, w, c, 1) * 1000 - 300).astype(np.float32)  # noqa: E731
    palette = Image.fromarray((u8(21, 27) // 52).astype(np.uint8), mode="L").convert("P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [0] * (768 - 15))
    bilevel = Image.fromarray(u8(19, 37) > 127)
    seeds = [
        ("png-grey8", "png", _pillow(Image.fromarray(u8(23, 31)), "PNG")),
        ("png-grey16", "png", _pillow(Image.fromarray(u16(17, 29)), "PNG")),
        ("png-rgb", "png", _pillow(Image.fromarray(u8(19, 25, 3)), "PNG")),
        ("png-rgba", "png", _pillow(Image.fromarray(u8(15, 22, 4)), "PNG")),
        ("png-grey-alpha", "png", _pillow(Image.fromarray(u8(13, 27, 2)), "PNG")),
        ("png-palette", "png", _pillow(palette, "PNG", transparency=0)),
        ("png-palette-4bit", "png", _pillow(palette, "PNG", bits=4)),
        ("png-bilevel", "png", _pillow(bilevel, "PNG")),
        ("png-optimised", "png", _pillow(Image.fromarray(u8(33, 21)), "PNG", optimize=True)),
        ("png-animated", "png", _pillow(Image.fromarray(u8(16, 20)), "PNG", save_all=True,
                                        append_images=[Image.fromarray(u8(16, 20)) for _ in range(2)])),
        ("tif-none", "tif", _tifffile(u8(23, 31))),
        ("tif-lzw", "tif", _tifffile(u8(23, 31), compression="lzw")),
        ("tif-deflate", "tif", _tifffile(u8(29, 17), compression="zlib")),
        ("tif-packbits", "tif", _tifffile(u8(21, 19), compression="packbits")),
        ("tif-zstd", "tif", _tifffile(u8(21, 19), compression="zstd")),
        ("tif-jpeg", "tif", _tifffile(u8(24, 32), compression="jpeg")),
        ("tif-16bit-lzw-predictor", "tif", _tifffile(u16(19, 23), compression="lzw", predictor=True)),
        ("tif-float32-deflate-predictor", "tif", _tifffile(f32(17, 21), compression="zlib", predictor=True)),
        ("tif-tiled", "tif", _tifffile(u8(40, 36), tile=(16, 16), compression="zlib")),
        ("tif-bigtiff", "tif", _tifffile(u8(18, 22), bigtiff=True)),
        ("tif-stack", "tif", _tifffile(np.stack([u8(20, 18) for _ in range(4)]), photometric="minisblack")),
        ("tif-stack-deflate", "tif", _tifffile(np.stack([u8(20, 18) for _ in range(3)]), photometric="minisblack",
                                               compression="zlib")),
        ("tif-pages-one-by-one", "tif", _tifffile_pages([u8(20, 18) for _ in range(3)])),
        ("tif-rgb", "tif", _tifffile(u8(19, 23, 3), photometric="rgb", compression="zlib")),
        ("tif-rgba", "tif", _tifffile(u8(19, 23, 4), photometric="rgb")),
        ("tif-rgb-planar", "tif", _tifffile(np.moveaxis(u8(19, 23, 3), -1, 0), photometric="rgb", planarconfig="separate")),
        ("tif-rgb-stack", "tif", _tifffile(np.stack([u8(11, 13, 3) for _ in range(2)]), photometric="rgb")),
        ("tif-16bit", "tif", _tifffile(u16(17, 19))),
        ("tif-float32", "tif", _tifffile(f32(17, 19))),
        ("tif-bilevel", "tif", _tifffile(u8(19, 37) > 127)),
        ("tif-imagej", "tif", _tifffile(np.stack([u8(20, 18) for _ in range(3)]), imagej=True)),
        ("tif-with-thumbnail", "tif", _tifffile_pages([u8(24, 20), u8(6, 5)])),
        ("tif-pillow-pages", "tif", _pillow(Image.fromarray(u8(20, 18)), "TIFF", save_all=True,
                                            append_images=[Image.fromarray(u8(20, 18)) for _ in range(2)])),
        ("tif-pillow-palette", "tif", _pillow(palette, "TIFF")),
        ("tif-pillow-lzw", "tif", _pillow(Image.fromarray(u8(23, 31)), "TIFF", compression="tiff_lzw")),
        ("tif-pillow-group4", "tif", _pillow(bilevel, "TIFF", compression="group4")),
        ("tif-pillow-jpeg", "tif", _pillow(Image.fromarray(u8(24, 32, 3)), "TIFF", compression="jpeg")),
        ("tif-pillow-16bit", "tif", _pillow(Image.fromarray(u16(17, 29)), "TIFF")),
        ("tif-pillow-float", "tif", _pillow(Image.fromarray(f32(17, 29)), "TIFF")),
        ("jpg-grey", "jpg", _pillow(Image.fromarray(u8(24, 31)), "JPEG")),
        ("jpg-rgb", "jpg", _pillow(Image.fromarray(u8(27, 33, 3)), "JPEG", quality=90)),
        ("jpg-progressive", "jpg", _pillow(Image.fromarray(u8(27, 33, 3)), "JPEG", progressive=True)),
        ("jpg-cmyk", "jpg", _pillow(Image.fromarray(u8(19, 22, 3)).convert("CMYK"), "JPEG")),
        ("jpg-444", "jpg", _pillow(Image.fromarray(u8(19, 22, 3)), "JPEG", subsampling=0)),
        ("jpg-optimised", "jpg", _pillow(Image.fromarray(u8(40, 24)), "JPEG", optimize=True)),
    ]
    return seeds


# --- mutations --------------------------------------------------------------------------------------------


def _png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """(position, data length, type) of each chunk."""
    chunks, position = [], 8
    while position + 12 <= len(data):
        length = int.from_bytes(data[position : position + 4], "big")
        chunks.append((position, length, data[position + 4 : position + 8]))
        position += 12 + length
    return chunks


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + kind + payload + zlib.crc32(kind + payload).to_bytes(4, "big")


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, position, length field) of each segment up to and including the first SOS."""
    segments, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segments.append((marker, position, length))
        if marker == 0xDA:
            break
        position += 2 + length
    return segments


class TiffLayout:
    """Where a valid TIFF keeps its tag entries and next-page pointers, to change them in place."""

    def __init__(self, data: bytes) -> None:
        with tifffile.TiffFile(io.BytesIO(data)) as tif:
            self.big, self.order = tif.is_bigtiff, tif.byteorder
            self.entries: list[tuple[int, int, int, int, int]] = []  # (page, entry position, value position, bytes, code)
            self.next_pointers: list[tuple[int, int, int]] = []  # (page position, pointer position, entries)
            for index in range(min(len(tif.pages), 4)):
                page = tif.pages[index]
                for tag in page.tags.values():
                    self.entries.append((index, tag.offset, tag.valueoffset, tag.valuebytecount, tag.code))
                count_format, entry_size, count_size = ("Q", 20, 8) if self.big else ("H", 12, 2)
                entries = struct.unpack(self.order + count_format, data[page.offset : page.offset + count_size])[0]
                self.next_pointers.append((page.offset, page.offset + count_size + entry_size * entries, entries))

    @property
    def pointer_size(self) -> int:
        return 8 if self.big else 4

    def pack(self, value: int, size: int) -> bytes:
        return (value % (1 << (8 * size))).to_bytes(size, "little" if self.order == "<" else "big")


def _extreme(rng: np.random.Generator, length: int) -> int:
    choices = [0, 1, 2, 3, 7, 8, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF, length, length - 1, length + 1]
    return int(rng.choice(choices)) if rng.random() < 0.7 else int(rng.integers(0, 1 << 32))


def _random_bytes(rng: np.random.Generator, count: int) -> bytes:
    return rng.integers(0, 256, count, dtype=np.uint8).tobytes()


def mutate_structure(rng: np.random.Generator, kind: str, data: bytes, layout: TiffLayout | None) -> tuple[bytes, str]:
    buffer = bytearray(data)
    if kind == "png":
        chunks = _png_chunks(data)
        idats = [chunk for chunk in chunks if chunk[2] == b"IDAT"]
        if idats and rng.random() < 0.5:  # the pixel stream itself, recompressed: filters and scanlines get decoded
            raw = bytearray(zlib.decompress(b"".join(data[p + 8 : p + 8 + n] for p, n, _ in idats)))
            action = int(rng.integers(3))
            if action == 0 and raw:
                for at in rng.integers(0, len(raw), int(rng.integers(1, 9))):
                    raw[at] = int(rng.integers(0, 256))
            elif action == 1:
                raw = raw[: int(rng.integers(0, len(raw) + 1))]
            else:
                raw += _random_bytes(rng, int(rng.integers(1, 200)))
            start, end = idats[0][0], idats[-1][0] + 12 + idats[-1][1]
            return data[:start] + _png_chunk(b"IDAT", zlib.compress(bytes(raw))) + data[end:], ["idat-bytes", "idat-short", "idat-long"][action]
        position, length, chunk = chunks[int(rng.integers(len(chunks)))]
        payload = bytearray(data[position + 8 : position + 8 + length])
        if payload and rng.random() < 0.8:
            for at in rng.integers(0, len(payload), int(rng.integers(1, 5))):
                payload[at] = int(rng.choice([0, 1, 255, int(rng.integers(0, 256))]))
        else:
            payload = bytearray(_random_bytes(rng, int(rng.integers(0, 64))))
        return data[:position] + _png_chunk(chunk, bytes(payload)) + data[position + 12 + length :], f"chunk-{chunk.decode('latin-1')}"
    if kind == "tif":
        assert layout is not None
        action = str(rng.choice(["value", "value", "count", "type", "code", "next"]))
        _, entry, value_at, value_bytes, code = layout.entries[int(rng.integers(len(layout.entries)))]
        if action == "next":
            page, pointer, entries = layout.next_pointers[int(rng.integers(len(layout.next_pointers)))]
            target = int(rng.choice([page, page + 2 + 12 * int(rng.integers(0, entries)), pointer, len(data), 0,
                                     int(rng.integers(0, len(data)))]))
            buffer[pointer : pointer + layout.pointer_size] = layout.pack(target, layout.pointer_size)
            return bytes(buffer), "tag-next-page"
        if action == "value":
            size = int(max(1, min(value_bytes, layout.pointer_size)))
            buffer[value_at : value_at + size] = layout.pack(_extreme(rng, len(data)), size)
        elif action == "count":
            buffer[entry + 4 : entry + 4 + layout.pointer_size] = layout.pack(_extreme(rng, len(data)), layout.pointer_size)
        elif action == "type":
            buffer[entry + 2 : entry + 4] = layout.pack(int(rng.integers(0, 20)), 2)
        else:
            codes = [254, 256, 257, 258, 259, 262, 273, 277, 278, 279, 284, 317, 320, 322, 323, 324, 325, 338, 339, 50838]
            buffer[entry : entry + 2] = layout.pack(int(rng.choice(codes)), 2)
        return bytes(buffer), f"tag-{action}-{code}"
    segments = _jpeg_segments(data)
    marker, position, length = segments[int(rng.integers(len(segments)))]
    if rng.random() < 0.3:  # the entropy-coded data after the scan header
        scan = segments[-1][1] + 2 + segments[-1][2]
        for at in rng.integers(scan, max(scan + 1, len(data) - 2), int(rng.integers(1, 9))):
            buffer[min(int(at), len(buffer) - 1)] = int(rng.integers(0, 256))
        return bytes(buffer), "jpeg-scan-data"
    if rng.random() < 0.2:
        buffer[position + 2 : position + 4] = _extreme(rng, len(data)).to_bytes(4, "big")[2:]
    else:
        for at in rng.integers(position + 4, max(position + 5, position + 2 + length), int(rng.integers(1, 5))):
            buffer[at] = int(rng.choice([0, 1, 255, int(rng.integers(0, 256))]))
    return bytes(buffer[: len(data)]), f"jpeg-segment-{marker:02X}"


def mutate_huge(rng: np.random.Generator, kind: str, data: bytes, layout: TiffLayout | None) -> tuple[bytes, str]:
    width, height = HUGE_SIZES[int(rng.integers(len(HUGE_SIZES)))]
    buffer = bytearray(data)
    if kind == "png":
        header = bytearray(data[16:29])
        header[0:8] = (width % 2**32).to_bytes(4, "big") + (height % 2**32).to_bytes(4, "big")
        return data[:8] + _png_chunk(b"IHDR", bytes(header)) + data[33:], f"{width}x{height}"
    if kind == "tif":
        assert layout is not None
        for page, entry, _, _, code in layout.entries:
            if page == 0 and (code in (256, 257) or (code == 278 and rng.random() < 0.5)):  # width, length, and the rows of a strip
                value = width if code == 256 else height
                buffer[entry + 2 : entry + 4] = layout.pack(16 if layout.big else 4, 2)  # LONG8 / LONG: room for any size
                buffer[entry + 4 : entry + 4 + layout.pointer_size] = layout.pack(1, layout.pointer_size)
                buffer[entry + 4 + layout.pointer_size : entry + 4 + 2 * layout.pointer_size] = layout.pack(value, layout.pointer_size)
        return bytes(buffer), f"{width}x{height}"
    for marker, position, _ in _jpeg_segments(data):
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            buffer[position + 5 : position + 9] = (min(height, 65535)).to_bytes(2, "big") + (min(width, 65535)).to_bytes(2, "big")
    return bytes(buffer), f"{min(width, 65535)}x{min(height, 65535)}"


def make_file(index: int, rng: np.random.Generator, seeds: list[tuple[str, str, bytes]],
              layouts: dict[str, TiffLayout]) -> tuple[str, str, str, bytes]:
    """(mutation, detail, suffix, bytes) of the index-th fuzzed file."""
    mutation = MUTATIONS[index % len(MUTATIONS)]
    name, kind, data = seeds[int(rng.integers(len(seeds)))]
    suffix = str(rng.choice(SUFFIXES[kind]))
    detail = name
    if mutation == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif mutation == "bitflip":
        buffer = bytearray(data)
        for _ in range(int(rng.integers(1, 17))):
            buffer[int(rng.integers(len(buffer)))] ^= 1 << int(rng.integers(8))
        data = bytes(buffer)
    elif mutation == "overwrite":
        start, length = int(rng.integers(len(data))), int(rng.integers(1, 33))
        data = data[:start] + _random_bytes(rng, length) + data[start + length :]
    elif mutation == "structure":
        data, what = mutate_structure(rng, kind, data, layouts.get(name))
        detail = f"{name} {what}"
    elif mutation == "splice":
        other, other_kind, other_data = seeds[int(rng.integers(len(seeds)))]
        data = data[: int(rng.integers(len(data) + 1))] + other_data[int(rng.integers(len(other_data) + 1)) :]
        detail = f"{name} + {other}"
    elif mutation == "huge":
        data, what = mutate_huge(rng, kind, data, layouts.get(name))
        detail = f"{name} {what}"
    elif mutation == "random":
        magic = MAGIC[kind] if rng.random() < 0.5 else b""
        data = magic + _random_bytes(rng, int(rng.integers(0, 4097)))
        detail = f"{kind} magic" if magic else "no magic"
        kind = str(rng.choice(list(SUFFIXES)))
        suffix = str(rng.choice(SUFFIXES[kind]))
    elif mutation == "duplicate":
        start = int(rng.integers(len(data)))
        block = data[start : start + int(rng.integers(1, 257))]
        at = int(rng.integers(len(data) + 1))
        data = data[:at] + block + data[at:]
    else:  # suffix
        others = [s for k, options in SUFFIXES.items() if k != kind for s in options]
        suffix = str(rng.choice(others))
        if rng.random() < 0.5:
            buffer = bytearray(data)
            buffer[int(rng.integers(len(buffer)))] ^= 1 << int(rng.integers(8))
            data = bytes(buffer)
            detail = f"{name} flipped"
    return mutation, detail, suffix, data


# --- reading ----------------------------------------------------------------------------------------------


def _on_alarm(signum: int, frame: object) -> None:
    raise Hang


def read_lazily_as_if_large(path: Path) -> np.ndarray:
    """read_pages_lazily down the memory-mapping path it takes for TIFFs above 256 MiB."""
    saved, unetkit_io.LAZY_BYTES = unetkit_io.LAZY_BYTES, 0
    try:
        return read_pages_lazily(path)
    finally:
        unetkit_io.LAZY_BYTES = saved


def attempt(path: Path, read, timeout: float) -> tuple[str, object, float]:  # noqa: ANN001
    """("ok", pages) / ("input_error", message) / ("traceback", what went wrong), and the seconds taken."""
    started = time.perf_counter()
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        result = read(path)
        outcome: tuple[str, object] = ("ok", result)
    except InputError as error:
        message = str(error)
        if path.name not in message or "\n" in message:
            outcome = ("traceback", f"InputError without the file name or on several lines: {message!r}")
        else:
            outcome = ("input_error", message)
    except Hang:
        outcome = ("traceback", f"no answer within {timeout} s")
    except Exception:  # noqa: BLE001 - the point: anything but InputError is a bug
        outcome = ("traceback", traceback.format_exc(limit=-6))
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    seconds = time.perf_counter() - started
    if seconds > timeout and outcome[0] != "traceback":  # finished inside C code that the timer could not interrupt
        outcome = ("traceback", f"took {seconds:.1f} s (limit {timeout} s); outcome {outcome[0]}")
    return outcome[0], outcome[1], seconds


IMAGE_ONLY_SEEDS = {"tif-rgb-planar"}  # valid as an image; as a mask refused as ambiguous (io._refuse_planar_colour_mask)


def read_file(index: int, path: Path, timeout: float) -> tuple[str, list[str], float]:
    """The file's outcome (the worst of its readers'), what went wrong (for tracebacks), and the slowest read."""
    readers = [("read_pages", lambda p: read_pages(p)[0])]
    if index % 3 == 1:
        readers.append(("read_pages(labels=True)", lambda p: read_pages(p, labels=True)[0]))
    if index % 3 == 2:
        readers.append(("read_pages_lazily", read_lazily_as_if_large))
    outcomes = {name: attempt(path, read, timeout) for name, read in readers}
    problems = [f"{name}: {result}" for name, (outcome, result, _) in outcomes.items() if outcome == "traceback"]
    plain, lazy = outcomes["read_pages"], outcomes.get("read_pages_lazily")
    if lazy and plain[0] == "ok" and lazy[0] == "ok":
        a, b = plain[1], lazy[1]
        if a.shape != b.shape or a.dtype != b.dtype or not np.array_equal(a, b, equal_nan=a.dtype.kind == "f"):
            problems.append(f"read_pages_lazily gives {b.dtype} {b.shape}, read_pages {a.dtype} {a.shape} (or other values)")
    kinds = [outcome for outcome, _, _ in outcomes.values()]
    overall = "traceback" if problems else "input_error" if "input_error" in kinds else "ok"
    memory = any(outcome == "input_error" and "MemoryError" in str(result) for outcome, result, _ in outcomes.values())
    return overall + ("+memory" if memory else ""), problems, max(seconds for _, _, seconds in outcomes.values())


def format_table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def summary(counts: dict[str, Counter], label: str) -> str:
    rows = [[label, "files", "ok", "input_error", "traceback", "memory_error"]]
    for key in sorted(counts, key=lambda k: (MUTATIONS.index(k) if k in MUTATIONS else 0, k)):
        c = counts[key]
        rows.append([key, str(sum(c[o] for o in ("ok", "input_error", "traceback"))), str(c["ok"]), str(c["input_error"]),
                     str(c["traceback"]), str(c["memory"])])
    return format_table(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=10000, help="fuzzed files to make and read")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed makes the same files")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds one read may take before it counts as a hang")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit while reading (0: none)")
    parser.add_argument("--keep", type=Path, help="write the files here and keep those that caused a traceback")
    parser.add_argument("--record", action="store_true", help="append the output to benchmarks/RESULTS.md")
    args = parser.parse_args()
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    seeds = make_seeds(rng)
    layouts = {name: TiffLayout(data) for name, kind, data in seeds if kind == "tif"}
    folder = args.keep or Path(tempfile.mkdtemp(prefix="unetkit-fuzz-"))
    folder.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    # quiet: the libraries' complaints about damaged files (Python warnings, tifffile's log, libtiff on fd 2)
    warnings.simplefilter("ignore")
    logging.getLogger("tifffile").addHandler(logging.NullHandler())  # read_pages still sees its errors
    stderr = os.dup(2)
    sys.stderr.flush()
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    limit = resource.getrlimit(resource.RLIMIT_AS)
    if args.memory_gb > 0:
        resource.setrlimit(resource.RLIMIT_AS, (int(args.memory_gb * 2**30), limit[1]))
    lines: list[str] = []
    failures: list[str] = []
    try:
        for name, kind, data in seeds:  # valid files must read, through every reader
            path = folder / f"seed-{name}{SUFFIXES[kind][0]}"
            path.write_bytes(data)
            for index in (1, 2):  # read_pages with labels=True, then read_pages_lazily
                if index == 1 and name in IMAGE_ONLY_SEEDS:
                    continue
                outcome, problems, _ = read_file(index, path, args.timeout)
                if outcome != "ok":
                    failures.append(f"valid seed {path.name}: {outcome} {problems}")
        by_mutation: dict[str, Counter] = defaultdict(Counter)
        by_format: dict[str, Counter] = defaultdict(Counter)
        slowest = (0.0, "")
        for index in range(args.count):
            mutation, detail, suffix, data = make_file(index, rng, seeds, layouts)
            path = folder / f"{index:05d}-{mutation}{suffix}"
            path.write_bytes(data)
            outcome, problems, seconds = read_file(index, path, args.timeout)
            kind = {".tiff": ".tif"}.get(suffix, suffix)[1:]
            for counts in (by_mutation[mutation], by_format[kind]):
                counts[outcome.split("+")[0]] += 1
                counts["memory"] += outcome.endswith("+memory")
            slowest = max(slowest, (seconds, f"{path.name} ({detail})"))
            if problems:
                failures.append(f"{path.name} ({detail}, {len(data)} bytes):\n    " + "\n    ".join(
                    line for problem in problems for line in problem.rstrip().splitlines()))
            else:
                path.unlink()
    finally:
        resource.setrlimit(resource.RLIMIT_AS, limit)
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.dup2(stderr, 2)
    elapsed = time.monotonic() - started
    totals = Counter()
    for counts in by_mutation.values():
        totals.update(counts)
    refused = sum(failure.startswith("valid seed") for failure in failures)
    lines.append(f"{len(seeds)} valid seed files (PNG, TIFF, JPEG), {f'{refused} NOT READ' if refused else 'all read'}; "
                 f"{args.count} mutated files, seed {args.seed}, {elapsed:.0f} s; slowest read {slowest[0]:.2f} s: {slowest[1]}")
    lines.append(f"memory_error: input errors from MemoryError under the {args.memory_gb:g} GiB address-space limit" if args.memory_gb > 0
                 else "memory_error: input errors from MemoryError (no address-space limit)")
    lines.append("")
    lines.append(summary(by_mutation, "mutation"))
    lines.append("")
    lines.append(summary(by_format, "suffix"))
    if failures:
        lines.append("")
        lines.append(f"{len(failures)} failures (files kept in {folder}):")
        lines.extend(failures[:40])
    lines.append("")
    lines.append(f"files={args.count} ok={totals['ok']} input_errors={totals['input_error']} tracebacks={totals['traceback']}")
    output = "\n".join(lines)
    print(output)
    if args.record:
        from isbi_runs import append_results  # imports torch: only now, outside the memory limit

        append_results("Reader fuzzing: damaged PNG, TIFF and JPEG files (issue 7)", [
            f"{args.count} files from {len(seeds)} valid seeds, seed {args.seed}, {elapsed:.0f} s on one core, "
            f"{args.memory_gb:g} GiB address-space limit, {args.timeout:g} s per read",
            "Each file through read_pages; a third also with labels=True, a third through read_pages_lazily "
            "down its memory-mapping path",
        ], output)
    if not failures and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
