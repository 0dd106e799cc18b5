"""Sliding-window prediction: windows cover the image, blending is exact for an identity model, TTA undoes itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from unetkit.models import build_model
from unetkit.predict import gaussian_window, predict_probabilities, window_spans


class TwoClassIdentity(torch.nn.Module):
    """Logits whose softmax gives back the (0..1) input as the class-1 probability: an oracle for tiling."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = x[:, :1].clamp(1e-6, 1 - 1e-6)
        return torch.cat([torch.zeros_like(p), torch.log(p / (1 - p))], dim=1)


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 3000), tile=st.integers(1, 600), overlap=st.floats(0.0, 0.9), depth=st.integers(0, 6))
def test_windows_cover_every_pixel_on_the_grid(length: int, tile: int, overlap: float, depth: int) -> None:
    align = 2**depth
    spans = window_spans(length, tile, overlap, align)
    assert spans[0][0] == 0 and spans[-1][1] == length
    assert all(start % align == 0 and start < stop for start, stop in spans)
    assert all(next_start <= stop for (_, stop), (next_start, _) in zip(spans, spans[1:]))  # no gaps
    assert all(b[0] > a[0] for a, b in zip(spans, spans[1:]))


def test_deep_network_with_a_small_tile_still_covers_the_image() -> None:
    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=5).eval()
    probs = predict_probabilities(model, torch.rand(1, 216, 216), tile=56)
    assert probs.shape == (2, 216, 216) and torch.isfinite(probs).all()


def test_classic_network_with_the_smallest_tile_predicts_a_larger_image() -> None:
    torch.manual_seed(0)
    model = build_model("unet-classic", base_width=2, depth=4).eval()
    probs = predict_probabilities(model, torch.rand(1, 40, 40), tile=188)
    assert probs.shape == (2, 40, 40)


@pytest.mark.parametrize("shape", [(1, 50, 70), (1, 130, 97), (1, 300, 300)])
@pytest.mark.parametrize("tta", [False, True])
def test_identity_model_gives_its_input_back_through_tiling(shape: tuple[int, int, int], tta: bool) -> None:
    image = torch.rand(shape)
    probs = predict_probabilities(TwoClassIdentity(), image, tile=64, overlap=0.3, tta=tta)
    assert probs.shape == (2, *shape[1:])
    assert torch.allclose(probs[1], image[0].clamp(1e-6, 1 - 1e-6), atol=1e-5)
    assert torch.allclose(probs.sum(0), torch.ones(shape[1:]), atol=1e-5)


def test_tiled_prediction_agrees_with_a_whole_image_pass() -> None:
    torch.manual_seed(0)
    model = build_model("unet", base_width=4, depth=2).eval()
    image = torch.rand(1, 120, 90)
    whole = predict_probabilities(model, image, tile=512)
    tiled = predict_probabilities(model, image, tile=48, overlap=0.5)
    agreement = (whole.argmax(0) == tiled.argmax(0)).float().mean()
    assert agreement > 0.95  # an untrained net's borders differ a little; a trained one agrees more (issue 3)


def test_gaussian_window_peaks_in_the_centre_and_is_positive() -> None:
    window = gaussian_window(9, 12)
    assert window.shape == (9, 12)
    assert window.min() > 0
    assert window[4, 5:7].max() == window.max()
    assert window[0, 0] < window[4, 6]


# --- overlap-tile (valid networks) ------------------------------------------------------------------------

from unetkit.predict import mirrored_crop, overlap_tile_layout, predict_rows  # noqa: E402


def classic(width: int = 4, depth: int = 4, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("unet-classic", base_width=width, depth=depth).eval()


def one_valid_pass(model: torch.nn.Module, image: torch.Tensor, tile: int) -> torch.Tensor:
    """The reference: mirror-extend the whole image as overlap-tile does, run the network once, crop."""
    height, width = image.shape[-2:]
    extent = []
    for length in (height, width):
        tile_input = min(model.nearest_valid_input_size(tile), model.input_size_for_output(length))
        out, stride, count = overlap_tile_layout(length, model.valid_output_size(tile_input), 2**model.config.depth)
        extent.append((count - 1) * stride + out)
    m = model.margin
    extended = torch.from_numpy(mirrored_crop(image.numpy(), -m, extent[0] + m, -m, extent[1] + m))
    with torch.no_grad():
        return torch.softmax(model(extended[None]), 1)[0, :, :height, :width]


def test_overlap_tile_equals_one_valid_pass_over_the_mirror_extended_image() -> None:
    model = classic()
    image = torch.rand(1, 1000, 700)
    tiled = predict_probabilities(model, image, tile=572)
    assert tiled.shape == (2, 1000, 700)
    assert torch.allclose(tiled, one_valid_pass(model, image, 572), atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 37, 50), (1, 1, 1), (1, 200, 3), (2, 388, 389)])
