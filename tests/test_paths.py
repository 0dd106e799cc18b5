"""Awkward paths and names: what an audit with loops, Latin-1 names, `~` and long names found."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import write_blob_pairs

from unetkit.cli import main

TINY = ["--epochs", "1", "--width", "4", "--depth", "2", "--patch-size", "16", "--batch-size", "2", "--device", "cpu",
        "--quiet"]


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("unetkit: error:"), err
    return err[0]


def test_names_that_are_not_utf8_train_predict_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A Latin-1 file name (an old share, a zip) crashed train's data digest (UnicodeEncodeError), and a run in a
    Latin-1 folder was called a corrupt checkpoint, with the advice to train again (safetensors refuses the path)."""
    data = tmp_path / os.fsdecode(b"donn\xe9es")
    write_blob_pairs(data, 4, 32)
    for side in ("image", "label"):
        (data / side / "3.png").rename(data / side / os.fsdecode(b"coupe \xe9.png"))
    run = tmp_path / os.fsdecode(b"r\xe9sultat")
    assert main(["train", str(data), "--out", str(run), *TINY]) == 0
    assert main(["predict", str(run), str(data / "image"), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    assert (tmp_path / "pred" / os.fsdecode(b"coupe \xe9.png")).is_file()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "model"), "--format", "torchscript"]) == 0
    import sys

    assert sys.stdout.errors == sys.stderr.errors == "strict"  # as main() found them: a host program keeps its streams


def test_a_symbolic_link_loop_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Path.resolve() raises RuntimeError on a loop (Python < 3.13): every command ended in a traceback."""
    images, labels = write_blob_pairs(tmp_path / "data", 4, 32)
    (tmp_path / "loop2").symlink_to("loop1")
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "it's").symlink_to("it's")  # a quote in the path: Python's repr of it is "...", not '...'
    for argv in (["train", str(tmp_path / "data"), "--out", str(tmp_path / "loop1" / "run"), *TINY],
                 ["train", str(tmp_path / "data"), "--out", str(tmp_path / "loop1"), *TINY],  # was "does not exist"
                 ["train", str(tmp_path / "data"), "--out", str(tmp_path / "it's" / "run"), *TINY],
                 ["check", "--images", str(images), "--labels", str(tmp_path / "loop1")]):
        assert main(argv) == 2
        line = one_error_line(capsys)
        assert "points back to itself (a loop)" in line and "does not exist" not in line, line


def test_a_name_too_long_for_the_file_system_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """It said 'free space or choose another folder' and that the run continues with --resume: there was none."""
    write_blob_pairs(tmp_path / "data", 4, 32)
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / ("L" * 300) / "run"), *TINY]) == 2
    line = one_error_line(capsys)
    assert "too long for the file system; choose a shorter path" in line and "--resume" not in line, line


def test_a_tilde_the_shell_left_alone_is_the_home_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--out=~/run` (no shell expands ~ after =) made a folder named ~ in the working directory."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    write_blob_pairs(tmp_path / "home" / "data", 4, 32)
    assert main(["train", "~/data", "--out=~/run", *TINY]) == 0
    assert (tmp_path / "home" / "run" / "run.json").is_file() and not (tmp_path / "~").exists()


PATH_OPTIONS = {"data", "images", "labels", "out", "resume", "from", "val_images", "val_labels", "synthetic", "run",
                "inputs", "pred", "json"}  # the destinations of every option that names a file or folder


def test_every_path_option_of_every_command_takes_the_home_folders_tilde() -> None:
    """`train --synthetic '~/dr1'` looked for a folder named ~ (audit): it was the one path option read without
    user_path. Every path option, of every command, is read with it."""
    import argparse

    from unetkit.cli import build_parser, user_path

    def options(parser: argparse.ArgumentParser, command: str) -> list[tuple[str, argparse.Action]]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += options(sub, f"{command} {name}".strip())
            elif action.dest.removeprefix("start_") in PATH_OPTIONS or (action.metavar or "") in ("RUN", "DIR"):
                found.append((command, action))
        return found

    found = options(build_parser(), "")
    assert len(found) >= 25, found  # the walk reached every command
    untyped = [f"{command} {action.option_strings or action.dest}" for command, action in found
               if action.type is not user_path]
    assert not untyped, untyped


def test_evaluate_scores_masks_whose_names_end_like_predicts_maps(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Predictions of an image named HeLa_cells.png were dropped as if they were a map predict writes beside a
    mask ("not scored: 1 true mask without a prediction"); only NAME_prob.tif / NAME_cells.tif beside NAME are."""
    images, labels = write_blob_pairs(tmp_path / "data", 3, 32)
    pred = tmp_path / "pred"
    pred.mkdir()
    for name in ("0", "1"):
        shutil.copy(labels / f"{name}.png", labels / f"{name}_cells.png")
        shutil.copy(labels / f"{name}.png", pred / f"{name}_cells.png")
    shutil.copy(labels / "2.png", pred / "2.png")
    shutil.copy(labels / "2.png", pred / "2_cells.tif")  # what `predict --instances` writes beside 2.png: no mask
    for name in ("0", "1"):
        (labels / f"{name}.png").unlink()
    assert main(["evaluate", "--pred", str(pred), "--labels", str(labels), "--json", str(tmp_path / "s.json")]) == 0
    scored = json.loads((tmp_path / "s.json").read_text())["per_image"]
    assert sorted(scored) == ["0_cells", "1_cells", "2"], scored


