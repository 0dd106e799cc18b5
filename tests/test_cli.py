"""The command line: label encodings survive train -> predict; bad input is one line and exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unetkit.cli import main
from unetkit.data.io import read_pages

FAST = ["--epochs", "12", "--width", "8", "--depth", "2", "--patch-size", "32", "--batch-size", "4",
        "--lr", "0.01", "--device", "cpu", "--quiet"]


def class_pair(rng: np.random.Generator, num_classes: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """An image whose brightness tells the class (easy to learn): rectangles of classes 1..K-1 on class 0."""
    classes = np.zeros((size, size), dtype=np.int64)
    for k in range(1, num_classes):
        for _ in range(2):
            y, x = rng.integers(0, size - 10, 2)
            classes[y : y + rng.integers(5, 10), x : x + rng.integers(5, 10)] = k
    image = (40 + 170 * classes / max(1, num_classes - 1) + rng.normal(0, 6, classes.shape)).clip(0, 255)
    return image.astype(np.uint8), classes


def save_mask(path: Path, classes: np.ndarray, encoding: str) -> np.ndarray:
    """Write class indices in one of the encodings users have; return the mask as written."""
    palette = None
    if encoding == "0/255":
        mask = (classes * 255).astype(np.uint8)
    elif encoding == "0/1":
        mask = classes.astype(np.uint8)
    elif encoding == "bool":
        mask = classes.astype(bool)
    elif encoding == "0..K":
        mask = classes.astype(np.uint8)
    elif encoding == "grey levels":
        mask = np.array([30, 128, 201], dtype=np.uint8)[classes]
    elif encoding == "1..K":
        mask = (classes + 1).astype(np.uint8)
    elif encoding == "uint16":
        mask = np.array([0, 40000], dtype=np.uint16)[classes]
    elif encoding == "rgb":
        mask = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], dtype=np.uint8)[classes]
    elif encoding == "palette":
        mask, palette = classes.astype(np.uint8), [0, 0, 0, 255, 255, 0, 0, 128, 255] + [0] * (256 * 3 - 9)
    else:
        raise AssertionError(encoding)
    if palette is not None:
        image = Image.fromarray(mask).convert("P")
        image.putpalette(palette)
        image = Image.frombytes("P", image.size, mask.tobytes())
        image.putpalette(palette)
    else:
        image = Image.fromarray(mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return mask


ENCODINGS = {"0/255": 2, "0/1": 2, "bool": 2, "0..K": 3, "grey levels": 3, "1..K": 3, "uint16": 2, "rgb": 3, "palette": 3}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_label_encoding_round_trips_through_train_and_predict(encoding: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    truth = {}
    for i in range(8):
        image, classes = class_pair(rng, ENCODINGS[encoding])
        Image.fromarray(image).save(tmp_path / f"img{i}.png") if False else None
        (tmp_path / "data" / "image").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "data" / "image" / f"{i}.png")
        truth[str(i)] = save_mask(tmp_path / "data" / "label" / f"{i}.png", classes, encoding)
    assert main(["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *FAST]) == 0
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "data" / "image"), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    agreement = []
    for name, mask in truth.items():
        written, _ = read_pages(tmp_path / "pred" / f"{name}.png", labels=True)
        predicted = written[0]
        assert predicted.dtype == mask.dtype, encoding
        assert predicted.shape == mask.shape
        values = lambda m: {tuple(v) for v in m.reshape(-1, 3)} if m.ndim == 3 else set(np.unique(m).tolist())  # noqa: E731
        assert values(predicted) <= values(mask) | set(), encoding  # only the user's values come back
        agreement.append(np.mean(np.all(predicted == mask, axis=-1) if mask.ndim == 3 else predicted == mask))
    assert np.mean(agreement) > 0.9, (encoding, agreement)  # classes map back to the right values


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "unetkit.cli", *args], capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, no traceback
    assert lines[0].startswith("unetkit: error:")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_missing_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_cli("train", "--images", str(tmp_path / "nope"), "--labels", str(tmp_path / "nope2"), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "nope")


def test_corrupt_png_is_one_line_and_exit_2(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    broken = images / "3.png"
    broken.write_bytes(broken.read_bytes()[:60])
    result = run_cli("train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "3.png")
    assert not (tmp_path / "run").exists()  # nothing started


def test_size_mismatch_is_one_line_and_exit_2(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    images, labels = toy_data
    Image.fromarray(np.zeros((20, 32), dtype=np.uint8)).save(labels / "4.png")
    result = run_cli("train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "4", "20")


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["train", "--out", "x"], "--images"),
        (["train", "--images", "a", "--labels", "b", "--out", "x", "--budget", "ten"], "--budget"),
        (["train", "--images", "a", "--labels", "b", "--out", "x", "--recipe", "magic"], "--recipe"),
        (["predict", "no-such-run", "in", "--out", "o"], "no-such-run"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_usage_errors_exit_2_with_one_line(argv: list[str], needle: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_predict_refuses_its_input_folder_and_its_own_outputs(toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    images, labels = toy_data
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"), *FAST[:2], "--width", "4", "--depth", "2", "--quiet"]) == 0
    before = sorted(p.name for p in images.iterdir())
    assert main(["predict", str(tmp_path / "run"), str(images), "--out", str(images)]) == 2
    assert "input folder" in capsys.readouterr().err
    assert sorted(p.name for p in images.iterdir()) == before  # nothing written beside the inputs
    assert main(["predict", str(tmp_path / "run"), str(images), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "pred"), "--out", str(tmp_path / "pred2"), "--quiet"]) == 2
    assert "predictions" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "pred").iterdir() if not p.name.startswith(".")) == before


def test_train_plans_what_the_user_left_open_and_no_plan_turns_it_off(
    toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = toy_data
    common = ["--images", str(images), "--labels", str(labels), "--epochs", "1", "--quiet"]
    assert main(["train", *common, "--out", str(tmp_path / "planned"), "--width", "4"]) == 0
    printed = capsys.readouterr().out
    assert "plan (" in printed and "fixed by you: --width" in printed
    planned = json.loads((tmp_path / "planned" / "run.json").read_text())
    assert planned["config"]["base_width"] == 4  # the user's flag wins
    assert planned["config"]["patch_size"] == planned["plan"]["patch_size"] <= 32  # 32 x 32 images
    assert main(["train", *common, "--out", str(tmp_path / "fixed"), "--no-plan", "--precision", "fp32"]) == 0
    fixed = json.loads((tmp_path / "fixed" / "run.json").read_text())
    assert "plan" not in fixed and fixed["config"]["patch_size"] == 128 and fixed["config"]["precision"] == "fp32"


def test_an_interrupted_training_names_the_run_to_resume_or_says_nothing_was_saved(
    toy_data, tmp_path, capsys, monkeypatch  # type: ignore[no-untyped-def]
) -> None:
    import unetkit.train.start as start

    images, labels = toy_data

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(start, "train", interrupted)
    argv = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--out"]
    assert main([*argv, str(tmp_path / "early")]) == 130
    assert "nothing was saved yet" in capsys.readouterr().err
    (tmp_path / "late").mkdir()
    (tmp_path / "late" / "run.json").write_text("{}")
    assert main([*argv, str(tmp_path / "late")]) == 130
    said = capsys.readouterr().err  # stopped before the first save (audit: it promised to continue)
    assert f"nothing was trained yet: `unetkit train --resume {tmp_path / 'late'}` starts it again" in said
    (tmp_path / "later").mkdir()
    (tmp_path / "later" / "run.json").write_text("{}")
    (tmp_path / "later" / "model.safetensors").write_bytes(b"")
    assert main([*argv, str(tmp_path / "later")]) == 130
    assert f"continue with `unetkit train --resume {tmp_path / 'later'}`" in capsys.readouterr().err


def test_a_reader_that_leaves_early_ends_the_command_quietly(toy_data: tuple[Path, Path]) -> None:
    """`unetkit check ... | head` said "writing the output: Broken pipe; free space ..." and exited 2."""
    images, labels = toy_data
    process = subprocess.Popen([sys.executable, "-m", "unetkit.cli", "check", "--images", str(images), "--labels", str(labels)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # gone before the command writes its table
    _, err = process.communicate(timeout=120)
    assert process.returncode == 141 and err.decode().strip() == "", err.decode()


def test_running_out_of_memory_is_one_line_and_other_errors_still_show_their_traceback(
    toy_data: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`diffusion sample --size 100000` ended in torch's RuntimeError traceback asking for 640 GB."""
    from unetkit.data import validate

    images, labels = toy_data

    def allocate(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 640000000000 bytes.\nmore detail")

    monkeypatch.setattr(validate, "check_dataset", allocate)
    assert main(["check", "--images", str(images), "--labels", str(labels)]) == 2
    err = capsys.readouterr().err
    assert "not enough memory" in err and "640000000000 bytes" in err and err.count("\n") == 1

    def bug(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(validate, "check_dataset", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):  # a bug is not dressed up as a memory problem
        main(["check", "--images", str(images), "--labels", str(labels)])


def test_an_odd_width_is_refused_for_the_padded_unet_only() -> None:
    from unetkit.config import TrainConfig
    from unetkit.errors import InputError

    with pytest.raises(InputError, match="--width 5: must be even"):
        TrainConfig(base_width=5)
    assert TrainConfig(model="fcn8s", base_width=5).base_width == 5  # FCNs and their saved runs take any width


def test_residual_blocks_train_predict_and_are_refused_for_other_networks(
    toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    images, labels = toy_data
    common = ["--images", str(images), "--labels", str(labels), "--epochs", "1", "--width", "4", "--depth", "2"]
    assert main(["train", *common, "--out", str(tmp_path / "run"), "--residual"]) == 0
    assert "residual blocks" in capsys.readouterr().out  # the model line says what was built
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["model"]["options"]["residual"] is True
    assert main(["predict", str(tmp_path / "run"), str(images), "--out", str(tmp_path / "pred"), "--quiet"]) == 0
    assert len(list((tmp_path / "pred").glob("*.png"))) == len(list(images.iterdir()))
    assert main(["train", *common, "--out", str(tmp_path / "fcn"), "--residual", "--model", "fcn8s", "--quiet"]) == 2
    assert "--residual: only the padded U-Net" in capsys.readouterr().err


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("10m", 600), ("1.5h", 5400), ("1m30s", 90),
                                          ("1h 15m", 4500), (".5m", 30), ("-5s", -5)])
def test_durations_read_as_people_write_them(text: str, seconds: float) -> None:
    from unetkit.config import parse_duration

    assert parse_duration(text) == seconds  # -5 s reaches the budget's own check, which says it must be positive


@pytest.mark.parametrize("text", ["ten", "1m1m", "5x", "1m30", "", "m"])
def test_durations_that_are_not_are_refused(text: str) -> None:
    from unetkit.config import parse_duration
    from unetkit.errors import InputError

    with pytest.raises(InputError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["30", "600", "0.5"])
def test_a_duration_without_a_unit_is_refused_with_both_readings(text: str) -> None:
    """`--budget 30` trained for 30 seconds where the user meant 30 minutes (the default reads 10m)."""
    from unetkit.config import parse_duration
    from unetkit.errors import InputError

    with pytest.raises(InputError, match=f"give a unit, e.g. {text}s or {text}m"):
        parse_duration(text)


def test_version_is_printed(capsys: pytest.CaptureFixture) -> None:
    from unetkit import __version__

    with pytest.raises(SystemExit) as stopped:
        main(["--version"])
    assert stopped.value.code == 0 and capsys.readouterr().out.strip() == f"unetkit {__version__}"


def test_python_dash_m_unetkit_is_the_command() -> None:
    """`python -m unetkit` for a Python whose scripts folder is not on PATH: the same command, its errors too."""
    from unetkit import __version__

    version = subprocess.run([sys.executable, "-m", "unetkit", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.strip() == f"unetkit {__version__}"
    refused = subprocess.run([sys.executable, "-m", "unetkit", "check", "--images", "/no/such/folder", "--labels", "/no/x"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "/no/such/folder" in refused.stderr and "Traceback" not in refused.stderr


def test_a_patch_larger_than_the_images_names_the_flag_only_when_it_was_given(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The FCN recipe's built-in 128 px patch was reported as "--patch-size 128", a flag the user never gave."""
    from conftest import write_blob_pairs

    images, labels = write_blob_pairs(tmp_path / "data", 3, 32, mask=lambda label: label * 255)
    common = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "1", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "given"), "--patch-size", "128", "--width", "4", "--depth", "2"]) == 0
    assert "warning: --patch-size 128 is larger than the largest image: patches of 32 are drawn" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "recipe"), "--model", "fcn8s"]) == 0
    out = capsys.readouterr().out
    assert "--patch-size" not in out and "note: the recipe patch size 128 is larger than the largest image" in out


