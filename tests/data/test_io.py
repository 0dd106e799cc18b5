"""Reading and writing images, masks and stacks: every format users bring, and every way a file breaks."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import write_png
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from unetkit.data.io import list_image_files, natural_key, read_image_pages, read_pages, write_atomic, write_mask, write_tiff
from unetkit.errors import InputError

RNG = np.random.default_rng(1234)
H, W = 5, 7  # odd and non-square, so a transposed read cannot pass


def _random(shape: tuple[int, ...], dtype: type, high: int | None = None) -> np.ndarray:
    high = high if high is not None else np.iinfo(dtype).max
    return RNG.integers(0, high, shape, endpoint=True).astype(dtype)


def _cut(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


# --- PNG --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_greyscale_png_keeps_values_and_dtype(tmp_path: Path, dtype: type) -> None:
    image = _random((H, W), dtype)
    image[0, 0], image[-1, -1] = 0, np.iinfo(dtype).max  # full range, so 16 bit cannot pass as 8 bit
    pages, palette = read_pages(write_png(tmp_path / "grey.png", image))
    assert pages.shape == (1, H, W) and pages.dtype == dtype and palette is None
    np.testing.assert_array_equal(pages[0], image)


@pytest.mark.parametrize(
    ("mode", "channels", "kept"),
    [("RGB", 3, 3), ("RGBA", 4, 3), ("LA", 2, 1)],
    ids=["rgb", "rgba-alpha-dropped", "grey-alpha-dropped"],
)
def test_colour_png_and_alpha_dropped(tmp_path: Path, mode: str, channels: int, kept: int) -> None:
    image = _random((H, W, channels), np.uint8)
    if channels in (2, 4):
        image[..., -1] = 255  # opaque: the alpha channel says nothing
    path = tmp_path / "colour.png"
    Image.fromarray(image, mode=mode).save(path)
    pages, _ = read_pages(path)
    expected = image[..., :kept] if kept > 1 else image[..., 0]
    assert pages.shape == (1, *expected.shape)
    np.testing.assert_array_equal(pages[0], expected)


def test_bilevel_png_reads_as_bool(tmp_path: Path) -> None:
    mask = RNG.random((H, W)) > 0.5
    pages, _ = read_pages(write_png(tmp_path / "bilevel.png", mask))
    assert pages.dtype == bool
    np.testing.assert_array_equal(pages[0], mask)


def _palette_png(path: Path, indices: np.ndarray, colours: list[tuple[int, int, int]]) -> Path:
    image = Image.frombytes("P", (indices.shape[1], indices.shape[0]), indices.astype(np.uint8).tobytes())
    image.putpalette([c for colour in colours for c in colour])
    image.save(path)
    return path


COLOURS = [(0, 0, 0), (255, 0, 0), (0, 128, 255)]


def test_palette_png_as_labels_keeps_indices_and_palette(tmp_path: Path) -> None:
    indices = np.resize(np.arange(3, dtype=np.uint8), (H, W))
    pages, palette = read_pages(_palette_png(tmp_path / "p.png", indices, COLOURS), labels=True)
    assert pages.shape == (1, H, W)
    np.testing.assert_array_equal(pages[0], indices)
    assert palette is not None and palette[:9] == [c for colour in COLOURS for c in colour]


def test_palette_png_as_image_gives_colours(tmp_path: Path) -> None:
    indices = np.resize(np.arange(3, dtype=np.uint8), (H, W))
    pages, palette = read_pages(_palette_png(tmp_path / "p.png", indices, COLOURS), labels=False)
    assert palette is None and pages.shape == (1, H, W, 3)
    np.testing.assert_array_equal(pages[0], np.array(COLOURS, dtype=np.uint8)[indices])


# --- TIFF -------------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tiff_single_page(tmp_path: Path, compression: str | None, dtype: type) -> None:
    image = _random((H, W), dtype)
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, image, compression=compression)
    with tifffile.TiffFile(path) as tif:  # the file really is compressed as asked
        assert tif.pages[0].compression == {None: 1, "lzw": 5, "zlib": 8}[compression]
    pages, palette = read_pages(path)
    assert pages.shape == (1, H, W) and pages.dtype == dtype and palette is None
    np.testing.assert_array_equal(pages[0], image)


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("count", [2, 3, 4])  # 3 pages must not turn into 3 channels
def test_tiff_stack_reads_as_pages(tmp_path: Path, compression: str | None, count: int) -> None:
    stack = _random((count, H, W), np.uint8)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack", compression=compression)
    pages, _ = read_pages(path)
    assert pages.shape == (count, H, W)
    np.testing.assert_array_equal(pages, stack)


def _write_pages_with_tifffile(path: Path, stack: np.ndarray) -> None:
    with tifffile.TiffWriter(path) as tif:  # one write per page: tifffile makes each its own series
        for page in stack:
            tif.write(page, photometric="minisblack")


def _write_pages_with_pillow(path: Path, stack: np.ndarray) -> None:
    first, *rest = [Image.fromarray(page) for page in stack]
    first.save(path, save_all=True, append_images=rest)


@pytest.mark.parametrize("writer", [_write_pages_with_tifffile, _write_pages_with_pillow], ids=["tifffile-loop", "pillow"])
def test_tiff_written_page_by_page_reads_as_stack(tmp_path: Path, writer) -> None:
    stack = _random((3, H, W), np.uint8)
    writer(tmp_path / "pages.tif", stack)
    pages, _ = read_pages(tmp_path / "pages.tif")
    np.testing.assert_array_equal(pages, stack)


def test_tiff_with_a_differently_sized_second_series_reads_the_first(tmp_path: Path) -> None:
    """A thumbnail or overview after the image is not a page of a stack."""
    image = _random((H, W), np.uint8)
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tif:
        tif.write(image)
        tif.write(image[:2, :2])
    pages, _ = read_pages(tmp_path / "thumb.tif")
    np.testing.assert_array_equal(pages, image[None])


def test_rgb_tiff_is_one_page_with_three_channels(tmp_path: Path) -> None:
    image = _random((H, W, 3), np.uint8)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, image, photometric="rgb")
    pages, _ = read_pages(path)
    assert pages.shape == (1, H, W, 3)
    np.testing.assert_array_equal(pages[0], image)


def test_rgb_tiff_stack(tmp_path: Path) -> None:
    stack = _random((2, H, W, 3), np.uint8)
    path = tmp_path / "rgbstack.tif"
    tifffile.imwrite(path, stack, photometric="rgb")
    pages, _ = read_pages(path)
    assert pages.shape == (2, H, W, 3)
    np.testing.assert_array_equal(pages, stack)


@pytest.mark.parametrize("planes", [3, 4])
def test_mask_colour_planes_stored_apart_are_refused_as_ambiguous_and_images_read_as_colour(tmp_path: Path,
                                                                                            planes: int) -> None:
    """tifffile's default for a (3, H, W) array: RGB in separate planes; a 3-mask stack read as one mask of 8 colours.
    Images stay colour: Bio-Formats and EPICS write planar RGB images too."""
    path = tmp_path / "stack.tif"
    array = _random((planes, H, W), np.uint8)
    tifffile.imwrite(path, array, photometric="rgb", planarconfig="separate")  # tifffile's default for this shape
    with pytest.raises(InputError, match=rf"stack.tif: a mask whose {planes} colour planes .*photometric='minisblack'"):
        read_pages(path, labels=True)
    pages, _ = read_pages(path)
    expected = np.moveaxis(array, 0, -1)[..., :3]  # a fourth plane is alpha, dropped
    assert pages.shape == (1, H, W, 3) and np.array_equal(pages[0], expected)
    tifffile.imwrite(path, array, photometric="minisblack")  # the fix the message gives
    assert read_pages(path, labels=True)[0].shape == (planes, H, W)


@pytest.mark.parametrize("shape", [(40, 36, 2), (40, 36, 5), (40, 36, 7), (3, 40, 36, 2)])
def test_numpy_channels_last_arrays_written_by_tifffile_are_images_of_channels(tmp_path: Path,
                                                                                shape: tuple[int, ...]) -> None:
    """tifffile.imwrite stores (H, W, 2) and (H, W, 5+) as H pages C pixels wide: a two-channel image was read as
    40 images of 36 x 2. It is (pages, H, W, C), as written, in every reader and in the declared size."""
    from unetkit.data.io import declared_size, read_pages_lazily

    array = np.arange(np.prod(shape), dtype=np.uint16).reshape(shape)
    tifffile.imwrite(tmp_path / "two.tif", array)
    expected = array if len(shape) == 4 else array[None]
    pages = read_pages(tmp_path / "two.tif")[0]
    assert pages.shape == expected.shape and np.array_equal(pages, expected)
    assert np.array_equal(np.asarray(read_pages_lazily(tmp_path / "two.tif")), expected)
    assert declared_size(tmp_path / "two.tif") == (expected.shape[0], int(np.prod(expected.shape[:3])))


def test_stacks_and_single_channel_arrays_keep_their_layout(tmp_path: Path) -> None:
    """Pages wider than a channel axis stay pages (5 of 40 x 30, 100 of 300 x 17); a numpy (H, W, 1) or
    (Z, H, W, 1) array, which tifffile stores as (K, H, 1) is, is one grey image or a stack of them (review: a
    reading of (K, H, 1) for predict's own 1-pixel-wide outputs turned 64 x 48 x 1 into 64 pages 1 pixel wide)."""
    for shape, expected in (((5, 40, 30), (5, 40, 30)), ((100, 300, 17), (100, 300, 17)), ((64, 48, 1), (1, 64, 48)),
                            ((5, 64, 48, 1), (5, 64, 48)), ((64, 48, 10), (1, 64, 48, 10))):
        tifffile.imwrite(tmp_path / "a.tif", np.zeros(shape, np.uint8))
        assert read_pages(tmp_path / "a.tif")[0].shape == expected, shape
    tifffile.imwrite(tmp_path / "b.tif", np.zeros((64, 48, 2), np.uint16), metadata=None)  # no shape: IYX
    assert read_pages(tmp_path / "b.tif")[0].shape == (1, 64, 48, 2)


def test_float32_tiff_exact(tmp_path: Path) -> None:
    image = (RNG.normal(0, 1e3, (H, W))).astype(np.float32)
    path = tmp_path / "float.tif"
    tifffile.imwrite(path, image)
    pages, _ = read_pages(path)
    assert pages.dtype == np.float32
    np.testing.assert_array_equal(pages[0], image)


def test_write_tiff_round_trip(tmp_path: Path) -> None:
    stack = RNG.random((3, H, W)).astype(np.float32)
    write_tiff(tmp_path / "out.tif", stack)
    np.testing.assert_array_equal(read_pages(tmp_path / "out.tif")[0], stack)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_read_image_pages_names_stack_pages(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "vol.tif", _random((3, H, W), np.uint8), photometric="minisblack")
    write_png(tmp_path / "10.png", _random((H, W), np.uint8))
    write_png(tmp_path / "9.png", _random((H, W), np.uint8))
    assert [p.name for p in read_image_pages(tmp_path)] == ["9", "10", "vol[0]", "vol[1]", "vol[2]"]


# --- errors -----------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    for call in (lambda p: read_pages(p), lambda p: list_image_files(p)):
        with pytest.raises(InputError, match="nothere.png"):
            call(tmp_path / "nothere.png")


@pytest.mark.parametrize("contents", [[], ["notes.txt", ".hidden.png"]], ids=["empty", "no-images"])
def test_folder_without_images(tmp_path: Path, contents: list[str]) -> None:
    folder = tmp_path / "images_folder"
    folder.mkdir()
    for name in contents:
        (folder / name).write_bytes(b"x")
    with pytest.raises(InputError, match="images_folder"):
        list_image_files(folder)


def test_a_folder_of_subfolders_says_that_subfolders_are_not_searched(tmp_path: Path) -> None:
    folder = tmp_path / "images_folder"
    for name in ("day1", "day2"):
        write_png(folder / name / "0.png", _random((H, W), np.uint8))
    with pytest.raises(InputError, match=r"images_folder: .*subfolders \(day1, day2\): subfolders are not searched"):
        list_image_files(folder)


def test_non_image_file_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="notes.txt"):
        list_image_files(tmp_path / "notes.txt")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9])
