"""A stack's outputs go to disk page by page: a stopped predict keeps its finished pages, and memory holds one."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile

from conftest import train_tiny_run

import unetkit.predict_files as predict_files
from unetkit.cli import main
from unetkit.data.io import read_pages
from unetkit.errors import InputError
from unetkit.predict_files import predict_paths
from unetkit.stack_outputs import JOURNAL, unfinished_stacks, work_folder

QUIET = dict(progress=False, say=lambda _: None)
PAGES = 6


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = train_tiny_run(tmp_path_factory.mktemp("stack"), count=4, size=32, epochs=1)
    pages = [read_pages(root / "image" / f"{i % 4}.png")[0][0] for i in range(PAGES)]
    pages = [np.rot90(page, i // 4) for i, page in enumerate(pages)]  # six different pages
    tifffile.imwrite(root / "volume.tif", np.stack(pages), photometric="minisblack")
    return root


@pytest.fixture
def page_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """Counts the pages predicted; `state["stop_at"] = n` stops the predict (Ctrl-C) as page call n begins."""
    state: dict[str, object] = {"calls": 0, "stop_at": None}
    real = predict_files.predict_page

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        state["calls"] = int(state["calls"]) + 1  # type: ignore[arg-type]
        if state["calls"] == state["stop_at"]:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_files, "predict_page", counting)
    return state


def _kept(out: Path) -> list[tuple[str, int, int]]:
    """(input name, pages done, pages) of each stopped stack `out` keeps."""
    return [(file.name, done, pages) for file, done, pages, _ in unfinished_stacks(out)]


def _outputs(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: tifffile.imread(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def _axes(path: Path) -> str:
    with tifffile.TiffFile(path) as tif:
        return tif.series[0].axes


def test_a_stack_stopped_midway_goes_on_from_its_next_page_with_skip_done(tiny_run: Path, tmp_path: Path,
                                                                          page_calls: dict[str, object]) -> None:
    options = dict(write_probabilities=True, instances=0, **QUIET)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "whole", **options)
    whole = _outputs(tmp_path / "whole")
    assert sorted(whole) == ["volume.tif", "volume_cells.tif", "volume_prob.tif"]

    page_calls.update(calls=0, stop_at=4)  # Ctrl-C on the fourth page: three are done
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "out", **options)
    assert _outputs(tmp_path / "out") == {}  # nothing that looks like a result
    assert _kept(tmp_path / "out") == [("volume.tif", 3, PAGES)]

    page_calls.update(calls=0, stop_at=None)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "out", skip_done=True, **options)
    assert page_calls["calls"] == PAGES - 3  # only the pages not done
    resumed = _outputs(tmp_path / "out")
    assert sorted(resumed) == sorted(whole)
    for name in whole:
        assert np.array_equal(resumed[name], whole[name]), name
        assert _axes(tmp_path / "out" / name) == _axes(tmp_path / "whole" / name)
    assert not work_folder(tmp_path / "out", "volume").exists() and _kept(tmp_path / "out") == []
    assert int(resumed["volume_cells.tif"][3:].max()) > int(resumed["volume_cells.tif"][:3].max())  # ids go on


def test_without_skip_done_or_with_other_options_the_stack_starts_again(tiny_run: Path, tmp_path: Path,
                                                                        page_calls: dict[str, object]) -> None:
    out = tmp_path / "out"
    for again in ({}, {"skip_done": True, "tta": True}):
        page_calls.update(calls=0, stop_at=3)
        with pytest.raises(KeyboardInterrupt):
            predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, **QUIET)
        page_calls.update(calls=0, stop_at=None)
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, **again, **QUIET)  # type: ignore[arg-type]
        assert page_calls["calls"] == PAGES, again
        assert _kept(out) == []


def test_a_stack_saved_again_since_is_predicted_from_its_first_page(tiny_run: Path, tmp_path: Path,
                                                                   page_calls: dict[str, object]) -> None:
    volume = tmp_path / "volume.tif"
    pages = tifffile.imread(tiny_run / "volume.tif")
    tifffile.imwrite(volume, pages, photometric="minisblack")
    page_calls.update(calls=0, stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [volume], tmp_path / "out", **QUIET)
    tifffile.imwrite(volume, pages[::-1].copy(), photometric="minisblack")  # other pages under the same name
    page_calls.update(calls=0, stop_at=None)
    predict_paths(tiny_run / "run", [volume], tmp_path / "out", skip_done=True, **QUIET)
    assert page_calls["calls"] == PAGES
    predict_paths(tiny_run / "run", [volume], tmp_path / "fresh", **QUIET)
    assert np.array_equal(tifffile.imread(tmp_path / "out" / "volume.tif"), tifffile.imread(tmp_path / "fresh" / "volume.tif"))


def test_a_stack_stopped_on_its_first_page_or_with_a_damaged_journal_leaves_nothing_to_go_on_from(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object]) -> None:
    out = tmp_path / "out"
    page_calls.update(calls=0, stop_at=1)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, **QUIET)
    assert not work_folder(out, "volume").exists()
    page_calls.update(calls=0, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, **QUIET)
    (work_folder(out, "volume") / JOURNAL).write_text("{not json")
    page_calls.update(calls=0, stop_at=None)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, skip_done=True, **QUIET)
    assert page_calls["calls"] == PAGES and _kept(out) == []


def test_the_interrupt_message_counts_the_pages_kept(tiny_run: Path, tmp_path: Path, page_calls: dict[str, object],
                                                      capsys: pytest.CaptureFixture) -> None:
    command = ["predict", str(tiny_run / "run"), str(tiny_run / "volume.tif"), "--out", str(tmp_path / "out"), "--quiet"]
    page_calls.update(calls=0, stop_at=5)
    assert main(command) == 130
    err = capsys.readouterr().err
    assert "4 of the 6 pages of volume.tif" in err and "the same command with --skip-done goes on" in err
    page_calls.update(calls=0, stop_at=None)
    assert main([*command, "--skip-done"]) == 0
    assert page_calls["calls"] == 2
    journal_left = list((tmp_path / "out").glob(".*"))
    assert all(not p.is_dir() for p in journal_left)  # the work folder went with the last page


@pytest.mark.parametrize("storage", ["decoded", "mapped", "compressed"])
def test_memory_holds_a_page_of_the_mask_not_the_stack(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       storage: str) -> None:
    """The masks of a stack's pages were kept in a list and stacked before writing: two copies of the whole mask in
    memory (8 GiB each for a 500-page 4096^2 volume). Traced numpy memory may grow with the page count by the
    input stack where it is read whole (one byte a pixel here), not by the masks. A large stack is not read whole
    (as if over LAZY_BYTES): an uncompressed one is memory-mapped, a compressed one decoded a page at a time
    (it was decoded whole), and then memory does not grow with it at all."""
    from unetkit.data import io

    if storage != "decoded":
        monkeypatch.setattr(io, "LAZY_BYTES", 0)
    page = np.tile(tifffile.imread(tiny_run / "volume.tif")[0], (3, 3))  # pixels outweigh the pages' metadata
    peaks = {}
    for count in (10, 210):
        tifffile.imwrite(tmp_path / f"v{count}.tif", np.broadcast_to(page, (count, *page.shape)), photometric="minisblack",
                         compression="zlib" if storage == "compressed" else None)
        predict_paths(tiny_run / "run", [tmp_path / f"v{count}.tif"], tmp_path / "warm", **QUIET)  # imports, caches
        tracemalloc.start()
        try:
            predict_paths(tiny_run / "run", [tmp_path / f"v{count}.tif"], tmp_path / f"out{count}", **QUIET)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    # one byte a pixel: the input's pages; the masks' list and stack held two more. tifffile's description of
    # each page (about 1 KB, while a file is opened) grows with the count too.
    bytes_added = 200 * page.size
    assert peaks[210] - peaks[10] < (1.5 if storage == "decoded" else 0.5) * bytes_added, peaks
    assert tifffile.imread(tmp_path / "out210" / "v210.tif").shape == (210, *page.shape)


def test_the_journal_is_written_after_the_page_it_counts(tiny_run: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed between a page's bytes and the journal must never find a page counted that is not there:
    the journal's count, read as each page is reported done, is the pages whose masks are already on disk."""
    from unetkit import stack_outputs

    seen: list[tuple[int, int]] = []
    real = stack_outputs.StackOutputs.page_done

    def checking(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        real(self, *args, **kwargs)
        journal = json.loads((self.folder / JOURNAL).read_text())
        on_disk = np.load(self.folder / "mask.npy", mmap_mode="r")
        seen.append((journal["done"], int((on_disk.reshape(len(on_disk), -1) != 0).any(axis=1).sum())))

    monkeypatch.setattr(stack_outputs.StackOutputs, "page_done", checking)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "out", **QUIET)
    assert [done for done, _ in seen] == list(range(1, PAGES + 1))
    assert all(written >= done for done, written in seen)


