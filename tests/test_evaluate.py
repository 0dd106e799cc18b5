"""`unetkit evaluate`: PNG folders and TIFF stacks, challenge scores for boundary labellings, unmatched files named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image
from conftest import write_png

from unetkit.cli import main


def cells(merge: bool = False) -> np.ndarray:
    """A 20 x 20 ISBI-style label: four cells (255) separated by one-pixel membranes (0)."""
    label = np.full((20, 20), 255, dtype=np.uint8)
    label[10, :] = 0
    if not merge:
        label[:, 10] = 0
    return label


def test_identical_masks_score_perfectly_and_a_merge_shows_as_merge_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for i in range(2):
        write_png(tmp_path / "truth" / f"{i}.png", cells())
        write_png(tmp_path / "same" / f"{i}.png", cells())
        write_png(tmp_path / "merged" / f"{i}.png", cells(merge=True))
    assert main(["evaluate", "--pred", str(tmp_path / "same"), "--labels", str(tmp_path / "truth"), "--json", str(tmp_path / "a.json")]) == 0
    same = json.loads((tmp_path / "a.json").read_text())["mean"]
    assert same["pixel_error"] == 0 and same["rand_error"] == pytest.approx(0) and same["info_error"] == pytest.approx(0)
    assert main(["evaluate", "--pred", str(tmp_path / "merged"), "--labels", str(tmp_path / "truth"), "--json", str(tmp_path / "b.json")]) == 0
    merged = json.loads((tmp_path / "b.json").read_text())["mean"]
    assert merged["rand_merge"] > 0.3 and merged["rand_split"] == pytest.approx(0)
    assert merged["vi_merge"] > 0.5 and merged["vi_split"] == pytest.approx(0)
    assert "rand_error" in capsys.readouterr().out


def test_stacks_are_evaluated_page_by_page(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tifffile.imwrite(tmp_path / "truth.tif", np.stack([cells(), cells()]), photometric="minisblack")
    (tmp_path / "out").mkdir()
    tifffile.imwrite(tmp_path / "out" / "pred.tif", np.stack([cells(), cells(merge=True)]), photometric="minisblack")
    # the folder predict wrote for the stack pairs its one mask with the true stack, as the file itself does
    assert main(["evaluate", "--pred", str(tmp_path / "out"), "--labels", str(tmp_path / "truth.tif"), "--json",
                 str(tmp_path / "folder.json")]) == 0
    (tmp_path / "out" / "pred.tif").rename(tmp_path / "pred.tif")
    assert main(["evaluate", "--pred", str(tmp_path / "pred.tif"), "--labels", str(tmp_path / "truth.tif"), "--json", str(tmp_path / "s.json")]) == 0
    per_image = json.loads((tmp_path / "s.json").read_text())["per_image"]
    assert json.loads((tmp_path / "folder.json").read_text())["per_image"] == per_image
    assert len(per_image) == 2
    rand = [s["rand_error"] for s in per_image.values()]
    assert rand[0] == pytest.approx(0) and rand[1] > 0.2


def test_an_unmatched_prediction_is_named_and_unpredicted_true_masks_are_left_out(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_png(tmp_path / "truth" / "0.png", cells())
    write_png(tmp_path / "pred" / "0.png", cells())
    write_png(tmp_path / "pred" / "7.png", cells())
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err
    assert "7.png" in err and "no true mask in" in err and "these predictions out" in err  # not training's "images"
    write_png(tmp_path / "truth" / "7.png", cells())
    write_png(tmp_path / "truth" / "9.png", cells(merge=True))  # a true mask whose image was not predicted
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "s.json")]) == 0  # a subset is scored: the held-out images of a folder
    assert "not scored: 1 true mask without a prediction (9.png)" in capsys.readouterr().out
    scores = json.loads((tmp_path / "s.json").read_text())
    assert sorted(scores["per_image"]) == ["0", "7"] and scores["unscored"] == ["9.png"]
    assert scores["mean"]["rand_error"] == pytest.approx(0)  # 9's merged cells did not count
    (tmp_path / "truth" / "9.png").unlink()
    write_png(tmp_path / "pred" / "7.png", cells()[:-2])
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth")]) == 2
    assert "a prediction must have the size of its true mask" in capsys.readouterr().err
    assert main(["evaluate", "--pred", str(tmp_path / "truth"), "--labels", str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err  # was training's advice: "put the masks in a folder of their own (DATA/label)"
    assert "given as both the predictions and the true masks" in err and "DATA/label" not in err


def test_predictions_named_with_a_mask_suffix_pair_with_their_true_masks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Another tool's t0_mask.png / t1_seg.png against true t0.png / t1_label.png: either side may carry a suffix.
    Cellpose's t2_cp_masks.png was read as t2_cp (less _masks) and paired with nothing (audit)."""
    write_png(tmp_path / "truth" / "t0.png", cells())
    write_png(tmp_path / "truth" / "t1_label.png", cells())
    write_png(tmp_path / "truth" / "t2.png", cells())
    write_png(tmp_path / "pred" / "t0_mask.png", cells())
    write_png(tmp_path / "pred" / "t1_seg.png", cells(merge=True))
    write_png(tmp_path / "pred" / "t2_cp_masks.png", cells(merge=True))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "s.json")]) == 0
    per_image = json.loads((tmp_path / "s.json").read_text())["per_image"]
    assert len(per_image) == 3
    merged = sorted(name for name, s in per_image.items() if round(s["rand_merge"], 3) > 0)
    assert len(merged) == 2 and all(name.startswith(("t1", "t2")) for name in merged)  # t1 and t2 merged, t0 exact
    # two predictions that would both claim t0 pair with nothing: the first is named, not one picked at random
    write_png(tmp_path / "pred" / "t0_seg.png", cells())
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth")]) == 2
    assert "t0_" in capsys.readouterr().err