def test_truncated_png(tmp_path: Path, fraction: float) -> None:
    path = _cut(write_png(tmp_path / "cut.png", _random((32, 32), np.uint8)), fraction)
    with pytest.raises(InputError, match="cut.png"):
        read_pages(path)


@pytest.mark.parametrize("compression", [None, "lzw", "zlib"])
@pytest.mark.parametrize("count", [1, 4])
def test_truncated_tiff(tmp_path: Path, compression: str | None, count: int) -> None:
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, _random((count, 16, 16), np.uint8), photometric="minisblack", compression=compression)
    _cut(path, 0.5)
    with pytest.raises(InputError, match="cut.tif"):
        read_pages(path)


@pytest.mark.parametrize("name", ["noise.png", "noise.tif", "noise.jpg"])
def test_random_bytes(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(InputError, match=name):
        read_pages(path)


def _sample_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(5)
    png = write_png(folder / "s.png", rng.integers(0, 255, (24, 24), dtype=np.uint8))
    tif = folder / "s.tif"
    tifffile.imwrite(tif, rng.integers(0, 255, (3, 12, 12), dtype=np.uint8), photometric="minisblack", compression="zlib")
    return {".png": png.read_bytes(), ".tif": tif.read_bytes()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".png", ".tif"]), data=st.data())