def test_the_space_check_counts_the_kept_pages_of_the_stack_as_free_and_names_others(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """The check counted the whole stack again beside the pages a stopped predict kept, so on a disk that had room
    for the first try neither the resume nor a restart could start (review). Here a disk of `capacity` bytes
    holds the files under `out`."""
    import shutil

    out = tmp_path / "out"
    needed = PAGES * 32 * 32 * (2 * 4 + 1)  # float32 probabilities of two classes and a one-byte mask
    usage = shutil.disk_usage(tmp_path)
    capacity = [usage.free]

    def used() -> int:
        return sum(path.stat().st_size for path in out.rglob("*") if path.is_file()) if out.exists() else 0

    monkeypatch.setattr(predict_files.shutil, "disk_usage", lambda path: usage._replace(free=capacity[0] - used()))
    for again in ({}, {"skip_done": True}):  # a restart removes the kept pages first, a resume fills them
        capacity[0] = usage.free
        page_calls.update(calls=0, stop_at=4)
        with pytest.raises(KeyboardInterrupt):
            predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, write_probabilities=True, **QUIET)
        capacity[0] = needed + 100  # room for the stack's files and nothing else
        page_calls.update(calls=0, stop_at=None)
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, write_probabilities=True, **again, **QUIET)  # type: ignore[arg-type]
        assert page_calls["calls"] == (PAGES - 3 if again else PAGES) and _kept(out) == []
        shutil.rmtree(out)
    capacity[0] = usage.free
    page_calls.update(calls=0, stop_at=2)
    other = tmp_path / "other.tif"
    other.write_bytes((tiny_run / "volume.tif").read_bytes())
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [other], out, write_probabilities=True, **QUIET)
    page_calls.update(calls=0, stop_at=None)
    capacity[0] = needed + 100  # other.tif's kept pages fill part of it
    with pytest.raises(InputError, match=r"holds the 1 finished pages of 6 of .*other\.tif, kept in .*\.other\.unetkit-pages"):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, write_probabilities=True, **QUIET)


