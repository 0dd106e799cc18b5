"""`unetkit diffusion train` and `sample` end to end on tiny data, and their errors."""

import json

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from unetkit.cli import main
from unetkit.data.io import PREDICTIONS_MARKER
from unetkit.diffusion.generate import generate, load_diffusion_run
from unetkit.diffusion.training import DiffusionConfig, train_diffusion
from unetkit.models.diffusion_unet import DiffusionUNet
from unetkit.train.checkpoint import load_weights, save_weights

TINY = ["--width", "8", "--batch-size", "4", "--size", "16"]


@pytest.fixture
def conditional_run(toy_data, tmp_path):
    images, labels = toy_data
    config = DiffusionConfig(size=16, base_width=8, batch_size=4, steps=6, budget_s=None, timesteps=50)
    train_diffusion(images, labels, tmp_path / "run", config, progress=False, say=lambda _: None)
    return tmp_path / "run"


def test_saved_and_loaded_run_gives_the_same_samples(conditional_run, tmp_path):
    record = json.loads((conditional_run / "run.json").read_text())
    assert record["kind"] == "diffusion" and record["progress"]["step"] == 6
    run = load_diffusion_run(conditional_run)
    torch.manual_seed(0)
    fresh = DiffusionUNet(run.model.config)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), run.model.state_dict().values()))
    labels = torch.randint(0, 2, (2, 16, 16), generator=torch.Generator().manual_seed(0))
    before = generate(run, 2, (16, 16), seed=3, labels=labels, steps=5)
    save_weights(tmp_path / "copy.safetensors", run.model, {})  # save what is in memory, load it into a new network
    load_weights(tmp_path / "copy.safetensors", fresh)
    run.model = fresh.eval()
    after = generate(run, 2, (16, 16), seed=3, labels=labels, steps=5)
    assert torch.equal(before, after)
    assert torch.isfinite(before).all()