def test_cut_or_corrupt_files_never_leak_library_errors(tmp_path: Path, suffix: str, data: st.DataObject) -> None:
    """A damaged file raises InputError naming it, never a library traceback; a cut file never loses pages silently."""
    good = _sample_files(tmp_path / "originals")[suffix]
    expected = read_pages(tmp_path / "originals" / f"s{suffix}")[0]
    damaged = bytearray(good[: data.draw(st.integers(0, len(good) - 1), label="cut")])
    flipped = bool(damaged) and data.draw(st.booleans(), label="flip")
    if flipped:
        damaged[data.draw(st.integers(0, len(damaged) - 1), label="at")] ^= data.draw(st.integers(1, 255), label="xor")
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(bytes(damaged))
    try:
        pages, _ = read_pages(path)
    except InputError as error:
        assert path.name in str(error)
        return
    if not flipped:  # only a flipped byte in pixel data may go unnoticed
        np.testing.assert_array_equal(pages, expected)


def test_tiff_page_chain_pointing_into_itself_is_refused_not_looped(tmp_path: Path) -> None:
    """Found by fuzzing: tifffile's series detection loops forever (and fills memory) on this file."""
    path = tmp_path / "loop.tif"
    Image.fromarray(np.arange(144, dtype=np.uint8).reshape(12, 12)).save(path, compression="tiff_lzw")
    with tifffile.TiffFile(path) as tif:
        ifd, tags = tif.pages[0].offset, len(tif.pages[0].tags)
    data = bytearray(path.read_bytes())
    next_field = ifd + 2 + 12 * tags  # classic TIFF: tag count, 12-byte tags, then the next page's offset
    assert data[next_field : next_field + 4] == bytes(4)  # the end of the chain, as written
    data[next_field : next_field + 4] = (ifd + 2 + 12 * 6 + 2).to_bytes(4, "little")  # into the 7th tag
    path.write_bytes(bytes(data))
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            read_pages(path)
            outcome.append(None)
        except Exception as error:  # noqa: BLE001
            outcome.append(error)

    worker = threading.Thread(target=read, daemon=True)  # a regression loops: fail instead of hanging the run
    worker.start()
    worker.join(timeout=20)
    assert outcome, "read_pages still running after 20 s: it loops on a page chain that points into itself"
    assert isinstance(outcome[0], InputError) and "loop.tif" in str(outcome[0])


