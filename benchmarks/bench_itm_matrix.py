"""ITM score matrices: blipviz against the per-pair recipe and against the FLOP floor, in one run.

The per-pair recipe is transformers' documented usage of BlipForImageTextRetrieval: for every
(image, text) pair, BlipImageProcessorPil + the BERT tokenizer, then
``model(input_ids, pixel_values, attention_mask, use_itm_head=True)``, with transformers' own
attention (no blipviz patch). blipviz runs ``itm_scores(images, texts)`` on the same weights with
the same token conventions (the model card's: ``[CLS]`` first, raw text), so the two give the same
probabilities (the max |diff| column checks it).

The floor is the matmul FLOPs of blipviz's work (one ViT pass per image, cross-attention keys and
values once per image and layer, one text pass per pair; see common.py) divided by this machine's
dense matmul rate, measured with torch.mm between the timed runs.

    python benchmarks/bench_itm_matrix.py            # full ViT-B/16 geometry, about 10 minutes on 2 cores
    python benchmarks/bench_itm_matrix.py --quick    # tiny net, seconds
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

FULL_SHAPES = [(4, 8), (10, 10), (1, 50), (50, 1)]
QUICK_SHAPES = [(2, 3), (3, 3), (1, 5), (5, 1)]


def per_pair_recipe(model, device: str, dtype: torch.dtype = torch.float32):
    """A function (PIL image, text) -> ITM probability, the Hugging Face model card's way."""
    from transformers import BlipImageProcessorPil

    from blipviz.net.text import blip_tokenizer

    p = model.preprocessing
    processor = BlipImageProcessorPil(
        size={"height": p.image_size, "width": p.image_size}, image_mean=list(p.mean), image_std=list(p.std)
    )
    tokenizer = blip_tokenizer()

    def score(image, text: str) -> float:
        pixel_values = processor(image, return_tensors="pt")["pixel_values"].to(device, dtype)
        enc = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = model.hf(
                input_ids=enc.input_ids.to(device),
                pixel_values=pixel_values,
                attention_mask=enc.attention_mask.to(device),
                use_itm_head=True,
            )
        return float(out.itm_score.softmax(-1)[0, 1])

    return score


def pair_subset(n_images: int, n_texts: int, limit: int) -> list[tuple[int, int]]:
    """All pairs, or ``limit`` pairs spread evenly over the grid."""
    pairs = [(i, j) for i in range(n_images) for j in range(n_texts)]
    if len(pairs) <= limit:
        return pairs
    picks = np.linspace(0, len(pairs) - 1, limit).round().astype(int)
    return [pairs[k] for k in picks]


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--baseline-max-pairs",
        type=int,
        default=100,
        help="time at most this many pairs of the per-pair recipe per shape, extrapolating linearly "
        "beyond (default 100: every pair up to 10 x 10)",
    )
    args = p.parse_args(argv)
    from blipviz import BlipITM
    from blipviz.net.fast_attention import exact_attention

    model = common.load(args)
    card = BlipITM(
        model.hf,
        name=model.name,
        preprocessing=model.preprocessing,
        device=args.device,
        dtype=common.dtype(args),
        first_token="cls",
        normalize_text=False,
        max_text_tokens=None,
    )
    baseline = per_pair_recipe(model, args.device, common.dtype(args))
    shapes = QUICK_SHAPES if args.quick else FULL_SHAPES
    warm = common.images(1, args.quick, seed=99)
    card.itm_scores(warm, ["warm up"])
    with exact_attention(model):
        baseline(warm[0], "warm up")

    rows = []
    for n_images, n_texts in shapes:
        ims = common.images(n_images, args.quick, seed=n_images)
        caps = common.texts(n_texts, seed=n_texts)
        reps = 1 if n_images >= 50 else 2
        rates, times = [common.matmul_rate(args.device, args.quick, dtype=common.dtype(args))], []
        for rep in range(reps):
            elapsed, scores = common.timed(lambda: card.itm_scores(ims, caps), args.device)  # noqa: B023
            times.append(elapsed)
            rates.append(common.matmul_rate(args.device, args.quick, dtype=common.dtype(args)))
            if rep == 0:  # the per-pair recipe between the repetitions of blipviz
                pairs = pair_subset(n_images, n_texts, args.baseline_max_pairs)
                pair_times, diffs = [], []
                with exact_attention(model):
                    for i, j in pairs:
                        t, prob = common.timed(lambda: baseline(ims[i], caps[j]), args.device)  # noqa: B023
                        pair_times.append(t)
                        diffs.append(abs(prob - scores.values[i, j]))
                rates.append(common.matmul_rate(args.device, args.quick, dtype=common.dtype(args)))
        n_pairs = n_images * n_texts
        measured = len(pairs) == n_pairs
        per_pair_total = sum(pair_times) if measured else statistics.mean(pair_times) * n_pairs
        ours = statistics.median(times)
        rate = statistics.median(rates)
        flops = common.itm_matrix_flops(card, n_images, caps)
        floor = flops["total"] / rate
        rows.append(
            {
                "shape": f"{n_images} x {n_texts}",
                "pairs": n_pairs,
                "blipviz_s": ours,
                "blipviz_reps": reps,
                "per_pair_s": per_pair_total,
                "per_pair_timed": f"{len(pairs)}/{n_pairs}" + ("" if measured else " (extrapolated)"),
                "per_pair_s_per_pair": statistics.median(pair_times),
                "speedup": per_pair_total / ours,
                "gflop": flops["total"] / 1e9,
                "gflop_vision": flops["vision"] / 1e9,
                "gflop_cross_kv": flops["cross_kv"] / 1e9,
                "gflop_text": flops["text"] / 1e9,
                "matmul_gflops": rate / 1e9,
                "floor_s": floor,
                "vs_floor": ours / floor,
                "max_abs_diff": max(diffs),
            }
        )
        print(common.table(rows[-1:]), flush=True)
    print()
    print(common.header(args, model))
    print(
        common.table(
            rows,
            [
                "shape",
                "blipviz_s",
                "per_pair_s",
                "per_pair_timed",
                "speedup",
                "gflop",
                "matmul_gflops",
                "floor_s",
                "vs_floor",
                "max_abs_diff",
            ],
        )
    )
    common.append_results(args.results, "itm_matrix", args, rows)
    return rows


if __name__ == "__main__":
    main()
