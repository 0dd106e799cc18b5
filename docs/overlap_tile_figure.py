"""Draw docs/overlap_tile.png: how the paper's overlap-tile strategy covers an image.

    .venv/bin/python docs/overlap_tile_figure.py RUN IMAGE [--tile 572]

RUN is a run trained with --model unet-classic (e.g. --recipe paper); IMAGE a section
such as ../shared/data/isbi2012/test/image/0.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from unetkit.data.io import read_pages  # noqa: E402
from unetkit.predict import mirrored_crop, overlap_tile_layout, predict_probabilities  # noqa: E402
from unetkit.run import load_run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--tile", type=int, default=572)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("overlap_tile.png"))
    args = parser.parse_args()

    run = load_run(args.run)
    model = run.model
    raw = read_pages(args.image)[0][0]
    image = torch.from_numpy(run.normalization.apply(raw))
    height, width = raw.shape
    margin = model.margin
    tile_input = min(model.nearest_valid_input_size(args.tile), model.input_size_for_output(max(height, width)))
    out, stride, count = overlap_tile_layout(height, model.valid_output_size(tile_input), 2**model.config.depth)
    extent = (count - 1) * stride + out
    extended = mirrored_crop(raw, -margin, extent + margin, -margin, extent + margin, axes=(0, 1))
    probs = predict_probabilities(model, image, tile=args.tile)
    membrane = probs[run.encoding.values.index(0)].numpy() if 0 in run.encoding.values else probs[0].numpy()

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.6))
    left.imshow(extended, cmap="gray", extent=(-margin, extent + margin, extent + margin, -margin))
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    for row in range(count):
        for col in range(count):
            colour = colours[(row * count + col) % len(colours)]
            top, lft = row * stride, col * stride
            left.add_patch(Rectangle((lft - margin, top - margin), out + 2 * margin, out + 2 * margin,
                                     fill=False, ls="--", lw=1.2, ec=colour))
            left.add_patch(Rectangle((lft, top), out, out, fill=False, lw=2, ec=colour))
    left.add_patch(Rectangle((0, 0), width, height, fill=False, lw=2.5, ec="yellow"))
    left.set_title(f"mirror-extended image: {tile_input} px input tiles (dashed)\n"
                   f"-> {out} px valid outputs (solid), stride {stride}; yellow: the {width} x {height} image")
    right.imshow(membrane, cmap="magma", vmin=0, vmax=1)
    for k in range(1, count):
        right.axhline(k * stride, color="white", lw=0.6, ls=":")
        right.axvline(k * stride, color="white", lw=0.6, ls=":")
    right.set_title("stitched membrane probability (dotted: tile seams, invisible in the result)")
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=65, bbox_inches="tight")
    Image.open(args.out).convert("RGB").quantize(colors=96).save(args.out, optimize=True)  # a third of the bytes
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
