"""predict --skip-done: a stopped predict goes on where it stopped, and nothing stale is taken for done."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import train_tiny_run

import unetkit.predict_files as predict_files
from unetkit.cli import main
from unetkit.data.io import PREDICTIONS_MARKER
from unetkit.errors import InputError
from unetkit.predict_files import predict_paths

QUIET = dict(progress=False, say=lambda _: None)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_run(tmp_path_factory.mktemp("skip"), count=4, size=32, epochs=1)


@pytest.fixture
def counted_predictions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the inputs predict_paths actually predicts."""
    predicted: list[str] = []
    real = predict_files._predict_file

    def counting(run, file, *args, **kwargs):  # type: ignore[no-untyped-def]
        predicted.append(file.name)
        return real(run, file, *args, **kwargs)

    monkeypatch.setattr(predict_files, "_predict_file", counting)
    return predicted


def _times(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if not p.name.startswith(".")}


def test_a_stopped_predict_goes_on_with_the_inputs_it_had_not_reached(tiny_run: Path, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    real = predict_files._predict_file
    calls: list[str] = []

    def stopped_at_the_third(run, file, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(file.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(run, file, *args, **kwargs)

    monkeypatch.setattr(predict_files, "_predict_file", stopped_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "out", write_probabilities=True, **QUIET)
    assert sorted(_times(tmp_path / "out")) == ["0.png", "0_prob.tif", "1.png", "1_prob.tif"]
    first = _times(tmp_path / "out")
    calls.clear()
    monkeypatch.setattr(predict_files, "_predict_file", lambda run, file, *a, **k: calls.append(file.name) or real(run, file, *a, **k))
    said: list[str] = []
    masks = predict_paths(tiny_run / "run", [tiny_run / "image"], tmp_path / "out", write_probabilities=True,
                          skip_done=True, progress=False, say=said.append)
    assert calls == ["2.png", "3.png"]
    assert [m.name for m in masks] == ["0.png", "1.png", "2.png", "3.png"]  # every input's mask, in input order
    assert {name: _times(tmp_path / "out")[name] for name in first} == first  # the done ones untouched
    assert "2 masks" in said[-1] and "2 inputs predicted earlier" in said[-1]


def test_other_options_an_input_saved_again_or_another_run_are_predicted_again(
        tiny_run: Path, tmp_path: Path, counted_predictions: list[str]) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        (images / f"{i}.png").write_bytes((tiny_run / "image" / f"{i}.png").read_bytes())
    predict_paths(tiny_run / "run", [images], tmp_path / "out", **QUIET)
    counted_predictions.clear()
    predict_paths(tiny_run / "run", [images], tmp_path / "out", skip_done=True, **QUIET)
    assert counted_predictions == []
    predict_paths(tiny_run / "run", [images], tmp_path / "out", skip_done=True, tta=True, **QUIET)
    assert counted_predictions == ["0.png", "1.png", "2.png"]  # TTA: other outputs
    counted_predictions.clear()
    (images / "1.png").write_bytes((tiny_run / "image" / "3.png").read_bytes())  # the image replaced by another
    predict_paths(tiny_run / "run", [images], tmp_path / "out", skip_done=True, tta=True, **QUIET)
    assert counted_predictions == ["1.png"]
    counted_predictions.clear()
    predict_paths(tiny_run / "run", [images], tmp_path / "out", skip_done=True, tta=True, precision="fp32", **QUIET)
    predict_paths(tiny_run / "run", [images], tmp_path / "out", skip_done=True, tta=True, precision="fp32",
                  write_probabilities=True, **QUIET)
    assert counted_predictions == ["0.png", "1.png", "2.png"] * 2  # another precision, then probabilities too


def test_retrained_weights_are_not_the_run_that_predicted(tiny_run: Path, tmp_path: Path,
                                                          counted_predictions: list[str]) -> None:
    from unetkit.run import load_run

    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", **QUIET)
    run = load_run(tiny_run / "run", "cpu")
    with __import__("torch").no_grad():
        next(run.model.parameters()).add_(0.5)  # the same folder, other weights (a resumed training)
    counted_predictions.clear()
    predict_paths(run, [tiny_run / "image" / "0.png"], tmp_path / "out", skip_done=True, **QUIET)
    assert counted_predictions == ["0.png"]


def test_a_mask_corrected_by_hand_is_not_done_and_not_overwritten(tiny_run: Path, tmp_path: Path) -> None:
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", **QUIET)
    corrected = tmp_path / "out" / "0.png"
    corrected.write_bytes(corrected.read_bytes() + b"\0")
    with pytest.raises(InputError, match="changed after unetkit wrote it"):
        predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", skip_done=True, **QUIET)


def test_a_record_without_what_made_the_files_is_predicted_again(tiny_run: Path, tmp_path: Path,
                                                                 counted_predictions: list[str]) -> None:
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", **QUIET)
    marker = tmp_path / "out" / PREDICTIONS_MARKER
    record = json.loads(marker.read_text())
    for entry in record["owners"].values():  # what a marker of an earlier unetkit holds
        entry.pop("made_with"), entry.pop("source")
    marker.write_text(json.dumps(record))
    counted_predictions.clear()
    predict_paths(tiny_run / "run", [tiny_run / "image" / "0.png"], tmp_path / "out", skip_done=True, **QUIET)
    assert counted_predictions == ["0.png"]


def test_the_command_skips_and_an_interrupted_one_says_how_to_go_on(tiny_run: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    base = ["predict", str(tiny_run / "run"), str(tiny_run / "image"), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(base) == 0
    assert main([*base, "--skip-done"]) == 0
    assert "4 inputs predicted earlier left as they were" in capsys.readouterr().out

    def interrupted(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_files, "predict_paths", interrupted)
    assert main(base) == 130
    assert "the same command with --skip-done goes on" in capsys.readouterr().err