def test_cli_trains_and_samples_unconditionally(toy_data, tmp_path, capsys):
    images, _ = toy_data
    assert main(["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "run"), "--steps", "3", "--quiet", *TINY]) == 0
    assert main(["diffusion", "sample", str(tmp_path / "run"), "--n", "3", "--steps", "4", "--out", str(tmp_path / "s")]) == 0
    assert "4/4" in capsys.readouterr().err  # a bar of denoising steps (DDPM on a CPU was minutes of silence)
    assert main(["diffusion", "sample", str(tmp_path / "run"), "--steps", "4", "--out", str(tmp_path / "q"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["diffusion", "sample", str(tmp_path / "run"), "--steps", "0", "--out", str(tmp_path / "z")]) == 2
    assert capsys.readouterr().err.strip() == "unetkit: error: --steps 0: must be at least 1"
    samples = sorted((tmp_path / "s").glob("sample_*.png"))
    assert len(samples) == 3
    assert np.array(Image.open(samples[0])).shape == (16, 16)
    assert (tmp_path / "s" / "grid.png").is_file()


def test_cli_samples_one_image_per_label_beside_it(conditional_run, toy_data, tmp_path):
    _, labels = toy_data
    out = tmp_path / "samples"
    assert main(["diffusion", "sample", str(conditional_run), "--labels", str(labels), "--steps", "3", "--out", str(out)]) == 0
    for stem in ("0", "5"):
        sample = np.array(Image.open(out / f"{stem}.png"))
        label = np.array(Image.open(out / f"{stem}_label.png"))
        assert sample.shape == label.shape == (32, 32)  # the label's own size, not the training patch
        assert np.array_equal(label, np.array(Image.open(labels / f"{stem}.png")))
    assert (out / "grid.png").is_file()


def test_colour_samples_beside_grey_masks_make_a_colour_grid(tmp_path):
    """Review: RGB images with grey masks (a training set diffusion train accepts) crashed in the grid with a
    traceback, after writing the samples, leaving a folder a second call refused as not its own."""
    rng = np.random.default_rng(0)
    for folder in ("image", "label"):
        (tmp_path / folder).mkdir()
    for i in range(2):
        label = np.zeros((16, 16), np.uint8)
        label[4:10, 3:12] = 1
        image = (60 + 120 * label[..., None] + rng.normal(0, 8, (16, 16, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(image).save(tmp_path / "image" / f"{i}.png")
        Image.fromarray(label * 255).save(tmp_path / "label" / f"{i}.png")
    images, labels, run, out = tmp_path / "image", tmp_path / "label", tmp_path / "run", tmp_path / "s"
    assert main(["diffusion", "train", "--images", str(images), "--labels", str(labels), "--out", str(run),
                 "--steps", "1", "--quiet", "--width", "8", "--batch-size", "2", "--size", "16"]) == 0
    for _ in range(2):  # and again into the same folder, which is its own
        assert main(["diffusion", "sample", str(run), "--labels", str(labels), "--steps", "2", "--out", str(out),
                     "--quiet"]) == 0
    grid = np.array(Image.open(out / "grid.png"))
    assert grid.shape == (16, 2 * 16 * 2 + 3 * 2, 3)  # label, sample, label, sample in one row
    mask_tile = grid[:, :16]
    assert np.array_equal(mask_tile[..., 0], np.array(Image.open(labels / "0.png")))
    assert np.array_equal(mask_tile[..., 0], mask_tile[..., 2])
    assert np.array(Image.open(out / "0.png")).shape == (16, 16, 3)


def test_cli_errors_are_one_line_and_exit_2(toy_data, tmp_path, capsys, conditional_run):
    images, labels = toy_data
    unconditional = tmp_path / "uncond"
    assert main(["diffusion", "train", "--images", str(images), "--out", str(unconditional), "--steps", "1", "--quiet", *TINY]) == 0
    cases = [
        (["diffusion", "sample", str(unconditional), "--labels", str(labels), "--out", str(tmp_path / "o1")], "trained without labels"),
        (["diffusion", "sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "o2")], "not a unetkit run"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r"), "--size", "64", "--steps", "1"], "0.png: 32 x 32 pixels (width x height), smaller than the --size 64 patches; give --size 32"),
        (["diffusion", "train", "--images", str(images), "--out", str(conditional_run), "--steps", "1"], "not empty"),
        (["diffusion", "sample", str(conditional_run), "--steps", "0", "--out", str(tmp_path / "o3")], "at least 1"),
        (["predict", str(conditional_run), str(images), "--out", str(tmp_path / "o4")], "is a diffusion run"),
        (["diffusion", "sample", str(images), "--out", str(tmp_path / "o7")], "`unetkit diffusion train --out` wrote"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r0"), "--steps", "0", *TINY], "--steps 0"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r1"), "--steps", "-5", *TINY], "--steps -5"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r2"), "--steps", "1", "--lr", "nan", *TINY],
         "--lr nan: must be a number > 0"),
        (["diffusion", "sample", str(conditional_run), "--n", "2", "--size", "-4", "--out", str(tmp_path / "o5")], "--size -4"),
        (["diffusion", "sample", str(conditional_run), "--n", "2", "--out", str(images)], "is an input folder"),
        (["diffusion", "sample", str(conditional_run), "--n", "2", "--out", str(labels)], "is an input folder"),
        # found by a walkthrough: all-black samples (exit 0) and tracebacks asking for 160-640 GB
        (["diffusion", "sample", str(conditional_run), "--labels", str(labels), "--guidance", "nan", "--out", str(tmp_path / "o6")],
         "--guidance nan"),
        (["diffusion", "sample", str(conditional_run), "--labels", str(labels), "--guidance", "-2", "--out", str(tmp_path / "o7")],
         "--guidance -2"),
        (["diffusion", "sample", str(conditional_run), "--n", "2", "--guidance", "3", "--out", str(tmp_path / "o8")],
         "give --labels or drop --guidance"),
        (["diffusion", "sample", str(conditional_run), "--n", "1", "--size", "100000", "--out", str(tmp_path / "o9")], "1 to 4096"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r3"), "--steps", "1", "--width", "100000"],
         "--width 100000"),
        (["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "r4"), "--steps", "1", "--size", "100000"],
         "8 to 1024"),
    ]
    # found by a second walkthrough: predictions and samples trained on, tracebacks, stems for paths, a bar
    # before the error, advice of a --size that is refused
    predicted = tmp_path / "predicted"
    predicted.mkdir()
    (predicted / PREDICTIONS_MARKER).touch()
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(predicted / "0.png")
    mixed, nan, tiny = tmp_path / "mixed", tmp_path / "nan", tmp_path / "tiny"
    for folder in (mixed, nan, tiny):
        folder.mkdir()
    Image.open(images / "0.png").save(mixed / "0.png")
    Image.open(images / "1.png").convert("RGB").save(mixed / "1.png")
    Image.open(images / "2.png").convert("RGB").save(mixed / "2.png")
    field = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    field[3, 3] = np.nan
    tifffile.imwrite(nan / "0.tif", field)
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tiny / "0.png")
    cases += [
        (["diffusion", "train", "--images", str(images), "--labels", str(predicted), "--out", str(tmp_path / "r5"),
          "--steps", "1", *TINY], f"--labels {predicted}: is a folder unetkit wrote"),
        (["diffusion", "train", "--images", str(predicted), "--out", str(tmp_path / "r6"), "--steps", "1", *TINY],
         f"--images {predicted}: is a folder unetkit wrote"),
        (["diffusion", "train", "--images", str(mixed), "--out", str(tmp_path / "r7"), "--steps", "1", *TINY],
         f"{mixed / '0.png'}: has 1 channel, the images have different channel counts (1 with 1, 2 with 3)"),
        (["diffusion", "train", "--images", str(nan), "--out", str(tmp_path / "r8"), "--steps", "1", *TINY],
         f"{nan / '0.tif'}: holds NaN or infinite values"),
        (["diffusion", "train", "--images", str(tiny), "--out", str(tmp_path / "r9"), "--steps", "1", *TINY],
         "smaller than the --size 16 patches; leave the image out"),
        (["diffusion", "sample", str(conditional_run), "--steps", "5000", "--out", str(tmp_path / "o10")],
         "--steps 5000: must be between 1 and the model's 50 diffusion steps"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err and "Traceback" not in err
    for folder in ("r0", "r1", "r2", "r3", "r4", "o5"):
        assert not (tmp_path / folder / "model.safetensors").exists()
    for folder in ("o6", "o7", "o8", "o9"):
        assert not (tmp_path / folder / "sample_000.png").exists() and not (tmp_path / folder / "grid.png").exists()
    main(["diffusion", "train", "--images", str(images), "--out", str(conditional_run), "--steps", "1"])
    assert "--resume" not in capsys.readouterr().err  # diffusion training has no --resume to offer


def test_sample_refuses_masks_whose_outputs_would_overwrite_each_other(conditional_run, toy_data, tmp_path, capsys):
    _, labels = toy_data
    mask = np.array(Image.open(labels / "0.png"))
    for names in (["a.png", "a_label.png"], ["a.png", "a.tif"], ["grid.png", "b.png"], ["A.png", "a.tif"], ["Grid.png", "b.png"]):
        folder = tmp_path / "_".join(n.replace(".", "") for n in names)
        folder.mkdir()
        for name in names:
            Image.fromarray(mask).save(folder / name)
        capsys.readouterr()
        assert main(["diffusion", "sample", str(conditional_run), "--labels", str(folder), "--steps", "2",
                     "--out", str(tmp_path / f"out_{folder.name}")]) == 2, names
        err = capsys.readouterr().err.strip()
        assert "would overwrite" in err and "\n" not in err
        assert not list((tmp_path / f"out_{folder.name}").glob("*.png"))


def test_sample_keeps_a_palette_mask_s_palette_beside_the_sample(conditional_run, toy_data, tmp_path):
    _, labels = toy_data
    palette = [0, 0, 0, 200, 30, 30] + [0] * (256 * 3 - 6)
    folder = tmp_path / "pal"
    folder.mkdir()
    mask = Image.fromarray((np.array(Image.open(labels / "0.png")) > 0).astype(np.uint8), mode="P")
    mask.putpalette(palette)
    mask.save(folder / "m.png")
    # the conditional run's classes are the grey values 0/255; one trained on palette masks knows indices 0/1
    images, _ = toy_data
    pal_labels = tmp_path / "pal_labels"
    pal_labels.mkdir()
    for file in sorted(labels.glob("*.png")):
        copy = Image.fromarray((np.array(Image.open(file)) > 0).astype(np.uint8), mode="P")
        copy.putpalette(palette)
        copy.save(pal_labels / file.name)
    run = tmp_path / "palrun"
    assert main(["diffusion", "train", "--images", str(images), "--labels", str(pal_labels), "--out", str(run),
                 "--steps", "1", "--quiet", *TINY]) == 0
    assert main(["diffusion", "sample", str(run), "--labels", str(folder), "--steps", "2", "--out", str(tmp_path / "o")]) == 0
    written = Image.open(tmp_path / "o" / "m_label.png")
    assert written.mode == "P" and written.getpalette()[:6] == palette[:6]
    assert np.array_equal(np.array(written), np.array(mask))


def test_a_gpu_fp16_run_samples_on_a_cpu(conditional_run, tmp_path):
    record = json.loads((conditional_run / "run.json").read_text())
    record["config"]["precision"] = "fp16"  # what a run trained on a GPU without bf16 records
    (conditional_run / "run.json").write_text(json.dumps(record))
    assert main(["diffusion", "sample", str(conditional_run), "--n", "1", "--steps", "2", "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "sample_000.png").is_file()


def test_a_malformed_diffusion_run_json_is_one_line(conditional_run, tmp_path, capsys):
    record = json.loads((conditional_run / "run.json").read_text())
    swapped = {**record, "classes": {**record["classes"], "values": record["classes"]["values"][::-1]}}
    (conditional_run / "run.json").write_text(json.dumps(swapped))  # a checked entry: named as run.json's (review)
    assert main(["diffusion", "sample", str(conditional_run), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "run.json: classes.values" in err and "the run folder is damaged" in err, err
    record["config"] = None
    (conditional_run / "run.json").write_text(json.dumps(record))
    assert main(["diffusion", "sample", str(conditional_run), "--n", "1", "--out", str(tmp_path / "o")]) == 2
    assert "damaged" in capsys.readouterr().err


def _train_until_the_third_step_goes_wrong(toy_data, out, monkeypatch, name, instead) -> int:
    """`diffusion train` whose third call of training.<name> is `instead(original)(*args, **kwargs)`: its exit code."""
    from unetkit.diffusion import training

    images, labels = toy_data
    original, calls = getattr(training, name), []

    def third_goes_wrong(*args, **kwargs):
        calls.append(1)
        return (instead(original) if len(calls) == 3 else original)(*args, **kwargs)

    monkeypatch.setattr(training, name, third_goes_wrong)
    return main(["diffusion", "train", "--images", str(images), "--labels", str(labels), "--out", str(out),
                 "--steps", "50", "--quiet", *TINY])


def test_an_interrupted_diffusion_run_keeps_its_average_and_says_so(toy_data, tmp_path, capsys, monkeypatch):
    def interrupt(original):
        raise KeyboardInterrupt

    assert _train_until_the_third_step_goes_wrong(toy_data, tmp_path / "run", monkeypatch, "sample_patches", interrupt) == 130
    assert "diffusion run keeps its weight average" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "interrupted" and record["progress"]["step"] == 2
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert log[0] == "step,seconds,lr,loss" and log[-1].startswith("2,")  # the steps before the interrupt are logged
    assert load_diffusion_run(tmp_path / "run").model is not None  # the saved weights load


def test_a_diffusion_run_stopped_by_an_error_says_so_in_its_record(toy_data, tmp_path, capsys, monkeypatch):
    """A diffusion run stopped by an error (here a loss that is not finite) kept saying "training" in run.json."""
    not_finite = lambda original: lambda *args, **kwargs: original(*args, **kwargs) * float("nan")  # noqa: E731
    assert _train_until_the_third_step_goes_wrong(toy_data, tmp_path / "run", monkeypatch, "diffusion_loss", not_finite) == 2
    assert "not finite at step 2" in capsys.readouterr().err
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "failed" and "not finite" in record["error"] and record["progress"]["step"] == 2


def test_samples_replace_earlier_samples_and_never_go_into_other_folders(conditional_run, toy_data, tmp_path, capsys):
    """An audit: `sample` wrote over a predictions folder's masks (exit 0); sampling again left the first call's
    sample_002.png and grid.png beside the second's; refused calls left an empty folder behind."""
    images, labels = toy_data
    out = tmp_path / "s"
    sample = ["diffusion", "sample", str(conditional_run), "--steps", "2", "--quiet", "--out", str(out)]
    assert main([*sample, "--n", "3"]) == 0
    assert main([*sample, "--n", "1"]) == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["grid.png", "sample_000.png"]
    assert main([*sample, "--labels", str(labels)]) == 0  # the unconditional samples are replaced too
    assert not (out / "sample_000.png").exists() and (out / "0_label.png").is_file()
    (out / "mine.png").write_bytes(b"a user's file")
    assert main([*sample, "--n", "1"]) == 2
    assert "files unetkit did not sample (mine.png)" in capsys.readouterr().err and (out / "0.png").is_file()
    predictions = tmp_path / "pred"
    (predictions).mkdir()
    (predictions / ".unetkit-predictions").write_text("")
    (predictions / "0.png").write_bytes(b"a predicted mask")
    assert main(["diffusion", "sample", str(conditional_run), "--out", str(predictions), "--labels", str(labels)]) == 2
    assert "a folder of predictions" in capsys.readouterr().err
    assert (predictions / "0.png").read_bytes() == b"a predicted mask"
    for argv, message in [
        (["--n", "2", "--labels", str(labels)], "--n: --labels draws one sample per mask"),
        (["--sampler", "ddpm", "--steps", "7"], "DDPM takes every step"),
        (["--labels", str(tmp_path / "missing")], "missing"),
    ]:
        capsys.readouterr()
        assert main(["diffusion", "sample", str(conditional_run), "--out", str(tmp_path / "refused"), *argv]) == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "refused").exists()  # a refusal leaves no folder


def test_a_samples_folder_another_command_writes_into_is_refused(conditional_run, tmp_path, capsys, monkeypatch):
    """Two sample calls into one folder each listed only their own files in its record, so the next call refused
    the other's samples as "files unetkit did not sample"; files written there while a call generated were
    replaced without a check."""
    from unetkit.diffusion import generate as generate_module
    from unetkit.folder_lock import folder_lock

    out = tmp_path / "s"
    sample = ["diffusion", "sample", str(conditional_run), "--steps", "2", "--n", "2", "--quiet", "--out", str(out)]
    assert main(sample) == 0
    with folder_lock(out, "sample"):  # held as another process would hold it (flock: per open file)
        assert main(sample) == 2
    assert "another unetkit command is writing into it now; wait until it ends" in capsys.readouterr().err
    assert main(sample) == 0  # released: it goes on
    real_generate = generate_module.generate

    def someone_writes_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        (out / "mine.png").write_bytes(b"a user's file")
        return real_generate(*args, **kwargs)

    monkeypatch.setattr(generate_module, "generate", someone_writes_meanwhile)
    before = (out / "sample_000.png").read_bytes()
    assert main([*sample[:-2], "--seed", "5", "--out", str(out)]) == 2
    assert "files unetkit did not sample (mine.png)" in capsys.readouterr().err
    assert (out / "sample_000.png").read_bytes() == before and (out / "mine.png").read_bytes() == b"a user's file"


def test_diffusion_training_stops_at_the_budget_or_the_steps_whichever_comes_first(toy_data, tmp_path):
    images, _ = toy_data
    assert main(["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "run"), "--steps", "100000",
                 "--budget", "3s", "--quiet", *TINY]) == 0  # --steps alone set budget_s to None: it ran on
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["budget_s"] == 3 and record["progress"]["step"] < 100000


def test_diffusion_training_reports_its_steps_and_loss_in_plain_words(toy_data, tmp_path, capsys):
    images, _ = toy_data
    assert main(["diffusion", "train", "--images", str(images), "--out", str(tmp_path / "run"), "--steps", "1", *TINY]) == 0
    out = capsys.readouterr()
    summary = [line for line in out.out.splitlines() if line.startswith("trained")]
    assert summary and summary[0].startswith("trained 1 step in ")  # it said "1 steps" and a loss of 17 digits
    loss = summary[0].rsplit("final loss ", 1)[1]
    assert len(loss.split(".")[1]) == 4
