"""`unetkit export`: stand-alone ONNX and TorchScript networks that segment as `unetkit predict` does,
packaged so that the bioimage.io reference implementation runs them."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import tifffile
import torch

import unetkit
from bioimageio.core import test_model as bioimageio_test_model
from PIL import Image

from conftest import blob_pair, write_png

from unetkit.cli import main
from unetkit.config import TrainConfig
from unetkit.errors import InputError
from unetkit.export import StandaloneSegmenter, export_run
from unetkit.models import build_model
from unetkit.predict import predict_probabilities
from unetkit.train.start import train

QUIET = dict(progress=False, say=lambda _: None)


def _train_tiny(root: Path, model: str, **options: object) -> Path:
    rng = np.random.default_rng(0)
    for i in range(4):
        image, label = blob_pair(rng, 48)
        write_png(root / "image" / f"{i}.png", image)
        write_png(root / "label" / f"{i}.png", label * 255)
    config = replace(TrainConfig(), model=model, base_width=4, depth=2, epochs=2, budget_s=None, device="cpu", **options)
    train(root / "image", root / "label", root / "run", config, **QUIET)
    return root / "run"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny padded U-Net run and its export in both formats."""
    root = tmp_path_factory.mktemp("export")
    run = _train_tiny(root, "unet", patch_size=32)
    assert main(["export", str(run), "--out", str(root / "exported"), "--author", "Test Author"]) == 0
    return run, root / "exported"


def test_the_standalone_graph_computes_what_predict_does() -> None:
    torch.manual_seed(0)
    network = build_model("unet", in_channels=3, num_classes=3, base_width=4, depth=2).eval()
    low, high, shift, values = (10.0, 0.0, -5.0), (250.0, 1000.0, 5.0), (-0.5, 0.25), (0, 7, 255)
    segmenter = StandaloneSegmenter(network, low, high, values, shift).eval()
    raw = torch.rand(1, 3, 20, 28) * torch.tensor([300.0, 1200.0, 12.0]).view(1, 3, 1, 1)
    normalised = (raw[0] - torch.tensor(low).view(3, 1, 1)) / torch.tensor([240.0, 1000.0, 10.0]).view(3, 1, 1)
    expected = predict_probabilities(network, normalised, amp_dtype=None, shift=shift)
    with torch.no_grad():
        probabilities, mask = segmenter(raw)
    assert torch.allclose(probabilities[0], expected, atol=1e-5)
    assert mask.dtype == torch.int32
    assert torch.equal(mask[0], torch.tensor(values)[expected.argmax(0)].int())


def test_exported_networks_segment_new_images_as_unetkit_predict_does(exported: tuple[Path, Path], tmp_path: Path) -> None:
    run, folder = exported
    rng = np.random.default_rng(5)
    sizes = {"a": (36, 52), "b": (36, 52), "tall": (60, 28)}  # on the network's grid of 4, not the traced size
    for name, (height, width) in sizes.items():
        image, _ = blob_pair(rng, max(height, width))
        write_png(tmp_path / "in" / f"{name}.png", image[:height, :width])
    assert main(["predict", str(run), str(tmp_path / "in"), "--out", str(tmp_path / "masks"), "--quiet",
                 "--precision", "fp32", "--prob"]) == 0

    def image(name: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / "in" / f"{name}.png")).astype(np.float32)[None, None]

    def expected(name: str) -> tuple[np.ndarray, np.ndarray]:
        return (tifffile.imread(tmp_path / "masks" / f"{name}_prob.tif"),
                np.asarray(Image.open(tmp_path / "masks" / f"{name}.png")))

    def agree(got: tuple[np.ndarray, np.ndarray], name: str) -> bool:
        probabilities, mask = expected(name)
        return np.allclose(got[0], probabilities, atol=1e-5) and np.array_equal(got[1], mask)

    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    batch = session.run(None, {"image": np.concatenate([image("a"), image("b")])})
    assert agree((batch[0][0], batch[1][0]), "a") and agree((batch[0][1], batch[1][1]), "b")
    assert not np.allclose(expected("a")[0], expected("b")[0], atol=1e-3)  # the batch is two different images
    tall = session.run(None, {"image": image("tall")})
    assert agree((tall[0][0], tall[1][0]), "tall")
    scripted = torch.jit.load(str(folder / "model.torchscript.pt"))
    for name in sizes:
        with torch.no_grad():
            probabilities, mask = scripted(torch.from_numpy(image(name)))
        assert agree((probabilities[0].numpy(), mask[0].numpy()), name), name


