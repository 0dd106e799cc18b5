"""Fine-tuning with --from RUN: the run's network, weights, classes and normalisation carry over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_blob_pairs

from unetkit.cli import main

TRAINING = ["--patch-size", "32", "--batch-size", "4", "--lr", "0.01", "--device", "cpu", "--quiet"]
TINY = ["--width", "8", "--depth", "2", *TRAINING]  # a fine-tuned run takes its network from its base: TRAINING only


def pairs(root: Path, seed: int, count: int = 6) -> Path:
    write_blob_pairs(root, count, seed=seed)
    return root


def first_val_loss(run: Path) -> float:
    return float((run / "log.csv").read_text().splitlines()[1].split(",")[5])


def test_a_fine_tuned_run_starts_where_its_base_ended(tmp_path: Path) -> None:
    base_data, new_data = pairs(tmp_path / "a", 0), pairs(tmp_path / "b", 1)
    assert main(["train", str(base_data), "--out", str(tmp_path / "base"), "--epochs", "15", *TINY]) == 0
    assert main(["train", str(new_data), "--out", str(tmp_path / "fresh"), "--epochs", "1", *TINY]) == 0
    assert main(["train", str(new_data), "--out", str(tmp_path / "tuned"), "--from", str(tmp_path / "base"),
                 "--epochs", "1", *TRAINING]) == 0
    base, tuned = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("base", "tuned"))
    assert tuned["model"] == base["model"]
    encoding = lambda record: {k: v for k, v in record["classes"].items() if k != "fractions"}  # noqa: E731 - fractions are the new data's
    mapping = lambda record: {k: record["normalization"][k] for k in ("method", "low", "high", "source_dtype")}  # noqa: E731 - levels stretch over the new images
    assert encoding(tuned) == encoding(base) and mapping(tuned) == mapping(base)
    assert tuned["start_from"] == str((tmp_path / "base").resolve())
    # after one epoch, starting from trained weights is far ahead of starting from scratch
    assert first_val_loss(tmp_path / "tuned") < 0.5 * first_val_loss(tmp_path / "fresh")


def test_from_a_missing_run_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--from", str(tmp_path / "nope"), "--epochs", "1", *TRAINING]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0], err


def test_from_with_another_network_asked_for_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", *TINY]) == 0
    wider = [("16" if previous == "--width" else arg) for previous, arg in zip(["", *TINY], TINY)]
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--from", str(tmp_path / "base"), "--epochs", "1", *wider]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--width" in err[0] and "base" in err[0], err


def test_from_a_seed_run_trains_its_sigmoid_output_with_its_own_loss(tmp_path: Path) -> None:
    """The seed recipe's network has one sigmoid output: a fine-tuned run keeps bce, not the default recipe's loss."""
    data = pairs(tmp_path / "a", 0)
    seed = ["--recipe", "seed", "--patch-size", "32", "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", "--width", "8", "--depth", "2", *seed]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "tuned"), "--from", str(tmp_path / "base"),
                 "--budget", "20s", *TRAINING]) == 0
    tuned = json.loads((tmp_path / "tuned" / "run.json").read_text())
    assert tuned["config"]["loss"] == "bce" and tuned["model"]["options"]["num_classes"] == 1


def test_a_loss_refused_for_a_fine_tuned_network_names_the_run_it_comes_from(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """--loss ce against a seed run's sigmoid network blamed "recipe default", the new run's recipe (audit)."""
    data = pairs(tmp_path / "a", 0)
    seed = ["--recipe", "seed", "--patch-size", "32", "--batch-size", "4", "--device", "cpu", "--quiet"]
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", "--width", "8", "--depth", "2", *seed]) == 0
    capsys.readouterr()
    assert main(["train", str(data), "--out", str(tmp_path / "tuned"), "--from", str(tmp_path / "base"), "--loss", "ce",
                 "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the network of --from {tmp_path / 'base'} (recipe seed) has one sigmoid output" in err[0], err
    assert "recipe default" not in err[0]


def test_a_loss_the_outputs_cannot_feed_is_one_line_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = pairs(tmp_path / "a", 0)
    for argv, needle in [(["--loss", "bce", *TINY], "--loss bce"),
                         (["--recipe", "seed", "--loss", "ce", "--device", "cpu", "--quiet"], "--loss ce")]:
        out = tmp_path / f"run{len(needle)}"
        assert main(["train", str(data), "--out", str(out), "--epochs", "1", *argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err
        assert not out.exists()  # refused before the run folder was made


def test_from_with_another_upsampling_names_the_flag_that_exists(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", *TINY]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--from", str(tmp_path / "base"), "--epochs", "1",
                 "--upsampling", "transposed", *TRAINING]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "drop --upsampling" in err[0], err


def test_from_and_check_read_a_run_that_computed_in_a_precision_this_machine_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A run trained with fp16 on a GPU is still a base for fine-tuning and checking on a CPU, and predicts there."""
    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", *TINY]) == 0
    record_path = tmp_path / "base" / "run.json"
    record = json.loads(record_path.read_text())
    record["config"]["precision"] = "fp16"  # what a GPU run records
    record_path.write_text(json.dumps(record))
    assert main(["check", str(data), "--run", str(tmp_path / "base")]) == 0
    assert main(["train", str(data), "--out", str(tmp_path / "tuned"), "--from", str(tmp_path / "base"),
                 "--epochs", "1", *TRAINING]) == 0
    assert main(["predict", str(tmp_path / "base"), str(data / "image"), "--out", str(tmp_path / "pred")]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) == len(list((data / "image").glob("*.png")))


