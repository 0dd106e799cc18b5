"""Sub-pixel output alignment: shifting, finding a labelling offset, and carrying it from training to prediction."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from conftest import write_blob_pairs

from unetkit.alignment import ShiftSearch, shift_image
from unetkit.config import TrainConfig
from unetkit.predict import tile_probabilities
from unetkit.predict_files import predict_paths
from unetkit.run import load_run
from unetkit.train.start import train

QUIET = dict(progress=False, say=lambda _: None)


def smooth_probabilities(seed: int, size: int = 48) -> torch.Tensor:
    """2 x size x size class probabilities of a smooth random field."""
    generator = torch.Generator().manual_seed(seed)
    field = torch.nn.functional.avg_pool2d(torch.randn(1, 1, size, size, generator=generator), 7, 1, 3)[0, 0] * 8
    foreground = torch.sigmoid(field)
    return torch.stack([1 - foreground, foreground])


def test_whole_pixel_shifts_move_content_and_repeat_the_edge() -> None:
    x = torch.arange(20.0).reshape(4, 5)
    down = shift_image(x, (1.0, 0.0))
    assert torch.equal(down[1:], x[:-1]) and torch.equal(down[0], x[0])
    left = shift_image(x, (0.0, -2.0))
    assert torch.equal(left[:, :3], x[:, 2:]) and torch.equal(left[:, 3], x[:, 4])


def test_half_pixel_shift_averages_neighbours() -> None:
    x = torch.rand(3, 6, 7)
    half = shift_image(x, (0.5, 0.0))
    assert torch.allclose(half[:, 1:], (x[:, 1:] + x[:, :-1]) / 2)
    there_and_back = shift_image(shift_image(x, (0.25, -0.75)), (-0.25, 0.75))
    assert not torch.allclose(there_and_back, x)  # interpolation blurs ...
    assert torch.allclose(there_and_back.sum((-2, -1)), x.sum((-2, -1)), rtol=0.1)  # ... but keeps the mass roughly


@pytest.mark.parametrize("offset", [(-0.5, 0.0), (0.25, -0.75), (1.0, 0.5)])
def test_search_finds_the_offset_of_the_labels(offset: tuple[float, float]) -> None:
    search = ShiftSearch()
    for seed in range(3):
        probs = smooth_probabilities(seed)
        truth = shift_image(probs, offset).argmax(0)  # labels drawn `offset` away from the image's structures
        search.add(probs, truth)
    found = search.best()
    assert found["shift_px"] == list(offset)
    assert found["val_pixel_error_shifted"] == 0.0 and found["val_pixel_error"] > 0.01


def test_search_keeps_aligned_labels_unshifted() -> None:
    search = ShiftSearch()
    for seed in range(3):
        probs = smooth_probabilities(seed)
        search.add(probs, probs.argmax(0))
    assert search.best()["shift_px"] == [0.0, 0.0]


def test_search_handles_more_than_two_classes() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.nn.functional.avg_pool2d(torch.randn(1, 4, 64, 64, generator=generator), 7, 1, 3)[0]
    probs = logits.softmax(0)
    search = ShiftSearch()
    search.add(probs, shift_image(probs, (0.0, 1.0)).argmax(0))
    assert search.best()["shift_px"] == [0.0, 1.0]


def test_a_shift_that_gains_overall_but_not_across_the_image_is_not_used() -> None:
    """An undertrained network's errors favour some shift by a few per cent by chance; a shift needs the blocks
    of the validation images to agree (a sign test), as a real labelling offset's do. Here the labels of the top
    rows sit 1 px down and the rest sit right: the shift wins overall on the dense top alone."""
    generator = torch.Generator().manual_seed(5)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 128, 128, generator=generator), 9, 1, 4)[0, 0] * 20
    rough = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 128, 128, generator=generator), 3, 1, 1)[0, 0] * 6
    field = torch.cat([rough[:56], smooth[56:]])
    probs = torch.stack([1 - torch.sigmoid(field), torch.sigmoid(field)])
    truth = probs.argmax(0)
    truth[:56] = shift_image(probs, (1.0, 0.0)).argmax(0)[:56]
    search = ShiftSearch()
    search.add(probs, truth)
    found = search.best()
    rates = search.errors / search.pixels
    assert rates[search.shifts.index((1.0, 0.0))] < 0.98 * rates[search.shifts.index((0.0, 0.0))]  # 2 % gained overall
    assert found["best_shift_px"] == [1.0, 0.0] and found["shift_px"] == [0.0, 0.0], found
    better, worse = found["blocks_better_worse"]
    assert abs(better - worse) <= 0.2 * (better + worse) and found["p_value"] > 0.1


def test_the_shift_applies_in_the_image_frame_after_test_time_augmentation() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1), torch.nn.Conv2d(2, 2, 3, padding=1)).eval()
    tile = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        for tta in (False, True):
            plain = tile_probabilities(model, tile, tta)
            shifted = tile_probabilities(model, tile, tta, (1.0, -0.5))
            assert torch.allclose(shifted, shift_image(plain, (1.0, -0.5)), atol=1e-6)


@pytest.fixture(scope="module")
def offset_labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Blobs whose labels sit two pixels below them in the image: a labelling convention flips cannot teach."""
    root = tmp_path_factory.mktemp("offset")
    write_blob_pairs(root, count=8, size=48, mask=lambda label: np.roll(label, 2, axis=0) * 255)
    return root