def test_probability_maps_are_scored_by_threshold_sweep_and_by_watershed(tmp_path: Path) -> None:
    truth = np.full((30, 61), 255, dtype=np.uint8)
    truth[:, 30] = 0
    boundary = np.where(truth == 255, 0.05, 0.95).astype(np.float32)
    boundary[14:17, 30] = 0.45  # a faint stretch of membrane
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "a_prob.tif",
                     np.stack([boundary, 1 - boundary]), photometric="minisblack")
    write_png(tmp_path / "pred" / "a.png", (boundary < 0.5).astype(np.uint8) * 255)  # the mask beside it is ignored
    write_png(tmp_path / "truth" / "a.png", truth)
    for instances in ("threshold", "watershed"):
        out = tmp_path / f"{instances}.json"
        assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                     "--instances", instances, "--json", str(out)]) == 0
        mean = json.loads(out.read_text())["mean"]
        assert mean["rand_error"] == pytest.approx(0, abs=1e-9), instances
    write_png(tmp_path / "truth2" / "b.png", truth)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth2"), "--instances", "watershed"]) == 2


def test_the_threshold_sweep_scores_the_set_at_one_threshold_not_each_image_at_its_own(tmp_path: Path) -> None:
    """Each image's own best threshold knows its labels: two images that need thresholds 0.4 and 0.8 both scored 0,
    where any one threshold for the pair gets one of them wrong."""
    truth = np.full((30, 61), 255, dtype=np.uint8)
    truth[:, 30] = 0
    (tmp_path / "pred").mkdir()
    # interior probability in the cells and on the membrane: a is right at thresholds 0.4-0.5, b at 0.8-0.9
    for name, cell, membrane in (("a", 0.55, 0.35), ("b", 0.95, 0.75)):
        boundary = np.where(truth == 255, 1 - cell, 1 - membrane).astype(np.float32)
        tifffile.imwrite(tmp_path / "pred" / f"{name}_prob.tif", np.stack([boundary, 1 - boundary]), photometric="minisblack")
        write_png(tmp_path / "truth" / f"{name}.png", truth)
    out = tmp_path / "t.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--instances", "threshold", "--json", str(out)]) == 0
    scores = json.loads(out.read_text())["per_image"]
    assert scores["a"]["v_rand_threshold"] == scores["b"]["v_rand_threshold"]
    errors = sorted(s["rand_error"] for s in scores.values())
    assert errors[0] == pytest.approx(0, abs=1e-9) and errors[1] > 0.3  # one image right, the other merged or lost