def test_overlap_tile_handles_images_smaller_than_a_tile(shape: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    model = build_model("unet-classic", in_channels=shape[0], base_width=4, depth=3).eval()
    image = torch.rand(shape)
    probs = predict_probabilities(model, image, tile=572)
    assert probs.shape == (2, *shape[1:])
    assert torch.allclose(probs, one_valid_pass(model, image, 572), atol=1e-5)


def test_overlap_tile_stitches_without_seams_at_any_tile_size() -> None:
    model = classic(depth=3)
    image = torch.rand(1, 300, 260)
    small, large = predict_probabilities(model, image, tile=100), predict_probabilities(model, image, tile=500)
    assert torch.allclose(small, large, atol=1e-5)  # the tiling leaves no trace in the result


def test_rows_reach_the_sink_in_order_and_exactly_once() -> None:
    for model, tile in ((classic(depth=3), 124), (build_model("unet", base_width=4, depth=2), 64)):
        rows: list[tuple[int, int]] = []
        image = torch.rand(1, 333, 120)
        read = lambda t, b, l, r: torch.from_numpy(mirrored_crop(image.numpy(), t, b, l, r))  # noqa: E731
        predict_rows(model, read, 333, 120, lambda top, p: rows.append((top, p.shape[1])), tile=tile)
        assert len(rows) > 2  # several bands: memory is bounded by a band, not by the image
        assert rows[0][0] == 0 and sum(n for _, n in rows) == 333
        assert all(a + n == b for (a, n), (b, _) in zip(rows, rows[1:]))


def test_mirrored_crop_reflects_like_numpy() -> None:
    array = np.arange(5 * 7).reshape(5, 7)
    expected = np.pad(array, ((6, 9), (8, 3)), mode="reflect")
    assert np.array_equal(mirrored_crop(array, -6, 5 + 9, -8, 7 + 3, axes=(0, 1)), expected)


@pytest.fixture(scope="module")
def trained_unet(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, torch.Tensor]:
    """A small padded U-Net trained for a few seconds on synthetic EM images, and a held-out image."""
    from dataclasses import replace

    from unetkit.data.synthetic import make_em_dataset, save_pairs
    from unetkit.run import load_run
    from unetkit.train.recipes import recipe
    from unetkit.train.start import train

    root = tmp_path_factory.mktemp("em")
    images, labels = make_em_dataset(9, (192, 192), seed=3)
    image_dir, label_dir = save_pairs(root / "data", images[:8], labels[:8])
    config = replace(recipe("default"), base_width=8, depth=3, patch_size=96, budget_s=None, epochs=25, device="cpu")
    train(image_dir, label_dir, root / "run", config, progress=False, say=lambda _: None)
    run = load_run(root / "run")
    held_out = torch.from_numpy(run.normalization.apply(images[8]))
    return run.model, held_out


def test_sliding_window_agrees_with_a_whole_image_pass_for_a_trained_model(trained_unet) -> None:  # type: ignore[no-untyped-def]
    model, image = trained_unet
    whole = predict_probabilities(model, image, tile=1024)
    tiled = predict_probabilities(model, image, tile=96, overlap=0.5)
    agreement = float((whole.argmax(0) == tiled.argmax(0)).float().mean())
    assert agreement >= 0.999, agreement


from unetkit.predict import context_halo, default_window, mirrored_reader, pooling_grid, read_span  # noqa: E402
from unetkit.predict import predict_rows as _predict_rows  # noqa: E402


@pytest.mark.parametrize("height, width, tile", [(152, 132, 48), (150, 130, 48), (153, 131, 48), (150, 130, (48, 130)),
                                                (153, 131, (153, 32)), (152, 132, (32, 80))])
@pytest.mark.parametrize("tta", [False, True])
def test_exact_context_windows_without_overlap_equal_one_whole_image_pass(height: int, width: int, tile,
                                                                          tta: bool) -> None:
    """What `unetkit predict` does for large images: equal windows, a receptive-field halo, no blending.
    Odd sizes too: the whole pass pads at the ends, so its pooling grid is the windows' grid. With --tta too
    (review: each flip padded at its own end, so with less free memory, smaller windows, 30 pixels of a mask
    changed)."""
    torch.manual_seed(0)
    model = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=2).eval()
    image = torch.rand(1, height, width)
    whole = predict_probabilities(model, image, tile=1024, tta=tta)
    parts: list[torch.Tensor] = []
    _predict_rows(model, mirrored_reader(image), height, width, lambda top, probs: parts.append(probs),
                  tile=tile, overlap=0.0, halo=context_halo(model), tta=tta)
    assert len(parts) > 2 or tile[0] >= height  # several row bands, i.e. several windows (or column windows)
    assert torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)