def test_kept_pages_not_gone_on_from_are_removed_before_the_space_check(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    """The check counted kept pages as free, but a restart removed them only when that stack's turn came: inputs
    before it found the disk full of unetkit's own folder (review)."""
    out = tmp_path / "out"
    page_calls.update(calls=0, stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, write_probabilities=True, **QUIET)
    page_calls.update(calls=0, stop_at=None)
    seen: list[bool] = []
    monkeypatch.setattr(predict_files, "check_free_space", lambda *args: seen.append(work_folder(out, "volume").exists()))
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, skip_done=True, tta=True, **QUIET)  # other options
    assert seen == [False]


def test_the_kept_pages_of_another_image_of_that_name_are_refused_not_discarded(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object]) -> None:
    """sb/vol.tif into a folder keeping sa/vol.tif's finished pages deleted them without a word (review)."""
    for day in ("sa", "sb"):
        (tmp_path / day).mkdir()
        (tmp_path / day / "vol.tif").write_bytes((tiny_run / "volume.tif").read_bytes())
    page_calls.update(calls=0, stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tmp_path / "sa" / "vol.tif"], tmp_path / "out", **QUIET)
    page_calls.update(calls=0, stop_at=None)
    with pytest.raises(InputError, match=r"vol\.tif: .* keeps the 3 finished pages of .*sa/vol\.tif, another image of "
                                         r"this name.*--skip-done"):
        predict_paths(tiny_run / "run", [tmp_path / "sb" / "vol.tif"], tmp_path / "out", **QUIET)
    assert page_calls["calls"] == 0 and _kept(tmp_path / "out") == [("vol.tif", 3, PAGES)]