def test_masks_are_scored_even_with_predict_prob_files_beside_them(tmp_path: Path) -> None:
    """`unetkit predict --prob` writes NAME_prob.tif next to NAME.png; plain evaluation scores the masks."""
    truth = np.full((20, 20), 255, dtype=np.uint8)
    truth[:, 10] = 0
    write_png(tmp_path / "pred" / "a.png", truth)
    tifffile.imwrite(tmp_path / "pred" / "a_prob.tif", np.zeros((2, 20, 20), np.float32), photometric="minisblack")
    write_png(tmp_path / "truth" / "a.png", truth)
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["mean"]["pixel_error"] == 0.0


def test_area_bias_tells_thicker_boundaries_from_thinner_ones(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Membranes drawn 3 px wide against 1-px labels: the membrane class (value 0) is over-segmented by the extra share."""
    thick, thin = cells(), cells()
    thick[9:12, :] = 0
    thick[:, 9:12] = 0
    thin[10, :] = 255  # one membrane missing: under-segmented
    write_png(tmp_path / "truth" / "0.png", cells())
    write_png(tmp_path / "truth" / "1.png", cells())
    write_png(tmp_path / "pred" / "0.png", thick)
    write_png(tmp_path / "pred" / "1.png", thin)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--json", str(tmp_path / "e.json")]) == 0
    scores = json.loads((tmp_path / "e.json").read_text())
    extra_thick = ((thick == 0).sum() - (cells() == 0).sum()) / thick.size
    extra_thin = ((thin == 0).sum() - (cells() == 0).sum()) / thin.size
    assert scores["per_image"]["0"]["area_bias"] == pytest.approx([extra_thick, -extra_thick])
    assert scores["per_image"]["1"]["area_bias"] == pytest.approx([extra_thin, -extra_thin])
    assert extra_thick > 0 > extra_thin
    assert scores["mean"]["area_bias"][0] == pytest.approx((extra_thick + extra_thin) / 2)
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header[:8] == ["image", "pixel_error", "dice[0]", "dice[255]", "iou[0]", "iou[255]", "bias[0]", "bias[255]"]


def test_predictions_in_another_encoding_are_refused_not_scored_as_extra_classes(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_png(tmp_path / "truth" / "0.png", cells())
    write_png(tmp_path / "ones" / "0.png", (cells() // 255).astype(np.uint8))  # 0/1 against 0/255
    assert main(["evaluate", "--pred", str(tmp_path / "ones"), "--labels", str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err
    assert "ones/0.png: predictions hold values [1] and the true masks [255]" in err and err.count("\n") == 1


@pytest.mark.parametrize("pred_values, true_values", [((0, 1), (1, 2)), ((-1, 1), (0, 1)), ((1, 2), (0, 255))])
def test_encodings_that_share_a_value_are_refused_too(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                      pred_values: tuple[int, ...], true_values: tuple[int, ...]) -> None:
    """Review: 0/1 predictions against 1/2 (ilastik's) truths scored pixel error 0.875 for 0.125, as three classes:
    the two shared the value 1, and only encodings sharing no object value were refused."""
    rows = np.repeat(np.arange(len(true_values)), 16 // len(true_values) + 1)[:16]
    truth = np.repeat(np.asarray(true_values)[rows][:, None], 16, axis=1).astype(np.int16)
    pred = np.repeat(np.asarray(pred_values)[rows][:, None], 16, axis=1).astype(np.int16)
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    (tmp_path / "t").mkdir(), (tmp_path / "p").mkdir()
    tifffile.imwrite(tmp_path / "t" / "0.tif", truth)
    tifffile.imwrite(tmp_path / "p" / "0.tif", pred)
    assert main(["evaluate", "--pred", str(tmp_path / "p"), "--labels", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "p/0.tif: " in err and "encoding" in err and err.count("\n") == 1, err


def test_one_prediction_in_another_encoding_among_right_ones_is_refused(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    """Review: with a.png 0/255 and b.png 0/1 among the predictions, the set's values were compared as a whole
    (0/1/255 against 0/255 share 255), and b scored Dice 0 as a third class."""
    for name in ("a", "b"):
        write_png(tmp_path / "truth" / f"{name}.png", cells())
    write_png(tmp_path / "pred" / "a.png", cells())
    write_png(tmp_path / "pred" / "b.png", (cells() // 255).astype(np.uint8))
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth")]) == 2
    err = capsys.readouterr().err
    assert "pred/b.png: holds 0/1 where the true masks hold 0/255: two encodings" in err, err


def test_a_grey_number_for_a_colour_mask_value_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Review: `--ignore-value 255` on RGB masks meant white and was taken as the packed code of blue (0,0,255):
    the blue class became unlabelled without a word, in check, train and evaluate."""
    from unetkit.data.labels import LabelEncoding

    mask = np.zeros((16, 16, 3), np.uint8)
    mask[:8, :, 2] = 255  # blue
    mask[8:12] = 255  # white: unlabelled
    mask[12:, :, 0] = 255  # red
    for folder in ("truth", "pred", "image"):
        write_png(tmp_path / folder / "0.png", mask if folder != "image" else mask[..., 0])
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--ignore-value", "255"]) == 2
    assert "--ignore-value 255: " in capsys.readouterr().err
    assert main(["check", "--images", str(tmp_path / "image"), "--labels", str(tmp_path / "truth"),
                 "--ignore-value", "255"]) == 2
    err = capsys.readouterr().err
    assert "are colour masks; give the colour as R,G,B (white is 255,255,255)" in err and err.count("\n") == 1
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--ignore-value", "255,255,255"]) == 0
    loaded = LabelEncoding.from_json({"values": [255, 16711680], "dtype": "uint8", "colour": True,
                                      "ignore_value": 16777215})
    assert str(loaded.ignore_value) == "255,255,255"  # a run's colour prints as given, not as 16777215


def test_classes_numbered_from_0_against_truths_from_1_are_refused_when_the_pixels_match_shifted(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Review: a perfect prediction in 0..K-1 against truths in 1..K scored pixel error 1.0 as four classes."""
    truth = (np.ones((32, 32), np.uint8) + (np.arange(32) // 11)[None, :]).astype(np.uint8)  # 1, 2, 3
    tifffile.imwrite(tmp_path / "truth.tif", truth)
    tifffile.imwrite(tmp_path / "pred.tif", truth - 1)
    assert main(["evaluate", "--pred", str(tmp_path / "pred.tif"), "--labels", str(tmp_path / "truth.tif")]) == 2
    assert "hold 0/1/2 and the true masks 1/2/3, which they match plus 1: two encodings" in capsys.readouterr().err


def test_a_class_the_truths_lack_is_a_false_positive_not_another_encoding(tmp_path: Path) -> None:
    """Review of the encoding checks: a three-class run's prediction holding class 2 where the test truths hold
    only 0 and 1, and a 1/2/3 truth with a prediction that missed 3 and marked 0, are scores, not refusals."""
    truth = np.zeros((32, 32), np.uint8)
    truth[8:20, 8:20] = 1
    pred = truth.copy()
    pred[25:28, 25:28] = 2
    many = np.ones((32, 32), np.uint8) + (np.arange(32) // 11)[None, :].astype(np.uint8)  # 1, 2, 3
    missed = many.copy()
    missed[missed == 3] = 2
    missed[:2] = 0
    for name, (p, t) in {"a": (pred, truth), "b": (missed, many)}.items():
        tifffile.imwrite(tmp_path / f"{name}_truth.tif", t)
        tifffile.imwrite(tmp_path / f"{name}_pred.tif", p)
        assert main(["evaluate", "--pred", str(tmp_path / f"{name}_pred.tif"), "--labels",
                     str(tmp_path / f"{name}_truth.tif"), "--json", str(tmp_path / f"{name}.json")]) == 0


def test_an_empty_field_predicted_empty_scores_perfectly_and_false_objects_count(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    empty = np.zeros((16, 16), dtype=np.uint8)
    write_png(tmp_path / "truth" / "0.png", empty)
    write_png(tmp_path / "pred" / "0.png", empty)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "a.json")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["mean"]["pixel_error"] == 0.0
    spotted = empty.copy()
    spotted[:4, :4] = 255  # a false object on an empty field: a value the truth lacks, but the same encoding
    write_png(tmp_path / "spotted" / "0.png", spotted)
    assert main(["evaluate", "--pred", str(tmp_path / "spotted"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "b.json")]) == 0
    assert json.loads((tmp_path / "b.json").read_text())["mean"]["pixel_error"] == pytest.approx(16 / 256)
    write_png(tmp_path / "full" / "0.png", np.full((16, 16), 255, dtype=np.uint8))  # all wrong, but one encoding
    assert main(["evaluate", "--pred", str(tmp_path / "full"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["mean"]["pixel_error"] == 1.0


def test_a_class_missed_and_another_predicted_is_scored_not_taken_for_another_encoding(tmp_path: Path) -> None:
    truth = np.zeros((12, 12), dtype=np.uint8)
    truth[:4], truth[4:8] = 1, 2
    pred = truth.copy()
    pred[4:8] = 3  # a four-class run that missed class 2 and predicted class 3 there
    write_png(tmp_path / "truth" / "0.png", truth)
    write_png(tmp_path / "pred" / "0.png", pred)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["classes"] == [0, 1, 2, 3] and scores["mean"]["pixel_error"] == pytest.approx(48 / 144)


def test_json_output_never_overwrites_a_mask_and_is_checked_before_scoring(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_png(tmp_path / "truth" / "0.png", cells())
    write_png(tmp_path / "pred" / "0.png", cells())
    mask = (tmp_path / "truth" / "0.png").read_bytes()
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--json"]
    assert main([*args, str(tmp_path / "truth" / "0.png")]) == 2
    assert (tmp_path / "truth" / "0.png").read_bytes() == mask
    assert "ending in .json" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main([*args, str(tmp_path / "afile" / "s.json")]) == 2
    captured = capsys.readouterr()
    assert "cannot be written" in captured.err and "not a folder" in captured.err
    assert captured.out == ""  # refused before any scoring was printed
    (tmp_path / "run.json").write_text('{"config": {}}')  # a run's own record: never replaced by scores
    assert main([*args, str(tmp_path / "run.json")]) == 2
    assert json.loads((tmp_path / "run.json").read_text()) == {"config": {}}
    assert main([*args, str(tmp_path / "scores.json")]) == 0
    assert main([*args, str(tmp_path / "scores.json")]) == 0  # its own scores: written again


def test_instances_take_stack_files_skip_masks_without_regions_and_refuse_nan(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    truth = np.full((2, 20, 21), 255, dtype=np.uint8)
    truth[:, :, 10] = 0
    truth[1] = 0  # the second page is all membrane: no region to score
    boundary = np.where(truth == 255, 0.05, 0.95).astype(np.float32)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "pred" / "img.tif", (boundary < 0.5).astype(np.uint8) * 255)
    tifffile.imwrite(tmp_path / "pred" / "img_prob.tif", np.stack([boundary, 1 - boundary], axis=1).reshape(4, 20, 21),
                     photometric="minisblack")
    tifffile.imwrite(tmp_path / "lab.tif", truth)
    args = ["evaluate", "--pred", str(tmp_path / "pred" / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "--instances"]
    assert main([*args, "watershed", "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert list(scores["per_image"]) == ["img[0]"] and scores["skipped"] == ["img[1]"]
    assert "not scored" in capsys.readouterr().out
    poisoned = np.stack([boundary, 1 - boundary], axis=1).reshape(4, 20, 21)
    poisoned[0, 0, 0] = np.nan
    tifffile.imwrite(tmp_path / "pred" / "img_prob.tif", poisoned, photometric="minisblack")
    assert main([*args, "threshold"]) == 2
    assert "NaN" in capsys.readouterr().err


def test_palette_masks_are_scored_when_their_palettes_differ_only_in_unused_entries(tmp_path: Path) -> None:
    """unetkit writes the run's short palette; the true masks may carry 256 entries for the same colours."""
    from PIL import Image

    def save(path: Path, indices: np.ndarray, palette: list[int]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        mask = Image.frombytes("P", indices.shape[::-1], indices.astype(np.uint8).tobytes())
        mask.putpalette(palette)
        mask.save(path)

    used = [0, 0, 0, 255, 0, 0]
    truth = (cells() > 0).astype(np.uint8)
    save(tmp_path / "truth" / "0.png", truth, used + [9, 9, 9] * 254)
    save(tmp_path / "pred" / "0.png", truth, used)
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--json", str(tmp_path / "p.json")]) == 0
    assert json.loads((tmp_path / "p.json").read_text())["mean"]["pixel_error"] == 0
    save(tmp_path / "other" / "0.png", truth, [0, 0, 0, 0, 0, 255])  # index 1 drawn in another colour: another class
    assert main(["evaluate", "--pred", str(tmp_path / "other"), "--labels", str(tmp_path / "truth")]) == 2


def test_a_boundary_value_asked_for_that_is_no_class_is_an_error_not_scores_left_out(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_png(tmp_path / "pred" / "a.png", cells())
    write_png(tmp_path / "truth" / "a.png", cells())
    args = ["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--json"]
    assert main([*args, str(tmp_path / "default.json")]) == 0  # 0 is a class here: challenge scores
    assert "rand_error" in json.loads((tmp_path / "default.json").read_text())["mean"]
    assert main([*args, str(tmp_path / "b7.json"), "--boundary-value", "7"]) == 2
    err = capsys.readouterr().err
    assert "--boundary-value 7: the challenge scores need two classes, one of them this value" in err
    assert not (tmp_path / "b7.json").exists()


def test_scores_are_never_written_among_the_true_masks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_png(tmp_path / "truth" / "0.png", cells())
    write_png(tmp_path / "pred" / "0.png", cells())
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "truth" / "s.json")]) == 2
    assert "--json" in capsys.readouterr().err and not (tmp_path / "truth" / "s.json").exists()
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"),
                 "--json", str(tmp_path / "pred" / "s.json")]) == 0  # beside the predictions: unetkit's own folder