# --- listing ----------------------------------------------------------------------------------


def test_list_image_files_natural_order_and_skips(tmp_path: Path) -> None:
    for name in ["10.png", "2.png", "1.PNG", "img11.tif", "img9.tiff", ".3.png", "notes.txt", "labels.csv"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub.png").mkdir()  # a folder that looks like an image
    assert [p.name for p in list_image_files(tmp_path)] == ["1.PNG", "2.png", "10.png", "img9.tiff", "img11.tif"]


def test_list_image_files_single_file(tmp_path: Path) -> None:
    path = write_png(tmp_path / "a.png", _random((H, W), np.uint8))
    assert list_image_files(path) == [path]


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=20, unique=True), st.sampled_from(["", "img_", "Slice-"]))
def test_natural_key_orders_numbers_numerically(numbers: list[int], prefix: str) -> None:
    names = [f"{prefix}{n}.png" for n in numbers]
    assert sorted(names, key=natural_key) == [f"{prefix}{n}.png" for n in sorted(numbers)]


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["b10", "B9", "a"], ["a", "B9", "b10"]),
        (["scan_1²2.png", "scan_1.png"], ["scan_1.png", "scan_1²2.png"]),  # "²" is a digit int() refuses
        (["٣.png", "12.png"], ["٣.png", "12.png"]),  # other scripts' decimal digits are numbers too
    ],
)
def test_natural_key_table(names: list[str], expected: list[str]) -> None:
    assert sorted(names, key=natural_key) == expected


@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8))
def test_natural_key_sorts_any_names(names: list[str]) -> None:
    """Any file name (digits of other scripts included) gets a key, and keys compare."""
    assert sorted(sorted(names, key=natural_key), key=natural_key) == sorted(names, key=natural_key)