def test_a_stack_in_imagej_layout_is_filled_in_place_and_moved_not_copied(tiny_run: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A calibrated stack's mask and cells are uncompressed ImageJ TIFFs: written from .npy copies they needed twice
    the disk at the end, after every page was predicted (review). They are filled in that layout and moved."""
    from unetkit import stack_outputs

    pages = tifffile.imread(tiny_run / "volume.tif").reshape(2, 3, 32, 32)
    volume = tmp_path / "volume.tif"
    tifffile.imwrite(volume, pages, imagej=True, resolution=(2.0, 2.0), metadata={"axes": "TZYX", "unit": "um",
                                                                                  "spacing": 0.5})
    predict_paths(tiny_run / "run", [volume], tmp_path / "copied", instances=0, **QUIET)  # the reference
    written: list[str] = []
    monkeypatch.setattr(stack_outputs, "write_tiff", lambda path, *args: written.append(Path(path).name))
    predict_paths(tiny_run / "run", [volume], tmp_path / "moved", instances=0, **QUIET)
    assert written == []  # nothing written again: both moved into place
    for name in ("volume.tif", "volume_cells.tif"):
        with tifffile.TiffFile(tmp_path / "moved" / name) as moved, tifffile.TiffFile(tmp_path / "copied" / name) as copied:
            assert moved.series[0].axes == copied.series[0].axes == "TZYX"
            assert moved.imagej_metadata == copied.imagej_metadata and moved.imagej_metadata["spacing"] == 0.5
            assert moved.pages[0].tags["XResolution"].value == copied.pages[0].tags["XResolution"].value
            assert np.array_equal(moved.asarray(), copied.asarray())


def test_a_disk_too_full_for_a_stack_is_an_error_before_its_pages_not_a_bus_error(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, page_calls: dict[str, object]) -> None:
    """The work folder's files were created sparse: a disk that filled while pages were written killed predict with
    SIGBUS and no message (review). They are allocated in full when made."""
    import errno
    import os

    def full_disk(descriptor: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full_disk, raising=False)
    page_calls.update(calls=0, stop_at=None)
    with pytest.raises(InputError, match=r"volume\.tif: could not be written \(No space left on device\)"):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "out", **QUIET)
    assert page_calls["calls"] == 0 and not work_folder(tmp_path / "out", "volume").exists()


def test_another_file_of_the_same_name_size_and_time_does_not_go_on_from_the_kept_pages(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object]) -> None:
    """day1/x.tif stopped, then day2/x.tif with --skip-done: with the same size and time (files unpacked from an
    archive) day1's pages were spliced into day2's mask (review). The journal names the input file, and the other
    file's kept pages are refused as a clash."""
    import os

    pages = tifffile.imread(tiny_run / "volume.tif")
    for day, order in (("day1", pages), ("day2", pages[::-1].copy())):
        (tmp_path / day).mkdir()
        tifffile.imwrite(tmp_path / day / "x.tif", order, photometric="minisblack")
        os.utime(tmp_path / day / "x.tif", ns=(10**18, 10**18))
    page_calls.update(calls=0, stop_at=4)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tmp_path / "day1" / "x.tif"], tmp_path / "out", **QUIET)
    page_calls.update(calls=0, stop_at=None)
    with pytest.raises(InputError, match=r"another image of this name"):
        predict_paths(tiny_run / "run", [tmp_path / "day2" / "x.tif"], tmp_path / "out", skip_done=True, **QUIET)
    assert page_calls["calls"] == 0