def test_objects_of_predict_instances_are_scored_against_instance_masks(tmp_path: Path, capsys) -> None:
    """Instance truth scored as classes printed one Dice column per id and no warning (audit); --objects pairs
    NAME_cells.tif with it and counts matched objects."""
    import json

    import tifffile

    from unetkit.cli import main

    truth = np.zeros((12, 12), np.uint16)
    truth[1:5, 1:5], truth[1:5, 5:9], truth[7:11, 7:11] = 1, 2, 3
    fused = np.zeros_like(truth)
    fused[1:5, 1:9], fused[7:11, 7:11] = 1, 2
    (tmp_path / "truth").mkdir()
    (tmp_path / "pred").mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "truth" / f"{name}.tif", truth * (1 + "abc".index(name)))  # ids differ by image
    tifffile.imwrite(tmp_path / "pred" / "a_cells.tif", fused)
    tifffile.imwrite(tmp_path / "pred" / "b_cells.tif", truth)
    tifffile.imwrite(tmp_path / "pred" / "c_cells.tif", truth)
    tifffile.imwrite(tmp_path / "pred" / "a.tif", (fused > 0).astype(np.uint8))  # the mask beside: not the objects
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--labels", str(tmp_path / "truth"), "--objects",
                 "--json", str(tmp_path / "s.json")]) == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["per_image"]["a"]["matched"] == 1 and scores["per_image"]["b"]["f1"] == 1.0
    assert (scores["mean"]["true_objects"], scores["mean"]["matched"]) == (9, 7)
    assert "ap_50_95" in capsys.readouterr().out
    tifffile.imwrite(tmp_path / "truth" / "d.tif", truth)  # no prediction for it: listed, as plain evaluate lists
    (tmp_path / "binary").mkdir()
    tifffile.imwrite(tmp_path / "binary" / "b.tif", (truth > 0).astype(np.uint8) * 255)  # a mask, not ids: its parts
    assert main(["evaluate", "--pred", str(tmp_path / "binary"), "--labels", str(tmp_path / "truth"), "--objects"]) == 0
    out = capsys.readouterr().out
    assert "not scored: 3 true masks without a prediction (a.tif, c.tif, d.tif)" in out, out
    assert out.splitlines()[1].split()[1:4] == ["3", "2", "1"]  # b: the touching pair is one part, the third matched
    assert main(["evaluate", "--pred", str(tmp_path / "truth"), "--labels", str(tmp_path / "truth"), "--objects",
                 "--boundary-value", "0"]) == 2
    assert "--objects compares objects with objects; drop --boundary-value" in capsys.readouterr().err
    (tmp_path / "ids").mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(tmp_path / "ids" / f"{name}.tif", tifffile.imread(tmp_path / "truth" / f"{name}.tif"))
    assert main(["evaluate", "--pred", str(tmp_path / "ids"), "--labels", str(tmp_path / "truth")]) == 0
    assert "warning: the true masks look like instance label maps" in capsys.readouterr().out
    organs = tmp_path / "organs"  # the same 3 classes of one region each in every mask: classes, as check judges
    organs.mkdir()
    for name in ("a", "b", "c"):
        tifffile.imwrite(organs / f"{name}.tif", truth)
    shutil.copytree(organs, tmp_path / "organs2")
    assert main(["evaluate", "--pred", str(organs), "--labels", str(tmp_path / "organs2")]) == 0
    assert "instance label maps" not in capsys.readouterr().out