# --- writing ----------------------------------------------------------------------------------


MASKS = {
    "bool": RNG.random((H, W)) > 0.5,
    "uint8": np.resize(np.array([0, 1, 128, 255], dtype=np.uint8), (H, W)),
    "uint16": np.resize(np.array([0, 1, 1000, 65535], dtype=np.uint16), (H, W)),
    "uint16-small-values": np.resize(np.array([0, 1, 2], dtype=np.uint16), (H, W)),
    "rgb": np.resize(np.array(COLOURS, dtype=np.uint8), (H, W, 3)),
}


@pytest.mark.parametrize("kind", list(MASKS))
def test_write_mask_round_trip(tmp_path: Path, kind: str) -> None:
    mask = MASKS[kind]
    write_mask(tmp_path / "m.png", mask)
    pages, palette = read_pages(tmp_path / "m.png", labels=True)
    assert pages[0].dtype == mask.dtype and palette is None
    np.testing.assert_array_equal(pages[0], mask)


def test_write_mask_palette_round_trip(tmp_path: Path) -> None:
    indices = np.resize(np.arange(3, dtype=np.uint8), (H, W))
    palette = [c for colour in COLOURS for c in colour] + [0] * (768 - 9)
    write_mask(tmp_path / "p.png", indices, palette)
    pages, read_palette = read_pages(tmp_path / "p.png", labels=True)
    np.testing.assert_array_equal(pages[0], indices)
    assert read_palette == palette
    colours, _ = read_pages(tmp_path / "p.png")
    np.testing.assert_array_equal(colours[0], np.array(COLOURS, dtype=np.uint8)[indices])


def test_write_mask_replaces_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "m.png"
    write_mask(target, MASKS["uint8"])
    write_mask(target, MASKS["uint8"] // 2)
    np.testing.assert_array_equal(read_pages(target)[0][0], MASKS["uint8"] // 2)
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]


def test_write_atomic_keeps_target_when_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"previous")

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half a fi")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, broken)
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_write_atomic_writes_through_a_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    seen: list[Path] = []

    def writer(tmp: Path) -> None:
        seen.append(tmp)
        assert not target.exists()  # the target appears only when complete
        tmp.write_bytes(b"new")

    write_atomic(target, writer)
    assert seen[0] != target and seen[0].parent == tmp_path
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_write_atomic_gives_files_the_usual_permissions(tmp_path: Path) -> None:
    """A writer that makes a private temporary file (safetensors does: 0600) must not make private weights."""
    import os
    import stat

    def private(tmp: Path) -> None:
        tmp.write_bytes(b"weights")
        os.chmod(tmp, 0o600)

    write_atomic(tmp_path / "model.safetensors", private)
    (tmp_path / "plain.bin").write_bytes(b"x")  # what any new file gets under this process's umask
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)  # noqa: E731
    assert mode("model.safetensors") == mode("plain.bin")


def test_write_atomic_turns_a_disk_error_into_one_line_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "mask.png"
    target.write_bytes(b"previous")

    def full(tmp: Path) -> None:
        with open("/dev/full", "wb") as handle:  # the kernel's always-full device: a real ENOSPC
            handle.write(b"x" * 65536)
            handle.flush()

    with pytest.raises(InputError, match="mask.png: could not be written .*space"):
        write_atomic(target, full)
    assert target.read_bytes() == b"previous"


def test_a_tiff_of_unequal_pages_is_refused_not_cut_to_its_first(tmp_path: Path) -> None:
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as writer:
        writer.write(np.zeros((10, 12), np.uint8))
        writer.write(np.zeros((20, 8), np.uint8))
    # sizes as every message gives them, width x height (it said 10 x 12 for 10 rows of 12 columns: an audit)
    with pytest.raises(InputError, match=r"holds 2 images that differ .*width x height: 12 x 10 uint8 and 8 x 20 uint8"):
        read_pages(tmp_path / "mixed.tif")
    with tifffile.TiffWriter(tmp_path / "thumbnail.tif") as writer:  # a reduced-resolution page is not data
        writer.write(np.ones((64, 64), np.uint8))
        writer.write(np.zeros((16, 16), np.uint8), subfiletype=1)
    pages, _ = read_pages(tmp_path / "thumbnail.tif")
    assert pages.shape == (1, 64, 64) and pages.min() == 1


