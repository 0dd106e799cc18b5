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
    assert unfinished_stacks(tmp_path / "out") == [("volume", 3, PAGES)]

    page_calls.update(calls=0, stop_at=None)
    predict_paths(tiny_run / "run", [tiny_run / "volume.tif"], tmp_path / "out", skip_done=True, **options)
    assert page_calls["calls"] == PAGES - 3  # only the pages not done
    resumed = _outputs(tmp_path / "out")
    assert sorted(resumed) == sorted(whole)
    for name in whole:
        assert np.array_equal(resumed[name], whole[name]), name
        assert _axes(tmp_path / "out" / name) == _axes(tmp_path / "whole" / name)
    assert not work_folder(tmp_path / "out", "volume").exists() and unfinished_stacks(tmp_path / "out") == []
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
        assert unfinished_stacks(out) == []


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
    assert page_calls["calls"] == PAGES and unfinished_stacks(out) == []


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


@pytest.mark.parametrize("mapped", [False, True])
def test_memory_holds_a_page_of_the_mask_not_the_stack(tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       mapped: bool) -> None:
    """The masks of a stack's pages were kept in a list and stacked before writing: two copies of the whole mask in
    memory (8 GiB each for a 500-page 4096^2 volume). Traced numpy memory may grow with the page count by the
    input stack where it is read (one byte a pixel here), not by the masks; a large uncompressed stack is
    memory-mapped (`mapped`: as if over LAZY_BYTES), and then memory does not grow with it at all."""
    from unetkit.data import io

    if mapped:
        monkeypatch.setattr(io, "LAZY_BYTES", 0)
    page = tifffile.imread(tiny_run / "volume.tif")[0]
    peaks = {}
    for count in (10, 210):
        tifffile.imwrite(tmp_path / f"v{count}.tif", np.broadcast_to(page, (count, *page.shape)), photometric="minisblack")
        predict_paths(tiny_run / "run", [tmp_path / f"v{count}.tif"], tmp_path / "warm", **QUIET)  # imports, caches
        tracemalloc.start()
        try:
            predict_paths(tiny_run / "run", [tmp_path / f"v{count}.tif"], tmp_path / f"out{count}", **QUIET)
            peaks[count] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    bytes_added = 200 * page.size  # one byte a pixel: the input's pages; the masks' list and stack held two more
    assert peaks[210] - peaks[10] < (0.5 if mapped else 1.5) * bytes_added, peaks
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