def test_region_scores_of_objects_on_a_background_point_to_object_scores(tmp_path: Path, capsys) -> None:
    """Rand and VI of nuclei on black counted two fused nuclei as one region in both masks: a perfect 0 for a
    model that separates nothing (audit). The table says so and names --objects; membranes get no such note."""
    from unetkit.cli import main

    nuclei = np.zeros((16, 16), np.uint8)
    nuclei[2:6, 2:10] = 255  # two touching nuclei, drawn as one foreground region
    membranes = 255 - nuclei  # boundary 0 on a minority of the pixels
    for name, mask in (("nuclei", nuclei), ("membranes", membranes)):
        for side in ("pred", "truth"):
            write_png(tmp_path / name / side / "a.png", mask)
        assert main(["evaluate", "--pred", str(tmp_path / name / "pred"), "--labels", str(tmp_path / name / "truth")]) == 0
        out = capsys.readouterr().out
        assert ("score objects with --objects" in out) == (name == "nuclei"), out


def test_two_valued_true_masks_are_scored_as_their_connected_objects(tmp_path: Path) -> None:
    """A 0/255 true mask (nuclei on background, or ISBI's cells 255 on membranes 0) counted as one object with
    id 255, so `evaluate --objects` gave F1 0 for a perfect prediction, without a word (audit)."""
    import tifffile

    from unetkit.evaluate import evaluate_objects

    ids = np.zeros((12, 12), np.uint16)
    ids[1:5, 1:5], ids[1:5, 6:10], ids[7:11, 7:11] = 1, 2, 3
    for folder in ("truth", "pred"):
        (tmp_path / folder).mkdir()
    tifffile.imwrite(tmp_path / "truth" / "a.tif", (ids > 0).astype(np.uint8) * 255)
    tifffile.imwrite(tmp_path / "truth" / "b.tif", np.where(ids > 0, 7, 3).astype(np.uint8))  # no 0: 3 is background
    tifffile.imwrite(tmp_path / "pred" / "a_cells.tif", ids)
    tifffile.imwrite(tmp_path / "pred" / "b_cells.tif", ids)
    scores = evaluate_objects(tmp_path / "pred", tmp_path / "truth")
    for name in ("a", "b"):
        assert (scores["per_image"][name]["true_objects"], scores["per_image"][name]["f1"]) == (3, 1.0), name