def test_the_interrupt_names_this_calls_stack_and_a_later_predict_notes_the_one_kept(
        tiny_run: Path, tmp_path: Path, page_calls: dict[str, object], capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "in" / "a.tif"
    other.parent.mkdir()
    other.write_bytes((tiny_run / "volume.tif").read_bytes())
    out = str(tmp_path / "out")
    page_calls.update(calls=0, stop_at=3)
    assert main(["predict", str(tiny_run / "run"), str(other.parent), "--out", out, "--quiet"]) == 130
    assert "2 of the 6 pages of a.tif" in capsys.readouterr().err
    page_calls.update(calls=0, stop_at=5)
    assert main(["predict", str(tiny_run / "run"), str(tiny_run / "volume.tif"), "--out", out, "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "4 of the 6 pages of volume.tif" in err and "a.tif" not in err
    page_calls.update(calls=0, stop_at=None)
    said: list[str] = []
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, skip_done=True, progress=False, say=said.append)
    assert any(line.startswith("note:") and "2 finished pages of 6 of" in line and "a.tif" in line
               and ".a.unetkit-pages" in line for line in said), said


def test_widening_cell_ids_on_a_full_disk_is_an_error_naming_the_cells_file(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The uint32 copy of the ids was created sparse: a disk that filled as it was written killed predict with
    SIGBUS, and every resume again (review). It is allocated in full, and the pages done stay for --skip-done."""
    import errno
    import os

    for name in ("object_regions", "watershed_regions"):
        real = getattr(predict_files, name)
        monkeypatch.setattr(predict_files, name, lambda boundary, real=real: np.where(
            (ids := real(boundary)) > 0, ids.astype(np.int64) + 40000, 0))  # many cells a page: past 65,535 on page 2
    reserve = os.posix_fallocate

    def full_for_the_wide_copy(descriptor: int, offset: int, length: int) -> None:
        if "wide-" in os.readlink(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        reserve(descriptor, offset, length)

    monkeypatch.setattr(os, "posix_fallocate", full_for_the_wide_copy)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"volume_cells\.tif: could not be written \(No space left on device\)"):
        predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, instances=0, **QUIET)
    assert _kept(out) == [("volume.tif", 1, PAGES)]
    assert sorted(p.name for p in work_folder(out, "volume").iterdir()) == ["cells.npy", "mask.npy", JOURNAL]
    monkeypatch.setattr(os, "posix_fallocate", reserve)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], out, instances=0, skip_done=True, **QUIET)
    cells = tifffile.imread(out / "volume_cells.tif")
    assert cells.dtype == np.uint32 and int(cells.max()) > 65535 and _kept(out) == []


def test_a_compressed_stack_is_decoded_a_page_at_a_time_and_predicted_alike(tiny_run: Path, tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Compressed pages (deflate, one series or written page by page, ImageJ's layout) as TiffPages: each decoded
    when predicted, with the masks, cells and probabilities of the stack decoded whole."""
    from unetkit.data import io

    volume = tifffile.imread(tiny_run / "volume.tif")
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "deflate.tif", volume, photometric="minisblack", compression="zlib")
    tifffile.imwrite(tmp_path / "in" / "imagej.tif", volume.reshape(2, 3, *volume.shape[1:]), imagej=True,
                     metadata={"axes": "TZYX"}, compression="zlib")
    with tifffile.TiffWriter(tmp_path / "in" / "paged.tif") as tif:
        for page in volume:
            tif.write(page, photometric="minisblack", compression="zlib")
    options = dict(write_probabilities=True, instances=0, **QUIET)
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "whole", **options)
    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    decoded: list[int] = []
    real = io.TiffPages.__getitem__
    monkeypatch.setattr(io.TiffPages, "__getitem__", lambda self, i: decoded.append(int(i)) or real(self, i))
    predict_paths(tiny_run / "run", [tmp_path / "in"], tmp_path / "paged", **options)
    assert sorted(decoded) == sorted([0] * 3 + list(range(PAGES)) * 3)  # each page once (the first also to check it)
    for name in ("deflate", "imagej", "paged"):
        for suffix in ("", "_prob", "_cells"):
            whole, paged = (tifffile.imread(tmp_path / folder / f"{name}{suffix}.tif") for folder in ("whole", "paged"))
            assert whole.size and np.array_equal(whole, paged), (name, suffix)


def test_a_damaged_page_of_a_compressed_stack_is_one_line_naming_it_and_the_pages_before_it_are_kept(
        tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit.data import io

    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    path = tmp_path / "volume.tif"
    tifffile.imwrite(path, tifffile.imread(tiny_run / "volume.tif"), photometric="minisblack", compression="zlib")
    with tifffile.TiffFile(path) as tif:
        offset, count = tif.pages[3].dataoffsets[0], tif.pages[3].databytecounts[0]
    data = bytearray(path.read_bytes())
    data[offset : offset + count] = b"\xff" * count  # page 4's compressed data destroyed
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        predict_paths(tiny_run / "run", [path], tmp_path / "out", **QUIET)
    message = str(caught.value)
    assert "volume.tif: page 4 of 6 cannot be read" in message and "\n" not in message
    assert json.loads(next((tmp_path / "out").glob(".volume.unetkit-pages")).joinpath(JOURNAL).read_text())["done"] == 3


def test_a_compressed_stack_is_opened_a_few_times_not_once_a_page(tiny_run: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Reopening the file for each page indexed every page again: 90 s of a 5000-page stack's prediction (review)."""
    from unetkit.data import io

    monkeypatch.setattr(io, "LAZY_BYTES", 0)
    page = tifffile.imread(tiny_run / "volume.tif")[0]
    path = tmp_path / "long.tif"
    tifffile.imwrite(path, np.broadcast_to(page, (40, *page.shape)), photometric="minisblack", compression="zlib")
    opened: list[str] = []
    real = tifffile.TiffFile

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, file, *args, **kwargs):  # type: ignore[no-untyped-def]
            opened.append(str(file))
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(tifffile, "TiffFile", Counting)
    predict_paths(tiny_run / "run", [path], tmp_path / "out", **QUIET)
    assert tifffile.imread(tmp_path / "out" / "long.tif").shape == (40, *page.shape)
    assert 0 < opened.count(str(path)) <= 20, opened.count(str(path))  # headers read a few times; 40 pages: 50