def test_fcn_windows_start_on_its_stride_32_grid() -> None:
    assert pooling_grid(build_model("fcn8s", in_channels=1, num_classes=2, base_width=4)) == 32
    assert pooling_grid(build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=3)) == 8


@pytest.mark.parametrize("name", ["fcn8s", "fcn32s"])
def test_fcn_predicts_in_one_pass_or_in_windows_equal_to_it(name: str) -> None:
    """Review: an FCN had no context halo, so it always predicted in 512-px windows blended with Gaussian weights
    and 128 px of context (less than half its receptive field): rows where windows joined differed from a
    whole-image pass and from the exported network. It now plans windows as a padded U-Net does."""
    from unetkit.predict import prediction_windows

    torch.manual_seed(0)
    model = build_model(name, in_channels=1, num_classes=2, base_width=4).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # lively weights: BatchNorm and the upsampling far from identity
            parameter.normal_(0.0, 0.3)
    window, overlap, halo = prediction_windows(model, None, 1100, 300, 2, "cpu", None, 512)
    assert window == (1120, 320) and overlap == 0.0 and halo is not None and halo >= model.config.receptive_field // 2
    image = torch.rand(1, 300, 410)
    whole = predict_probabilities(model, image, tile=2048)
    parts: list[torch.Tensor] = []
    _predict_rows(model, mirrored_reader(image), 300, 410, lambda top, probs: parts.append(probs),
                  tile=(64, 96), overlap=0.0, halo=halo)
    assert len(parts) > 2 and torch.allclose(torch.cat(parts, dim=1), whole, atol=1e-5)