def test_a_stacks_objects_are_its_cells_file_given_as_the_mask_or_its_folder(tmp_path: Path) -> None:
    """`evaluate --pred out/volume.tif --labels truth.tif --objects` scored the mask's connected parts, not
    volume_cells.tif beside it, and `--pred out` was refused as having no mask named volume.* (audit)."""
    import tifffile

    from unetkit.evaluate import evaluate_objects

    ids = np.zeros((2, 12, 12), np.uint16)
    ids[:, 1:5, 1:5], ids[:, 1:5, 5:9], ids[:, 7:11, 7:11] = 1, 2, 3  # two touching objects: one part in a mask
    (tmp_path / "out").mkdir()
    tifffile.imwrite(tmp_path / "truth.tif", ids, photometric="minisblack")
    tifffile.imwrite(tmp_path / "out" / "volume.tif", (ids > 0).astype(np.uint8) * 255, photometric="minisblack")
    tifffile.imwrite(tmp_path / "out" / "volume_cells.tif", ids, photometric="minisblack")
    for pred in (tmp_path / "out" / "volume.tif", tmp_path / "out"):
        scores = evaluate_objects(pred, tmp_path / "truth.tif")
        assert (scores["mean"]["true_objects"], scores["mean"]["matched"]) == (6, 6), pred
    cells = np.zeros((1, 12, 12), np.uint16)
    cells[0, :, :6], cells[0, :, 6:] = 5, 6  # two watershed cells tile the page: neither is a background
    tifffile.imwrite(tmp_path / "out" / "volume_cells.tif", cells, photometric="minisblack")
    tifffile.imwrite(tmp_path / "truth.tif", cells, photometric="minisblack")
    assert evaluate_objects(tmp_path / "out", tmp_path / "truth.tif")["mean"]["predicted_objects"] == 2