def test_suggested_commands_quote_paths_the_shell_would_split(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`continue with unetkit train --resume runs/day 1`, pasted, failed with another error (audit)."""
    import shlex

    write_blob_pairs(tmp_path / "data", 4, 32)
    run = tmp_path / "runs" / "day 1"
    assert main(["train", str(tmp_path / "data"), "--out", str(run), *TINY]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run)]) == 2  # trained all its epochs: says how to train it longer
    line = one_error_line(capsys)
    suggestion = shlex.split(line.split("e.g. ", 1)[1])
    assert suggestion[:2] == ["--resume", str(run)], line


def test_a_folder_of_hidden_images_says_they_are_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A folder holding only .im0.png said it 'holds no images' (audit): hidden names are skipped as system files."""
    images, labels = write_blob_pairs(tmp_path / "data", 2, 32)
    for side in (images, labels):
        for file in side.iterdir():
            file.rename(side / f".{file.name}")
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    assert "skipped as system files; rename them without the leading '.'" in one_error_line(capsys)


def test_an_out_that_is_a_link_to_nothing_says_so(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A dangling link as --out was refused as '(File exists)' (audit)."""
    write_blob_pairs(tmp_path / "data", 4, 32)
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "out"), *TINY]) == 2
    assert f"a link to {tmp_path / 'nowhere'}, which does not exist" in one_error_line(capsys)


def test_a_name_that_begins_with_a_tilde_is_a_name(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`~scan1.png` (or Word's `~$x`) made expanduser look for a user called scan1.png: a traceback (review)."""
    monkeypatch.chdir(tmp_path)
    write_blob_pairs(tmp_path / "~data", 4, 32)
    assert main(["check", "--images", "~data/image", "--labels", "~data/label"]) == 0


def test_a_newline_or_tab_in_a_name_keeps_each_table_row_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A name with a newline, printed raw, broke its row of `check`'s and `evaluate`'s tables in two and shifted
    every column after it; it is written as an escape, and other Unicode stays as it is."""
    images, labels = write_blob_pairs(tmp_path / "data", 3, 32)
    for old, new in (("1.png", "two\nlines.png"), ("2.png", "tab\tbé.png")):
        for side in (images, labels):
            (side / old).rename(side / new)
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 0
    table = capsys.readouterr().out.split("\n\n")[0].splitlines()
    assert len(table) == 4, table  # the header and three pairs
    assert any(line.startswith("two\\nlines ") for line in table) and any(line.startswith("tab\\tbé ") for line in table)
    shutil.copytree(labels, tmp_path / "pred")
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(labels)]) == 0
    rows = [row for row in capsys.readouterr().out.splitlines() if not row.startswith("note:")]
    assert len(rows) == 5 and len({len(row) for row in rows}) == 1, rows  # header, three images, mean: aligned
    (images / "two\nlines.png").write_bytes(b"not a png")  # an error naming it is one line too (audit)
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *TINY]) == 2
    assert "two\\nlines.png" in one_error_line(capsys)


def test_dots_through_a_missing_folder_and_an_empty_out_are_read_as_written(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    """`--out xx/..` (xx missing) made an empty xx and blamed "another process" for writing into `.`; `--out ""`
    was reported as `.` (audit)."""
    import unetkit
    from unetkit.errors import InputError

    write_blob_pairs(tmp_path / "data", 4, 32)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "a.txt").write_text("mine")
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "used" / "xx" / ".."), *TINY]) == 2
    assert f"{tmp_path / 'used'}: exists and is not empty" in one_error_line(capsys)
    assert not (tmp_path / "used" / "xx").exists()
    assert main(["train", str(tmp_path / "data"), "--out", "", *TINY]) == 2
    assert "--out: an empty path" in one_error_line(capsys)
    with pytest.raises(InputError, match="out='': an empty path"):
        unetkit.train(tmp_path / "data" / "image", tmp_path / "data" / "label", "", epochs=1)
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "new" / "xx" / ".." / "run"), *TINY]) == 0
    assert (tmp_path / "new" / "run" / "run.json").is_file() and not (tmp_path / "new" / "xx").exists()
    from unetkit.data.io import without_missing_dots

    (tmp_path / "deep" / "er").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "deep" / "er")  # link/.. is deep, as the system goes, not tmp_path
    assert without_missing_dots(tmp_path / "link" / ".." / "new_run") == tmp_path / "link" / ".." / "new_run"