def test_training_measures_the_offset_and_prediction_applies_it(offset_labels: Path, tmp_path: Path) -> None:
    config = replace(TrainConfig(), base_width=8, depth=2, patch_size=48, batch_size=4, epochs=30, budget_s=None,
                     device="cpu", val_fraction=0.25, lr=1e-2)
    record = train(offset_labels / "image", offset_labels / "label", tmp_path / "run", config, **QUIET)
    down, right = record["alignment"]["shift_px"]
    assert down >= 1.0 and abs(right) <= 0.5, record["alignment"]  # the labels sit 2 px down; flips taught none of it
    assert record["alignment"]["val_pixel_error_shifted"] < record["alignment"]["val_pixel_error"]
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["alignment"] == record["alignment"]

    predict_paths(tmp_path / "run", [offset_labels / "image"], tmp_path / "aligned", write_probabilities=True, **QUIET)
    unshifted = load_run(tmp_path / "run")  # the same weights without the shift (the weights' header carries it too)
    unshifted.record["alignment"] = {**unshifted.record["alignment"], "shift_px": [0.0, 0.0]}
    predict_paths(unshifted, [offset_labels / "image"], tmp_path / "plain", write_probabilities=True, **QUIET)
    for i in range(8):
        aligned = torch.from_numpy(tifffile.imread(tmp_path / "aligned" / f"{i}_prob.tif"))
        plain = torch.from_numpy(tifffile.imread(tmp_path / "plain" / f"{i}_prob.tif"))
        assert torch.allclose(aligned, shift_image(plain, (down, right)), atol=1e-5)


def test_no_align_leaves_the_outputs_alone(offset_labels: Path, tmp_path: Path) -> None:
    config = replace(TrainConfig(), base_width=4, depth=2, patch_size=48, epochs=1, budget_s=None, device="cpu",
                     align_outputs=False)
    record = train(offset_labels / "image", offset_labels / "label", tmp_path / "run", config, **QUIET)
    assert "alignment" not in record


@pytest.mark.parametrize("kind", ["perfect", "all one class"])
def test_no_shift_is_chosen_when_nothing_needs_one(kind: str) -> None:
    probs = smooth_probabilities(0)
    if kind == "all one class":
        probs = torch.stack([torch.ones(48, 48), torch.zeros(48, 48)])
    search = ShiftSearch()
    search.add(probs, probs.argmax(0))  # every shift ties with none at 0 errors for a constant map
    assert search.best()["shift_px"] == [0.0, 0.0]


def test_runs_saved_before_alignment_existed_continue_without_it() -> None:
    saved = TrainConfig(recipe="paper").to_json()
    del saved["align_outputs"]
    assert TrainConfig.from_json(saved).align_outputs is False
    assert TrainConfig.from_json(TrainConfig().to_json()).align_outputs is True


def test_a_run_saved_before_the_sign_test_still_reports_its_shift() -> None:
    from unetkit.train.start import _report_alignment

    lines: list[str] = []
    _report_alignment({"alignment": {"shift_px": [-0.5, 0.0], "val_pixel_error": 0.074, "val_pixel_error_shifted": 0.070}},
                      lines.append)
    assert len(lines) == 1 and "shifted 0.50 px up," in lines[0] and "blocks" not in lines[0]  # not "-0.50 px down"
    _report_alignment({"alignment": {"shift_px": [0.25, -0.75], "val_pixel_error": 0.074, "val_pixel_error_shifted": 0.07}},
                      lines.append)
    assert "shifted 0.25 px down and 0.75 px left," in lines[1]


def test_many_classes_count_every_shifts_errors_as_shifting_every_map_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only pixels near a class edge are shifted for K > 2 (33 times faster on a 1024 x 1024 image): the counts
    must not change (up to rounding: the mix is summed in another order), and whole maps are never shifted."""
    from unetkit import alignment
    from unetkit.alignment import _block_sums, _shift_axis

    torch.manual_seed(3)
    for classes, height, width in ((3, 70, 45), (5, 33, 80)):
        logits = torch.nn.functional.avg_pool2d(torch.randn(1, classes, height, width) * 6, 5, 1, 2)[0]
        probs = logits.softmax(0)
        truth = probs.argmax(0).roll(1, 0)  # labels half a region off: shifts matter
        search = ShiftSearch()
        with monkeypatch.context() as patched:
            patched.setattr(alignment, "_shift_axis", lambda *args: pytest.fail("shifted whole maps"))
            search.add(probs, truth)
        for index, (dy, dx) in enumerate(search.shifts):
            wrong = _shift_axis(_shift_axis(probs, dy, 1), dx, 2).argmax(0) != truth
            assert abs(search.errors[index] - float(wrong.sum())) <= 2
            assert (search.block_errors[0][index] - _block_sums(wrong)).abs().sum() <= 2
        assert search.best()["best_shift_px"] == [1.0, 0.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_the_shift_search_takes_probabilities_of_any_float_type(dtype: torch.dtype) -> None:
    """Review: the edge-pixel search mixed float32 weights with the probabilities' type and raised for fp16/bf16."""
    from unetkit.alignment import ShiftSearch

    truth = torch.zeros(16, 16, dtype=torch.long)
    truth[4:10, 4:10] = 1
    probability = truth.float() * 0.625 + 0.125  # 0.125 and 0.75: exact in every type, no mix of them ties at 0.5
    search, reference = ShiftSearch(), ShiftSearch()
    search.add(torch.stack([1 - probability, probability]).to(dtype), truth)
    reference.add(torch.stack([1 - probability, probability]), truth)
    assert torch.equal(search.errors, reference.errors)