def test_a_grey_stack_saved_as_planar_rgb_gets_a_hint_where_its_pages_or_channels_do_not_fit(tmp_path: Path) -> None:
    """tifffile saves a (3, H, W) array as one planar RGB image: check said only "has 1 page but its mask has 3"."""
    import warnings

    from unetkit.data.dataset import read_pairs
    from unetkit.data.normalize import Normalization
    from unetkit.errors import InputError

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile's own warning about this very default
        tifffile.imwrite(images / "s.tif", np.zeros((3, 16, 16), np.uint8))
    tifffile.imwrite(labels / "s.tif", np.zeros((3, 16, 16), np.uint8), photometric="minisblack")
    with pytest.raises(InputError, match=r"has 1 page but its mask .* has 3; .*if they are 3 grey sections, re-save it "
                                         r"with tifffile\.imwrite\(path, array, photometric='minisblack'\)"):
        read_pairs(images, labels)
    grey = Normalization.fit([np.zeros((16, 16), np.uint8)], "percentile")
    with pytest.raises(InputError, match="has 3 channel.*if they are 3 grey sections"):
        grey.check_compatible(np.zeros((16, 16, 3), np.uint8), str(images / "s.tif"))
    with pytest.raises(InputError) as plain:
        grey.check_compatible(np.zeros((16, 16, 3), np.uint8), str(tmp_path / "rgb.png"))
    assert "grey sections" not in str(plain.value)


def test_a_broken_link_among_the_images_is_named_not_skipped(tmp_path: Path) -> None:
    """A pair whose files link to nothing was left out without a word ("6 pairs read; 0 errors"; audit)."""
    from unetkit.data.io import list_image_files
    from unetkit.errors import InputError

    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(InputError, match=r"b.png: a link to .*gone.png, which does not exist; fix"):
        list_image_files(tmp_path)
    (tmp_path / "c.png").symlink_to(tmp_path / "gone too.png")  # the others are counted, not found one run at a time
    with pytest.raises(InputError, match=r"b.png: a link to .*gone.png, which does not exist \(1 more broken link in "):
        list_image_files(tmp_path)


def test_reading_leaves_pillows_bomb_guard_as_the_host_set_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """unetkit's own pixel limit replaces Pillow's guard for its reads only: one read set it to None for the process."""
    from unetkit.data.io import declared_size

    write_png(tmp_path / "a.png", np.zeros((64, 64), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 is over twice this: Pillow alone would refuse it
    assert declared_size(tmp_path / "a.png") == (1, 64 * 64)  # was None (refused) before the first read, 4096 after
    assert read_pages(tmp_path / "a.png")[0].shape == (1, 64, 64)
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(Image.DecompressionBombError):
        Image.open(tmp_path / "a.png")


def test_a_stack_written_page_by_page_declares_all_its_pages(tmp_path: Path) -> None:
    """tifffile.TiffWriter.write per page makes one series a page; the reader takes them as pages, but the size
    declared before reading counted one page, so `predict --instances` began a stack it must refuse and the disk
    check counted a page of its probabilities (audit)."""
    import tifffile

    from unetkit.data.io import declared_size

    with tifffile.TiffWriter(tmp_path / "pages.tif") as writer:
        for _ in range(5):
            writer.write(np.zeros((16, 20), np.uint8))
    assert declared_size(tmp_path / "pages.tif") == (5, 5 * 16 * 20) and read_pages(tmp_path / "pages.tif")[0].shape[0] == 5
    with tifffile.TiffWriter(tmp_path / "mixed.tif") as writer:  # series of other sizes are not pages of one stack
        writer.write(np.zeros((16, 20), np.uint8))
        writer.write(np.zeros((8, 10), np.uint8))
    assert declared_size(tmp_path / "mixed.tif") == (1, 16 * 20)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_photo_stored_sideways_is_read_as_viewers_show_it(tmp_path: Path, suffix: str) -> None:
    """Review: EXIF orientation was ignored, so a camera's portrait photo paired with a mask drawn on it as
    shown (and a square one did so without a size error)."""
    from PIL import Image

    stored = np.zeros((20, 30), np.uint8)
    stored[:5, :10] = 255
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6  # turn 90 degrees clockwise for display
    image.save(tmp_path / f"photo{suffix}", exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
    pages, _ = read_pages(tmp_path / f"photo{suffix}")
    shown = np.rot90(stored, -1)
    assert pages.shape == (1, 30, 20)
    assert np.abs(pages[0].astype(int) - shown).max() <= (8 if suffix == ".jpg" else 0)
