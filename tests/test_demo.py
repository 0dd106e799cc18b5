"""The demo writes what it promises: data, run, masks, pictures, and prints its figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetkit.demo import run_demo
from unetkit.errors import InputError


def test_synthetic_demo_writes_pictures_and_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNETKIT_DATA", raising=False)
    lines: list[str] = []
    summary = run_demo(tmp_path / "demo", budget_s=8, progress=False, say=lines.append)
    out = tmp_path / "demo"
    assert summary["images"] == 6
    assert 0 <= summary["pixel_error"] <= 1 and 0 <= summary["membrane_dice"] <= 1
    assert len(list((out / "panels").glob("*.png"))) == 6
    assert len(list((out / "predictions").glob("*.png"))) == 6
    assert (out / "curves.png").is_file() and (out / "run" / "model.safetensors").is_file()
    assert any("membrane Dice" in line for line in lines)
    # a second demo into the same folder replaces the first
    run_demo(out, budget_s=4, progress=False, say=lambda _: None)


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(InputError, match="not an earlier demo"):
        run_demo(tmp_path, budget_s=1, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_a_wrong_isbi_folder_names_what_gave_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`UNETKIT_DATA=/nonexistent unetkit demo` said "--data must point to the ISBI 2012 folder", a flag the user
    did not give (audit)."""
    monkeypatch.setenv("UNETKIT_DATA", str(tmp_path / "nonexistent"))
    with pytest.raises(InputError, match="missing; UNETKIT_DATA must point to the ISBI 2012 folder"):
        run_demo(tmp_path / "out", progress=False, say=lambda _: None)
    with pytest.raises(InputError, match="missing; --data must point to the ISBI 2012 folder"):
        run_demo(tmp_path / "out", data=tmp_path / "elsewhere", progress=False, say=lambda _: None)
    assert not (tmp_path / "out").exists()


@pytest.mark.isbi
@pytest.mark.slow
def test_isbi_demo_records_the_sections_pixel_size(isbi: Path, tmp_path: Path) -> None:
    """ISBI's PNGs declare no pixel size; the demo's run knows its 4 nm, so predict --match-pixel-size works on it."""
    from unetkit.run import load_run

    summary = run_demo(tmp_path / "demo", data=isbi, budget_s=8, progress=False, say=lambda _: None)
    assert summary["images"] == 5 and 0 <= summary["pixel_error"] <= 1
    record = load_run(tmp_path / "demo" / "run", "cpu").record["pixel_size"]
    assert record["width_m"] == pytest.approx(4e-9) and record["given"]


def _fake_isbi(root: Path) -> Path:
    """A folder laid out as ISBI 2012 (the demo checks the files are there before writing anything)."""
    for kind in ("image", "label"):
        (root / "train" / kind).mkdir(parents=True)
        for i in range(30):
            (root / "train" / kind / f"{i}.png").write_bytes(b"")
    return root


def test_the_demo_writes_nothing_into_its_data_and_never_replaces_it(tmp_path: Path) -> None:
    """Review: `demo --data ISBI --out ISBI/train/image/x` trained and wrote its run and pictures among the
    ISBI files; train, predict and export refuse such an --out."""
    isbi = _fake_isbi(tmp_path / "isbi")
    inside = isbi / "train" / "image" / "x"
    with pytest.raises(InputError, match="is inside the input folder"):
        run_demo(inside, data=isbi, budget_s=1, progress=False, say=lambda _: None)
    assert not inside.exists()
    earlier = tmp_path / "demo"  # an earlier demo's folder, replaced whole by the next demo, holding the data
    (earlier / "demo.txt").parent.mkdir()
    (earlier / "demo.txt").write_text("written by `unetkit demo`")
    moved = _fake_isbi(earlier / "isbi")
    with pytest.raises(InputError, match="is inside --out .*, which the demo replaces"):
        run_demo(earlier, data=moved, budget_s=1, progress=False, say=lambda _: None)
    assert (moved / "train" / "image" / "29.png").is_file()