def test_check_with_a_run_refuses_images_of_another_type_as_train_from_does(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import numpy as np
    import tifffile

    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "base"), "--epochs", "1", *TINY]) == 0
    wide = tmp_path / "wide"
    (wide / "image").mkdir(parents=True)
    for image in sorted((data / "image").iterdir()):  # the same pairs, as 16-bit TIFFs
        from PIL import Image

        tifffile.imwrite(wide / "image" / f"{image.stem}.tif", np.asarray(Image.open(image)).astype(np.uint16) * 257)
    (wide / "label").symlink_to(data / "label")
    capsys.readouterr()
    assert main(["check", str(wide), "--run", str(tmp_path / "base")]) == 2
    said = capsys.readouterr()
    assert "is uint16, the run's images uint8" in said.out
    assert f"fix them before using them with {tmp_path / 'base'}" in said.err  # not "before training": it may score it
    assert main(["train", str(wide), "--out", str(tmp_path / "tuned"), "--from", str(tmp_path / "base"),
                 "--epochs", "1", *TRAINING]) == 2


def test_resume_without_its_state_refuses_to_train_over_the_weights(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """`rm -r RUN/last` (to save disk), then --resume: "training it again from the start" over the finished
    run's model.safetensors (audit)."""
    import shutil

    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "2", *TINY]) == 0
    weights = (tmp_path / "run" / "model.safetensors").read_bytes()
    shutil.rmtree(tmp_path / "run" / "last")
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "3", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "resume state (last/) is missing" in err and f"--from {tmp_path / 'run'}" in err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == weights


def test_resume_names_the_runs_own_data_when_it_moved(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = pairs(tmp_path / "a", 0)
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--epochs", "1", *TINY]) == 0
    data.rename(tmp_path / "b")
    assert main(["train", "--resume", str(tmp_path / "run"), "--epochs", "2", "--quiet"]) == 2
    assert "this run trained on (run.json data.images) are not there any more" in capsys.readouterr().err


def test_a_run_fine_tuned_on_grey_images_stored_as_rgb_resumes(tmp_path: Path) -> None:
    """Grey GIFs (read as three equal channels) are grey for a grey run's --from; resuming the fine-tuned run read
    them without the run's channel count and refused them as colour (review)."""
    from PIL import Image

    assert main(["train", str(pairs(tmp_path / "a", 0)), "--out", str(tmp_path / "base"), "--epochs", "1", *TINY]) == 0
    data = pairs(tmp_path / "b", 1)
    for png in sorted((data / "image").iterdir()):  # every image a grey GIF: no grey PNG beside them to go by
        Image.open(png).save(png.with_suffix(".gif"))
        png.unlink()
    tuned = tmp_path / "tuned"
    assert main(["train", str(data), "--out", str(tuned), "--from", str(tmp_path / "base"), "--epochs", "1", *TRAINING]) == 0
    assert main(["train", "--resume", str(tuned), "--epochs", "2", "--quiet"]) == 0
    assert json.loads((tuned / "run.json").read_text())["progress"]["epoch"] == 2