def test_the_default_window_is_one_pass_when_it_fits_and_the_cheapest_fitting_cut_when_not() -> None:
    model = build_model("unet", in_channels=1, num_classes=2, base_width=64, depth=4)
    assert default_window(model, None, 500, 300, available=64 << 30) == (512, 304)  # one pass, on the 16-px grid
    halo = context_halo(model)
    # 2048^2 at 8 GiB: the square 2 x 2 or 3 x 3 windows of before computed more; the last two sizes and
    # memories are where a search stopping early, or taking the fewest column pieces, missed a cheaper cut (review)
    for height, width, available in [(2048, 2048, 8 << 30), (2048, 2048, 3 << 30), (301, 578, 1372263326), (481, 477, 2 << 30)]:
        rows, cols = default_window(model, None, height, width, available=available)
        budget = 0.25 * available
        assert rows % 16 == 0 and cols % 16 == 0 and rows * cols < height * width

        def computed(rows: int, cols: int) -> tuple[int, int]:  # (pixels computed, pixels of one window's read)
            row_read, col_read = read_span(height, rows, halo, 16), read_span(width, cols, halo, 16)
            count = len(window_spans(height, rows, 0.0, 16)) * len(window_spans(width, cols, 0.0, 16))
            return count * row_read * col_read, row_read * col_read

        chosen, window = computed(rows, cols)
        assert window * 64 * 40 <= budget  # a window with its context fits the budget
        # no other cut into n x m equal windows that fits computes fewer pixels
        for n in range(1, -(-height // 16) + 1):
            for m in range(1, -(-width // 16) + 1):
                cost, read = computed(-(-height // n) + 15 & ~15, -(-width // m) + 15 & ~15)
                assert read * 64 * 40 > budget or cost >= chosen, (height, width, n, m)
    rows, cols = default_window(model, None, 2048, 2048, available=8 << 30)
    smaller = default_window(model, None, 2048, 2048, available=2 << 30)
    assert smaller[0] * smaller[1] < rows * cols  # less memory, smaller windows
    # the blended band (window rows x image width) must fit too: a very wide image gets short windows
    short_rows, _ = default_window(model, None, 512, 200_000, available=8 << 30)
    assert short_rows * 200_000 * 4 * 3 <= 0.25 * (8 << 30) / 2


def test_the_read_spans_of_windows_are_those_the_sliding_window_reads() -> None:
    """default_window costs a cut by read_span: it must be what sliding_window really computes."""
    model = build_model("unet", in_channels=1, num_classes=2, base_width=4, depth=2).eval()
    halo = context_halo(model)
    for height, width, rows, cols in [(150, 130, 48, 130), (150, 130, 150, 64), (333, 120, 112, 64)]:
        shapes: set[tuple[int, int]] = set()

        def read(top: int, bottom: int, left: int, right: int) -> torch.Tensor:
            shapes.add((-(-(bottom - top) // 4) * 4, -(-(right - left) // 4) * 4))  # as the network pads it
            return torch.zeros(1, bottom - top, right - left)

        _predict_rows(model, read, height, width, lambda top, probs: None, tile=(rows, cols), overlap=0.0, halo=halo)
        expected = (read_span(height, rows, halo, 4), read_span(width, cols, halo, 4))
        assert shapes == {expected}, (height, width, rows, cols)


def test_windows_on_a_gpu_are_planned_with_the_gpu_memory_not_the_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    from unetkit import predict

    monkeypatch.setattr(predict, "available_memory_bytes", lambda: 64 << 30)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (2 << 30, 16 << 30))
    assert predict.memory_for_windows(torch.device("cpu")) == 64 << 30
    assert predict.memory_for_windows(torch.device("cuda")) == 2 << 30
    model = build_model("unet", in_channels=1, num_classes=2, base_width=32, depth=4)
    host, gpu = (default_window(model, torch.bfloat16, 4096, 4096, available=memory) for memory in (64 << 30, 2 << 30))
    assert host == (4096, 4096) and gpu[0] * gpu[1] < 4096 * 4096  # a whole-image pass would not fit a 2 GiB GPU


def test_every_window_of_an_image_is_read_in_one_shape_with_enough_context() -> None:
    """Windows of a few shapes (edge windows had less context) piled up the memory blocks the engine keeps for
    reuse: 8.6 GB resident for a 3.1 GB window pass. Every read span now pads to one shape and still holds the
    window, its halo (within the image) and a start on the pooling grid."""
    from unetkit.predict import context_span

    for length, tile, halo, align in [(3000, 1008, 144, 16), (2500, 1008, 144, 16), (517, 128, 32, 16), (333, 96, 64, 32)]:
        spans = window_spans(length, tile, 0.0, align)
        span = -(-(max(b - a for a, b in spans) + 2 * halo + align) // align) * align
        padded = set()
        for start, stop in spans:
            first, last = context_span(start, stop, length, halo, align, span)
            assert first % align == 0 and 0 <= first and last <= length
            assert first <= start - min(halo, start) and last >= stop + min(halo, length - stop)
            padded.add(-(-(last - first) // align) * align)
        assert padded == {min(span, -(-length // align) * align)}, (length, padded)


def test_small_windows_of_a_deep_network_keep_context_for_the_output_shift() -> None:
    """--tile 32 on a depth-4 network: a quarter tile of context (8 px) rounded down to the 16-px grid was none,
    and the output shift repeated each window's edge at the seams instead of reading its neighbour."""
    from types import SimpleNamespace

    from unetkit.alignment import shift_image
    from unetkit.predict import predict_probabilities

    class Pointwise(torch.nn.Module):  # a per-pixel model: windows equal a whole pass wherever they have context
        config = SimpleNamespace(depth=4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([x, -x], 1)

    image = torch.randn(1, 80, 72)
    shift = (0.5, -0.25)
    whole = shift_image(torch.softmax(Pointwise()(image[None]), 1), shift)[0]
    windowed = predict_probabilities(Pointwise(), image, tile=32, shift=shift)
    assert torch.allclose(windowed, whole, atol=1e-6)