def _membrane_grid() -> np.ndarray:
    """0/255 cells on 2-pixel membranes: a 4 x 4 grid of cells in 64 x 64."""
    truth = np.full((64, 64), 255, np.uint8)
    for line in range(0, 64, 16):
        truth[line : line + 2, :] = 0
        truth[:, line : line + 2] = 0
    return truth


def test_cells_that_tile_the_page_are_scored_without_their_mask_s_membranes(tmp_path: Path) -> None:
    """Review: predict --instances grows cells over the membranes, the true cells of a 0/255 mask are the parts
    between them: an exact segmentation scored F1 0.70 with --objects."""
    from scipy import ndimage
    from skimage.segmentation import expand_labels

    from unetkit.evaluate import evaluate_objects

    truth = _membrane_grid()
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    Image.fromarray(truth).save(tmp_path / "truth" / "a.png")
    Image.fromarray(truth).save(tmp_path / "pred" / "a.png")  # the mask predict writes beside the cells
    cells = expand_labels(ndimage.label(truth > 0)[0], distance=8).astype(np.uint16)
    assert (cells > 0).all()
    tifffile.imwrite(tmp_path / "pred" / "a_cells.tif", cells)
    scores = evaluate_objects(tmp_path / "pred", tmp_path / "truth")
    assert scores["mean"]["f1"] == 1.0 and scores["mean"]["matched"] == 16
    (tmp_path / "pred" / "a.png").unlink()  # no mask beside: compared as they are, each cell larger than its truth
    assert evaluate_objects(tmp_path / "pred", tmp_path / "truth")["mean"]["matched_iou"] < 0.9