def test_data_pointing_inside_data_names_the_folder_to_give(toy_data: tuple[Path, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """`train data/image` advised putting the images in data/image/image."""
    images, _ = toy_data
    assert main(["train", str(images), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert f"is a folder of image, not DATA; give the folder that holds it ({images.resolve().parent})" in err
    assert "image/image" not in err and not (tmp_path / "run").exists()


def test_data_with_two_folders_of_images_is_refused_not_half_used(toy_data: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """Review: DATA holding image/ and images/ trained on image/ alone, without a word of images/."""
    import shutil

    images, _ = toy_data
    shutil.copytree(images, images.parent / "images")
    assert main(["train", str(images.parent), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"unetkit: error: {images.parent}: holds image/ and images/, both names for its images; keep one, "
                   "or give the folders as --images and --labels"], err
    assert not (tmp_path / "run").exists()


def test_a_colour_value_is_echoed_as_it_was_typed(toy_data: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    """Review: `--ignore-value 1,2,3` came back in messages as 66051, its packed code."""
    images, labels = toy_data
    assert main(["check", "--images", str(images), "--labels", str(labels), "--ignore-value", "1, 2,3"]) == 0
    out = capsys.readouterr().out
    assert "--ignore-value 1,2,3 appears in no mask" in out and "66051" not in out, out
    assert main(["predict", str(tmp_path / "run"), str(images), "--out", str(tmp_path / "o"), "--boundary-value",
                 "1,2,3"]) == 2
    err = capsys.readouterr().err
    assert "--boundary-value 1,2,3: names the boundary class" in err and "66051" not in err, err


def test_a_file_given_twice_to_predict_is_predicted_once(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """The same file named twice (a folder and a file in it) was refused as two inputs sharing a name."""
    images, labels = toy_data
    run = tmp_path / "run"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(run), "--epochs", "1",
                 "--width", "4", "--depth", "2", "--quiet"]) == 0
    assert main(["predict", str(run), str(images), str(images / "0.png"), "--out", str(tmp_path / "pred"),
                 "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == sorted(p.name for p in images.iterdir())


def test_the_unpadded_unet_under_the_default_recipe_gets_outputs_the_size_of_the_patch(
    toy_data: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """The default recipe's 128 px patch became the valid network's input tile: 188 px in, 4 x 4 out."""
    images, labels = toy_data  # 32 x 32 images
    common = ["train", "--images", str(images), "--labels", str(labels), "--model", "unet-classic", "--width", "4",
              "--depth", "2", "--epochs", "1", "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    from unetkit.models.unet_valid import valid_output_size

    tile = record["config"]["patch_size"]
    assert valid_output_size(tile, 2) >= 32 > valid_output_size(tile - 4, 2)  # the smallest tile covering an image
    assert f"patches (output {valid_output_size(tile, 2)})" in out
    # one epoch of a width-4 network has learnt nothing, which train says; no other warning (on the patch size)
    assert [line for line in out.splitlines() if "warning" in line and "has not learnt" not in line] == []
    assert record["config"]["bilinear"] is False  # run.json said bilinear for a network of transposed convolutions
    assert record["config"]["align_outputs"] is False  # its tiles have no context to shift by: it never aligns
    # fine-tuning it trains on its tiles too: --from put back the recipe's 128 px, 4 x 4 outputs at depth 4
    assert main(["train", "--images", str(images), "--labels", str(labels), "--from", str(tmp_path / "run"),
                 "--epochs", "1", "--device", "cpu", "--out", str(tmp_path / "tuned")]) == 0
    tuned = json.loads((tmp_path / "tuned" / "run.json").read_text())["config"]
    assert (tuned["patch_size"], tuned["batch_size"]) == (tile, record["config"]["batch_size"])
    assert f"patches (output {valid_output_size(tile, 2)})" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "given"), "--patch-size", "40"]) == 0
    assert "warning: --patch-size 40 is the unpadded U-Net's input tile" in capsys.readouterr().out
    from unetkit.models.unet_valid import nearest_valid_input_size

    tile = nearest_valid_input_size(74, 2)
    assert tile != 74
    assert main([*common, "--out", str(tmp_path / "odd"), "--patch-size", "74"]) == 0
    assert f"--patch-size 74 is not a size the unpadded U-Net takes; it trains on {tile} px" in capsys.readouterr().out
    assert json.loads((tmp_path / "odd" / "run.json").read_text())["config"]["patch_size"] == tile  # it said 74


@pytest.mark.parametrize("model,flags,named", [("unet-classic", ["--upsampling", "bilinear"], "--upsampling"),
                                                ("fcn8s", ["--depth", "3"], "--depth"),
                                                ("fcn32s", ["--upsampling", "transposed", "--depth", "2"],
                                                 "--upsampling, --depth")])
def test_a_flag_the_chosen_network_ignores_is_refused(toy_data: tuple[Path, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture, model: str, flags: list[str],
                                                      named: str) -> None:
    """`--model unet-classic --upsampling bilinear` trained transposed convolutions without a word."""
    images, labels = toy_data
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"),
                 "--model", model, *flags, "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"unetkit: error: {named}: --model {model} has no such choice") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_an_unknown_model_is_refused_before_anything_else_is_said(toy_data: tuple[Path, Path], tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """`--model unet-valid` first printed a plan line about training it with fixed values, then the error."""
    images, labels = toy_data
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(tmp_path / "run"),
                 "--model", "unet-valid"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "--model unet-valid: unknown model; choose one of" in captured.err
    assert "unet-classic" in captured.err and not (tmp_path / "run").exists()


def test_an_unknown_flag_names_unetkit_once_and_the_subcommands_help(capsys: pytest.CaptureFixture) -> None:
    """"unetkit: error: unetkit: unrecognized arguments" named the program twice, and pointed to `unetkit --help`,
    which does not list a subcommand's flags (audit)."""
    assert main(["evaluate", "--pred", "a", "--labels", "b", "--colour"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "unetkit: error: evaluate: unrecognized arguments: --colour; see unetkit evaluate --help", err
    assert main(["diffusion", "sample", "run", "--out", "x", "--colour", "red"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("unrecognized arguments: --colour red; see unetkit diffusion sample --help"), err


@pytest.mark.parametrize("redirect", ["2>&-", "2>/dev/full"])
def test_a_closed_or_full_stderr_does_not_stop_the_work(toy_data: tuple[Path, Path], tmp_path: Path,
                                                        redirect: str) -> None:
    """With stderr closed the progress bar's first write ended predict (exit 1, nothing written) and train (run.json
    left "training"), without a word; with it full, in a traceback (audit). Nothing of the work needs stderr."""
    import shlex

    images, labels = toy_data
    command = [sys.executable, "-m", "unetkit.cli", "train", "--images", str(images), "--labels", str(labels),
               "--out", str(tmp_path / "run"), *[a for a in FAST if a != "--quiet"]]
    done = subprocess.run(["bash", "-c", f"{shlex.join(command)} {redirect}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
    command = [sys.executable, "-m", "unetkit.cli", "predict", str(tmp_path / "run"), str(images), "--out",
               str(tmp_path / "pred")]
    done = subprocess.run(["bash", "-c", f"{shlex.join(command)} {redirect}"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "wrote 6 masks" in done.stdout, done.stdout
    assert len(list((tmp_path / "pred").glob("*.png"))) == 6