def test_the_package_describes_itself_and_lists_true_checksums(exported: tuple[Path, Path]) -> None:
    _, folder = exported
    description = json.loads((folder / "export.json").read_text())
    rdf = json.loads((folder / "rdf.yaml").read_text())  # JSON is YAML
    for name, entry in description["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == entry["sha256"]
        assert "within" in entry["check"]
    assert description["outputs"][0]["classes"] == [0, 255]
    assert description["input"]["size"]["step"] == 4
    assert rdf["authors"] == [{"name": "Test Author"}]
    assert set(rdf["weights"]) == {"onnx", "torchscript"}
    assert np.array_equal(np.load(folder / "test_mask.npy"),
                          np.array([0, 255])[np.load(folder / "test_probabilities.npy").argmax(1)])


@pytest.mark.parametrize("weights", ["onnx", "torchscript"])
def test_the_bioimageio_reference_implementation_runs_the_package(exported: tuple[Path, Path], weights: str) -> None:
    """bioimage.io's own checker reproduces the test outputs and runs other sizes and batches."""
    _, folder = exported
    summary = bioimageio_test_model(str((folder / "rdf.yaml").resolve()), weight_format=weights)
    failed = [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed


def test_a_zip_package_holds_the_same_files_and_passes(exported: tuple[Path, Path], tmp_path: Path) -> None:
    run, folder = exported
    package = tmp_path / "model.zip"
    export_run(run, package, formats=("torchscript",), report=lambda _: None)
    with zipfile.ZipFile(package) as archive:
        assert set(archive.namelist()) == {p.name for p in folder.iterdir()} - {"model.onnx"}
    assert bioimageio_test_model(str(package), weight_format="torchscript").status == "passed"
    with pytest.raises(InputError, match="exists"):
        export_run(run, package, formats=("torchscript",), report=lambda _: None)


def test_the_classic_valid_network_exports_outputs_smaller_by_its_margin(tmp_path: Path) -> None:
    run = _train_tiny(tmp_path, "unet-classic")
    export_run(run, tmp_path / "exported", report=lambda _: None)
    size = json.loads((tmp_path / "exported" / "export.json").read_text())["input"]["size"]
    side = size["minimum"] + 2 * size["step"]
    scripted = torch.jit.load(str(tmp_path / "exported" / "model.torchscript.pt"))
    probabilities, mask = scripted(torch.full((1, 1, side, side + size["step"]), 100.0))
    assert probabilities.shape[-2:] == (side - 2 * size["margin"], side + size["step"] - 2 * size["margin"])
    assert mask.shape[-2:] == probabilities.shape[-2:]
    summary = bioimageio_test_model(str((tmp_path / "exported" / "rdf.yaml").resolve()), weight_format="onnx")
    assert summary.status == "passed"
    readme = (tmp_path / "exported" / "README.md").read_text()
    margin = size["margin"]
    assert f"(H - {2 * margin}) x (W - {2 * margin})" in readme and "mirror it in one call: numpy.pad(" in readme
    # the README's recipe reproduces unetkit predict (review: mirroring in two steps changed the edges)
    image = np.random.default_rng(0).integers(0, 255, (37, 45)).astype(np.float32)

    def extra(length: int) -> int:
        return next(size["minimum"] + k * size["step"] for k in range(100)
                    if size["minimum"] + k * size["step"] >= length + 2 * margin) - length - 2 * margin

    padded = np.pad(image[None, None], ((0, 0), (0, 0), (margin, margin + extra(37)), (margin, margin + extra(45))),
                    mode="reflect")
    with torch.no_grad():
        exported_probabilities = scripted(torch.from_numpy(padded))[0][0, :, :37, :45].numpy()
    _, predicted = unetkit.predict_array(unetkit.load_run(run, precision="fp32"), image.astype(np.uint8), prob=True)
    assert np.abs(exported_probabilities - predicted).max() < 1e-4


def test_a_failed_export_leaves_nothing_behind(exported: tuple[Path, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    run, _ = exported
    import unetkit.export as export_module

    def broken(*_: object) -> str:
        raise RuntimeError("model.torchscript.pt: probabilities differ")

    monkeypatch.setitem(export_module._WRITERS, "torchscript", (export_module._write_torchscript, broken))
    with pytest.raises(RuntimeError):
        export_run(run, tmp_path / "out", report=lambda _: None)
    with pytest.raises(RuntimeError):  # nor the folders it would have made on the way
        export_run(run, tmp_path / "a" / "b" / "model", report=lambda _: None)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()

    def interrupted_zip(*_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(zipfile.ZipFile, "write", interrupted_zip)
    with pytest.raises(KeyboardInterrupt):
        export_run(run, tmp_path / "model.zip", formats=("torchscript",), report=lambda _: None)
    assert list(tmp_path.iterdir()) == []


def test_export_errors_are_one_line_with_exit_code_2(exported: tuple[Path, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run, folder = exported
    cases = [
        (["export", str(run), "--out", str(folder)], "exists and is not empty"),
        (["export", str(tmp_path), "--out", str(tmp_path / "x")], "not a unetkit run"),
        (["export", str(run), "--out", str(tmp_path / "y"), "--format", "tflite"], "unknown"),
    ]
    (tmp_path / "a-file").write_text("")
    cases += [
        (["export", str(run), "--out", str(tmp_path / "l"), "--license", "NOT-A-LICENSE"], "not an SPDX"),
        (["export", str(run), "--out", str(tmp_path / "l"), "--license", "mit"], "did you mean MIT"),
        (["export", str(run), "--out", str(tmp_path / "a-file" / "m.zip")], "is a file, not a folder"),
        (["export", str(run), "--out", str(run / "exported")], "inside the run"),
        (["export", str(run), "--out", str(tmp_path / "model.tar")], "not a .tar file"),  # was a folder named model.tar
        (["export", str(run), "--out", str(tmp_path / "net.ONNX")], "not a .onnx file"),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.access(read_only, os.W_OK):  # root writes anywhere: let the check see what an ordinary user would

        def refuse(folder: Path) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("unetkit.run.make_writable_folder", refuse)
    for out, message in [(read_only / "m.zip", "cannot create or write the folder for the zip"),
                         (read_only / "m", "cannot create or write the export folder")]:
        assert main(["export", str(run), "--out", str(out)]) == 2  # said before exporting: no staging name, no --resume
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "--resume" not in err and ".m.zip." not in err, err
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    assert main(["export", str(run), "--out", str(tmp_path / "z")]) == 2
    assert "pip install 'unetkit[export]'" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


def test_a_colour_run_exports_packed_colours_and_says_how_to_unpack_them(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(3):
        image, label = blob_pair(rng, 32)
        write_png(tmp_path / "image" / f"{i}.png", image)
        write_png(tmp_path / "label" / f"{i}.png", np.array([[0, 0, 255], [255, 0, 0]], dtype=np.uint8)[label])
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    export_run(tmp_path / "run", tmp_path / "exported", formats=("torchscript",), report=lambda _: None)
    description = json.loads((tmp_path / "exported" / "export.json").read_text())
    mask = np.load(tmp_path / "exported" / "test_mask.npy")
    assert set(np.unique(mask)) <= {0x0000FF, 0xFF0000}  # blue and red, packed
    assert "0xRRGGBB" in description["outputs"][1]["values"]
    assert "0xRRGGBB" in (tmp_path / "exported" / "README.md").read_text()
    rdf = (tmp_path / "exported" / "rdf.yaml").read_text()  # colours by name, not by packed code (audit)
    assert "class_0_0_255" in rdf and "class_255_0_0" in rdf and "class_16711680" not in rdf
    summary = bioimageio_test_model(str((tmp_path / "exported" / "rdf.yaml").resolve()), weight_format="torchscript")
    assert summary.status == "passed", [(d.name, [e.msg for e in d.errors]) for d in summary.details]


def test_a_palette_run_exports_its_palette_to_colour_the_mask(tmp_path: Path) -> None:
    """Palette-PNG masks: predict writes palette masks; the export must carry the colours for its consumers."""
    rng = np.random.default_rng(0)
    palette = [0, 0, 0, 200, 30, 90] + [0] * 762
    (tmp_path / "label").mkdir()
    for i in range(3):
        image, label = blob_pair(rng, 32)
        write_png(tmp_path / "image" / f"{i}.png", image)
        mask = Image.fromarray(label, "P")
        mask.putpalette(palette)
        mask.save(tmp_path / "label" / f"{i}.png")
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=32, epochs=1, budget_s=None, device="cpu")
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    export_run(tmp_path / "run", tmp_path / "exported", formats=("torchscript",), report=lambda _: None)
    mask_output = json.loads((tmp_path / "exported" / "export.json").read_text())["outputs"][1]
    assert mask_output["palette"][:6] == palette[:6] and mask_output["colour"] is False
    assert "putpalette" in (tmp_path / "exported" / "README.md").read_text()


def test_label_values_beyond_int32_come_out_as_int64() -> None:
    network = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=2).eval()
    segmenter = StandaloneSegmenter(network, (0.0,), (255.0,), (0, 3_000_000_000), None)
    with torch.no_grad():
        _, mask = segmenter(torch.zeros(1, 1, 8, 8))
    assert mask.dtype == torch.int64 and set(mask.unique().tolist()) <= {0, 3_000_000_000}


def test_damaged_weights_are_refused_not_exported_or_predicted(exported: tuple[Path, Path], tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    run, _ = exported
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    weights = load_file(str(damaged / "model.safetensors"))
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = torch.full_like(weights[name], float("nan"))
    save_file(weights, str(damaged / "model.safetensors"))
    with pytest.raises(InputError, match="non-finite weights"):
        export_run(damaged, tmp_path / "x", report=lambda _: None)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("signal_name, code", [("SIGINT", 130), ("SIGTERM", 143)])
def test_an_interrupt_wrapped_by_the_exporter_keeps_its_exit_code(
    exported: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
    signal_name: str, code: int
) -> None:
    """torch.onnx wraps a Ctrl-C in an error of its own; re-raised as a plain KeyboardInterrupt, a SIGTERM during the
    ONNX export exited 130 (Ctrl-C's code) instead of 143."""
    from unetkit.cli import Terminated

    interrupt = Terminated() if signal_name == "SIGTERM" else KeyboardInterrupt()

    def export_interrupted(*args: object, **kwargs: object) -> None:
        try:
            raise interrupt
        except KeyboardInterrupt:
            raise RuntimeError("Failed to export the model with torch.export")  # as torch.onnx wraps it

    monkeypatch.setattr(torch.onnx, "export", export_interrupted)
    run, _ = exported
    assert main(["export", str(run), "--out", str(tmp_path / "model")]) == code
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "model").exists()
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("a real failure")))
    with pytest.raises(RuntimeError, match="a real failure"):  # an error of the exporter's own is no interrupt
        main(["export", str(run), "--out", str(tmp_path / "model")])


def test_the_test_tensors_come_from_the_runs_images_are_hashed_and_pass_bioimageio_checks(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    """A synthetic noise test input gave an all-background test mask, which bioimage.io's validator refuses
    ("output values are too small for reliable testing"); export.json named the run's absolute path and hashed
    only the network files."""
    import hashlib

    import bioimageio.spec

    run, folder = exported
    description = json.loads((folder / "export.json").read_text())
    assert description["test"]["input_source"] == "a 48 x 48 crop of 3.png"  # the held-out (last) image, whole
    assert np.array_equal(np.load(folder / "test_input.npy")[0, 0], np.asarray(Image.open(run.parent / "image" / "3.png")))
    for name, digest in description["test"]["sha256"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    assert description["source_run"] == "run" and str(run.parent) not in (folder / "README.md").read_text()
    summary = bioimageio.spec.load_description(str(folder / "rdf.yaml"), perform_io_checks=True).validation_summary
    assert summary.status != "failed", summary.format()


def test_the_training_pixel_size_becomes_the_axes_scale_and_the_package_still_passes(tmp_path: Path) -> None:
    """Tools that rescale inputs to a model's scale (bioimage.io's axis unit and scale) were told nothing of it."""
    rng = np.random.default_rng(0)
    for i in range(4):
        image, label = blob_pair(rng, 48)
        (tmp_path / "image").mkdir(exist_ok=True)
        tifffile.imwrite(tmp_path / "image" / f"{i}.tif", image, imagej=True, resolution=(0.25, 0.2),
                         metadata={"unit": "nm"})  # pixels 4 nm wide, 5 nm high
        write_png(tmp_path / "label" / f"{i}.png", label * 255)
    config = replace(TrainConfig(), base_width=4, depth=2, epochs=1, budget_s=None, device="cpu", patch_size=32)
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "exported"), "--format", "torchscript",
                 "--author", "Test Author"]) == 0
    description = json.loads((tmp_path / "exported" / "export.json").read_text())
    assert description["input"]["pixel_size_m"] == pytest.approx([5e-9, 4e-9])
    rdf = json.loads((tmp_path / "exported" / "rdf.yaml").read_text())  # JSON is YAML
    y_axis, x_axis = rdf["inputs"][0]["axes"][2:]
    assert (y_axis["unit"], y_axis["scale"], x_axis["unit"], x_axis["scale"]) == ("nanometer", 5.0, "nanometer", 4.0)
    assert rdf["outputs"][1]["axes"][1]["scale"] == 5.0
    assert "Trained on pixels 4 nm wide and 5 nm high" in (tmp_path / "exported" / "README.md").read_text()
    summary = bioimageio_test_model(str((tmp_path / "exported" / "rdf.yaml").resolve()), weight_format="torchscript")
    assert summary.status == "passed", [(d.name, [e.msg for e in d.errors]) for d in summary.details if d.status != "passed"]


def test_a_test_crop_of_background_only_is_passed_over_for_one_bioimageio_can_test(tmp_path: Path) -> None:
    """Review: a valid network's 8 x 8 centre crop of background gave a test mask of 0 only, which
    bioimage.io's test refuses ("output values are too small for reliable testing"), while the export said
    both files were checked."""
    rng = np.random.default_rng(0)
    for i in range(4):
        label = np.zeros((48, 48), np.uint8)
        for _ in range(3):
            y, x = rng.integers(0, 40, 2)
            h, w = rng.integers(4, 10, 2)
            label[y : y + h, x : x + w] = 1
        image = (60 + 120 * label + rng.normal(0, 8, label.shape)).clip(0, 255).astype(np.uint8)
        write_png(tmp_path / "image" / f"{i}.png", image)
        write_png(tmp_path / "label" / f"{i}.png", label * 255)
    config = replace(TrainConfig(), model="unet-classic", base_width=4, depth=2, epochs=2, budget_s=None,
                     device="cpu", patch_size=44)
    train(tmp_path / "image", tmp_path / "label", tmp_path / "run", config, **QUIET)
    lines: list[str] = []
    export_run(tmp_path / "run", tmp_path / "exported", formats=("onnx",), report=lines.append)
    assert not any(line.startswith("note:") for line in lines), lines
    assert np.load(tmp_path / "exported" / "test_mask.npy").max() == 255
    summary = bioimageio_test_model(str((tmp_path / "exported" / "rdf.yaml").resolve()), weight_format="onnx")
    assert summary.status == "passed", summary.format()


def test_the_test_input_is_the_first_crop_whose_mask_is_not_all_zero(exported: tuple[Path, Path]) -> None:
    from unetkit import export as export_module
    from unetkit.run import load_run

    run_dir, _ = exported
    run = load_run(run_dir, device="cpu", precision="fp32")
    grid = export_module.size_grid(run)

    class Thresholded(torch.nn.Module):
        """Mask 1 where the input is brighter than `level`, probabilities 0.5: which crop passes is known."""

        def __init__(self, level: float) -> None:
            super().__init__()
            self.level = level

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.full_like(image, 0.5), (image[:, 0] > self.level).int()

    crops, _ = export_module._crops_of_training_images(run, grid, 48, 48)
    brightest = max(float(crop.max()) for crop, _ in crops)
    _, _, mask, source = export_module._test_tensors(run, grid, Thresholded(brightest - 1))
    expected = next(where for crop, where in crops if crop.max() > brightest - 1)
    assert source == expected and mask.max() == 1
    _, _, mask, source = export_module._test_tensors(run, grid, Thresholded(1e9))  # nothing testable
    assert source == crops[0][1] and mask.max() == 0