def test_instances_scores_list_the_true_masks_without_a_prediction(tmp_path: Path) -> None:
    """Review: with --instances, true masks without a NAME_prob.tif vanished without a word (plain scores list them)."""
    from unetkit.evaluate import evaluate_probabilities, format_challenge_table

    truth = _membrane_grid()
    (tmp_path / "pred").mkdir()
    (tmp_path / "truth").mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(truth).save(tmp_path / "truth" / f"{name}.png")
    interior = (truth > 0).astype(np.float32)
    tifffile.imwrite(tmp_path / "pred" / "a_prob.tif", np.stack([1 - interior, interior]), photometric="minisblack")
    for mode in ("threshold", "watershed"):
        scores = evaluate_probabilities(tmp_path / "pred", tmp_path / "truth", mode)
        assert list(scores["per_image"]) == ["a"] and scores["unscored"] == ["b.png", "c.png"]
        assert format_challenge_table(scores).endswith("not scored: 2 true masks without a prediction (b.png, c.png)")


def test_a_folder_of_one_stack_s_outputs_is_scored_against_the_true_stack(tmp_path: Path) -> None:
    """Review: plain scores refused the folder predict wrote for one stack against the true stack file ("give both
    as folders or both as stacks"), which --objects and --instances took."""
    from unetkit.evaluate import evaluate_paths

    truth = np.stack([_membrane_grid()] * 3)
    (tmp_path / "pred").mkdir()
    tifffile.imwrite(tmp_path / "truth.tif", truth, photometric="minisblack")
    tifffile.imwrite(tmp_path / "pred" / "volume.tif", truth, photometric="minisblack")
    tifffile.imwrite(tmp_path / "pred" / "volume_cells.tif", np.ones((3, 64, 64), np.uint16), photometric="minisblack")
    scores = evaluate_paths(tmp_path / "pred", tmp_path / "truth.tif")
    assert len(scores["per_image"]) == 3 and scores["mean"]["pixel_error"] == 0.0
