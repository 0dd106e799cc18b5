"""The Python API: the functions the README shows, callable however they are reached."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import unetkit
from unetkit.errors import InputError


def test_train_predict_evaluate_through_the_api(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """`unetkit.evaluate` became the module after its first call (the module's name shadowed the function):
    the second call failed with "'module' object is not callable"."""
    images, labels = toy_data
    record = unetkit.train(str(images), str(labels), tmp_path / "run", epochs=1, base_width=4, depth=2, seed=3,
                           device="cpu", progress=False)
    assert record["status"] == "finished" and record["config"]["base_width"] == 4 and record["config"]["seed"] == 3
    assert record["plan"]["fixed_by_user"] == ["base_width", "depth"]  # given options are kept, the rest planned
    one = sorted(images.iterdir())[0]
    written = unetkit.predict(tmp_path / "run", str(one), tmp_path / "pred", progress=False)  # a string: one file
    assert [p.name for p in written] == [one.with_suffix(".png").name]
    unetkit.predict(str(tmp_path / "run"), [images], tmp_path / "all", progress=False)
    first = unetkit.evaluate(tmp_path / "all", labels)
    second = unetkit.evaluate(str(tmp_path / "all"), str(labels))
    assert first == second and len(first["per_image"]) == len(list(images.iterdir()))
    run = unetkit.load_run(tmp_path / "run")
    assert run.model_options["base_width"] == 4
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"] == record["config"]


def test_the_api_names_stay_callable_after_their_modules_are_imported() -> None:
    import unetkit.evaluate
    import unetkit.export
    import unetkit.predict
    import unetkit.train.planning  # noqa: F401 (sets unetkit.train to the package)
    from unetkit import evaluate, export, predict, train

    assert callable(train) and callable(predict) and callable(evaluate) and callable(export)
    assert train is unetkit.train and predict is unetkit.predict


def test_the_api_takes_predict_and_evaluate_flags_as_keywords(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """--instances and --prob could not be asked for from Python."""
    images, labels = toy_data
    unetkit.train(images, labels, tmp_path / "run", epochs=1, base_width=4, depth=2, device="cpu", progress=False)
    unetkit.predict(tmp_path / "run", images, tmp_path / "pred", prob=True, instances="objects", boundary_value=0,
                    progress=False)
    names = {p.name for p in (tmp_path / "pred").iterdir()}
    assert {"0.png", "0_prob.tif", "0_cells.tif"} <= names
    swept = unetkit.evaluate(tmp_path / "pred", labels, instances="watershed")
    assert swept["instances"] == "watershed" and len(swept["per_image"]) + len(swept["skipped"]) == 6
    with pytest.raises(InputError, match="instances='blobs': choose auto, cells or objects"):
        unetkit.predict(tmp_path / "run", images, tmp_path / "p2", instances="blobs")


def test_an_unknown_option_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unetkit.train: unknown option widht; choose from .*base_width"):
        unetkit.train(tmp_path, tmp_path, tmp_path / "run", widht=8)
    with pytest.raises(InputError, match=r"unknown option quiet; choose from .*budget.*progress=False is --quiet"):
        unetkit.train(tmp_path, tmp_path, tmp_path / "run", quiet=True)  # the list left out budget, epochs, progress


@pytest.mark.parametrize("call, message", [
    (lambda: unetkit.predict("run", "in", "out", bogus=1),
     r"unetkit.predict: got an unexpected keyword argument 'bogus'; its options are tta, prob, .*help\(unetkit.predict\)"),
    (lambda: unetkit.evaluate("pred"), r"unetkit.evaluate: missing a required argument: 'labels'"),
    (lambda: unetkit.export("run", "out", formt="onnx"), r"unetkit.export: .*'formt'; its options are formats, name"),
    (lambda: unetkit.load_run("run", devise="cpu"), r"unetkit.load_run: .*'devise'; its options are device, precision"),
    (lambda: unetkit.check("a", "b", "c"), r"unetkit.check: too many positional arguments"),
    (lambda: unetkit.predict_array("run", None, propabilities=True), r"unetkit.predict_array: .*'propabilities'"),
])
def test_every_api_function_refuses_arguments_it_does_not_take_as_an_error_in_use(call, message: str) -> None:
    """The README promises InputError for an unknown option; predict, evaluate, export, check and load_run raised
    Python's TypeError (only train and resume checked their options)."""
    with pytest.raises(InputError, match=message):
        call()


def test_check_resume_and_export_are_functions_too(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """README: "every command is a function first"; check, --resume and export were not."""
    import shutil

    images, labels = toy_data
    report = unetkit.check(images, labels)
    assert report.errors == [] and len(report.pairs) == len(list(images.iterdir()))
    damaged = shutil.copytree(labels, tmp_path / "damaged")
    first = sorted(damaged.iterdir())[0]
    first.write_bytes(b"not a png")
    errors = unetkit.check(images, damaged).errors
    assert len(errors) == 1 and first.name in errors[0].file
    unetkit.train(images, labels, tmp_path / "run", epochs=1, base_width=4, depth=2, device="cpu", progress=False)
    record = unetkit.resume(tmp_path / "run", epochs=2, progress=False)  # a finished run, extended
    assert record["progress"]["epoch"] == 2
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3  # header and two epochs
    exported = unetkit.export(tmp_path / "run", tmp_path / "model", formats="torchscript", author="a tester")  # one
    # name, not the letters t,o,r,c,h,...
    assert (tmp_path / "model" / "model.torchscript.pt").is_file() and "onnx" not in json.dumps(exported["files"])


@pytest.mark.parametrize("option", [{"base_width": "16"}, {"lr": "fast"}, {"val_fraction": "0.2"}, {"seed": 2**70},
                                    {"patch_size": "big"}])
def test_options_of_the_wrong_type_are_one_clear_error(option: dict, tmp_path: Path) -> None:
    """TypeError/ValueError from deep inside torch or the dataset, not InputError (audit)."""
    name = next(iter(option))
    with pytest.raises(InputError, match="--" + {"base_width": "width"}.get(name, name.replace("_", "-"))):
        unetkit.train(tmp_path, tmp_path, tmp_path / "run", epochs=1, **option)


def test_a_diffusion_run_may_be_given_as_a_path(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """synthetic=Path(...) was refused as "must be a word" once options were type-checked; it is a folder."""
    images, labels = toy_data
    with pytest.raises(InputError, match="nonexist: not a unetkit run"):  # read as the run it names: not there
        unetkit.train(images, labels, tmp_path / "run", epochs=1, synthetic=tmp_path / "nonexist", device="cpu")


def test_a_call_leaves_the_callers_threads_and_random_state_as_they_were(toy_data: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    """A run seeds torch's global generator and sets one thread per core: a notebook's seeded stream repeated
    itself after each call (whatever its seed), and its thread limit was lost (audit)."""
    import torch

    images, labels = toy_data
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        torch.manual_seed(123)
        unetkit.train(images, labels, tmp_path / "run", epochs=1, base_width=4, depth=2, device="cpu", progress=False)
        unetkit.predict(tmp_path / "run", images, tmp_path / "pred", progress=False)
        unetkit.resume(tmp_path / "run", epochs=2, progress=False)
        unetkit.load_run(tmp_path / "run")  # building the network draws from the generator
        unetkit.check(images, labels, run=tmp_path / "run")
        after_calls = torch.rand(3)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    torch.manual_seed(123)
    assert torch.equal(after_calls, torch.rand(3))  # the stream goes on as if unetkit had not been called


def test_a_loaded_run_predicts_with_the_precision_and_device_asked_for(toy_data: tuple[Path, Path],
                                                                        tmp_path: Path) -> None:
    """A Run from load_run kept the precision it was loaded with (bf16 on this CPU): precision="fp32" was ignored."""
    import tifffile

    images, labels = toy_data
    unetkit.train(images, labels, tmp_path / "run", epochs=1, base_width=4, depth=2, device="cpu", progress=False)
    one = sorted(images.iterdir())[0]
    run = unetkit.load_run(tmp_path / "run")
    loaded_as = run.amp_dtype
    unetkit.predict(run, one, tmp_path / "object", prob=True, precision="fp32", device="cpu", progress=False)
    unetkit.predict(tmp_path / "run", one, tmp_path / "folder", prob=True, precision="fp32", device="cpu",
                    progress=False)
    name = one.stem + "_prob.tif"
    assert (tifffile.imread(tmp_path / "object" / name) == tifffile.imread(tmp_path / "folder" / name)).all()
    assert run.amp_dtype == loaded_as  # the caller's Run is left as it was


@pytest.mark.parametrize("call, message", [
    (lambda tmp: unetkit.load_run(None), "path=None: give a path"),
    (lambda tmp: unetkit.check(tmp, tmp, val_fraction="x"), "val_fraction='x': give the share held out for validation as a number"),
    (lambda tmp: unetkit.check(tmp, tmp, val_fraction=1.5), "--val-fraction 1.5: the share"),
    (lambda tmp: unetkit.evaluate(tmp, tmp, ignore_value="x"), "ignore_value='x': give a mask value"),
    (lambda tmp: unetkit.evaluate(tmp, tmp, boundary_value=[1.5]), r"boundary_value=\[1.5\]: give a mask value"),
    (lambda tmp: unetkit.predict(tmp, [], tmp / "out"), r"inputs=\[\]: no images given"),
    (lambda tmp: unetkit.train(__import__("numpy").zeros((4, 256, 256)), tmp, tmp / "out"),
     r"^images=ndarray of shape \(4, 256, 256\): give a path"),  # its 1000 characters of values were printed
    (lambda tmp: unetkit.resume(tmp, lr=0.1), "unetkit.resume: unknown option lr"),  # was a TypeError
    (lambda tmp: unetkit.predict_array(tmp, str(tmp)), "a path; unetkit.predict"),
])
def test_arguments_of_the_wrong_kind_are_one_clear_error(call, message: str, tmp_path: Path) -> None:
    """A TypeError from pathlib or a comparison, a string accepted as a mask value, an empty list that wrote an
    empty folder and said 'wrote 0 masks' (audit)."""
    with pytest.raises(InputError, match=message):
        call(tmp_path)
    assert not (tmp_path / "out").exists()


def test_the_api_names_show_their_functions_signature_and_help() -> None:
    """`unetkit.train?` in a notebook showed the package's docstring and (*args, **kwargs): no keyword completion."""
    import inspect

    import unetkit.train.planning  # noqa: F401 (unetkit.train is now the package)

    for function, keyword in ((unetkit.train, "budget"), (unetkit.predict, "tta"), (unetkit.evaluate, "instances"),
                              (unetkit.export, "formats")):
        assert keyword in inspect.signature(function).parameters
        assert function.__doc__.startswith(f"Called as unetkit.{function.__name__.split('.')[1]}(")


def test_a_notebook_predicts_an_array_in_memory_with_numpy_numbers(toy_data: tuple[Path, Path], tmp_path: Path) -> None:
    """Notebook use (audit): np.int64 options were refused as "not a whole number", an image in memory had to be
    saved to a file to be predicted, and a suspect image's warning was only printed."""
    import warnings

    import numpy as np
    from PIL import Image

    images, labels = toy_data
    record = unetkit.train(images, labels, tmp_path / "run", epochs=np.int64(1), base_width=np.int64(4),
                           depth=np.arange(3)[2], lr=np.float32(1e-3), device="cpu", progress=False)
    assert type(record["config"]["base_width"]) is int and record["config"]["lr"] == pytest.approx(1e-3)
    run = unetkit.load_run(tmp_path / "run", device="cpu")
    assert len(repr(run)) < 300 and "classes=[0, 255]" in repr(run)
    one = sorted(images.iterdir())[0]
    image = np.asarray(Image.open(one))
    mask = unetkit.predict_array(run, image)
    written = unetkit.predict(run, one, tmp_path / "pred", progress=False)
    np.testing.assert_array_equal(mask, np.asarray(Image.open(written[0])))  # what predict writes for the file
    grey_as_rgb, probabilities = unetkit.predict_array(tmp_path / "run", np.stack([image] * 3, axis=-1), prob=True)
    np.testing.assert_array_equal(grey_as_rgb, mask)
    assert probabilities.shape == (2, *image.shape) and np.allclose(probabilities.sum(0), 1, atol=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unetkit.predict_array(run, np.full_like(image, 255))
    assert len(caught) == 1 and "median intensity 255 lies outside" in str(caught[0].message)
    assert caught[0].filename == __file__  # the caller's line, which a filter can target, not unetkit's wrapper
    assert unetkit.evaluate(tmp_path / "pred", labels, boundary_value=np.uint8(0))["per_image"]  # numpy: evaluate too
    with pytest.raises(InputError, match=r"its channels come first; give \(height, width, channels\)"):
        unetkit.predict_array(run, np.stack([image] * 3))
    with pytest.raises(InputError, match="is uint16 but the model was trained on uint8"):
        unetkit.predict_array(run, image.astype(np.uint16))
    with pytest.raises(InputError, match=r"image of shape \(2, 3, 32, 32\): give one image"):
        unetkit.predict_array(run, np.zeros((2, 3, 32, 32), np.uint8))


def test_a_whole_float_is_taken_as_the_whole_number_it_holds() -> None:
    """base_width=16.0 (a width computed in a notebook, a JSON 16.0) was refused as "must be a whole number";
    16.5 still is, and a float stays a float where one is wanted."""
    from unetkit.config import TrainConfig

    config = TrainConfig(base_width=16.0, patch_size=96.0, lr=1.0)  # type: ignore[arg-type]
    assert (config.base_width, config.patch_size) == (16, 96)
    assert type(config.base_width) is int and type(config.patch_size) is int and type(config.lr) is float
    with pytest.raises(InputError, match="--width 16.5: must be a whole number"):
        TrainConfig(base_width=16.5)  # type: ignore[arg-type]


def test_the_api_annotations_resolve_without_importing_torch_first() -> None:
    """typing.get_type_hints(unetkit.predict) raised NameError on "Run", imported only for type checkers, so
    tools that read annotations (typeguard, pydantic's validate_call, sphinx-autodoc-typehints) failed on the API;
    `import unetkit` must still not import torch (the CLI's --help stays fast)."""
    import subprocess
    import sys

    script = ("import sys, typing, unetkit; assert 'torch' not in sys.modules; from unetkit import api; "
              "hints = {n: typing.get_type_hints(getattr(api, n)) for n in unetkit.__all__[1:]}; "
              "print(hints['predict']['run'], hints['load_run']['return'].__name__, hints['check']['return'].__name__)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["Run", "CheckReport"] and "unetkit.run.Run" in result.stdout
