"""Shared pieces of the benchmark scripts: options, the net, timing, the matmul rate, FLOP counts,
tables and the results file.

FLOPs are matmul FLOPs (2 m n k per product), counted from the config:

- vision, per image: patch embedding (P x 3p^2 x D) and, per layer, qkv (T x D x 3D), scores and
  context (2 x T x T x D), output projection (T x D x D), MLP (2 x T x D x I), with T = 1 + P;
- cross-attention keys and values, once per image and layer: 2 x T x Dv x H;
- each ITM text pass of L tokens, per layer: self-attention q, k, v, o (4 x L x H x H), its scores and
  context (2 x L x L x H), cross-attention query and output (2 x L x H x H), its scores and context
  (2 x L x T x H), feed-forward (2 x L x H x I).

Heads, LayerNorms, softmax and GELU are left out (under 1% of the total); so the floor is a lower
bound on any implementation's time at this machine's dense matmul rate.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_RESULTS = HERE / "results.jsonl"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    p.add_argument(
        "--quick", action="store_true", help="smoke run on the tiny offline net with small sizes (seconds)"
    )
    p.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="JSON-lines file the figures go to")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="float32",
        help="floating-point type of the net (float16 / bfloat16: mainly for --device cuda)",
    )
    return p


DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def dtype(args) -> torch.dtype:
    """The torch dtype of ``--dtype`` (float32 for argument namespaces without one)."""
    return DTYPES[getattr(args, "dtype", "float32")]


def load(args, **options: Any):
    """The net of a run: ``tiny-random`` with ``--quick``, else full ViT-B/16 with random weights."""
    import blipviz

    options.setdefault("dtype", dtype(args))
    if args.quick:
        return blipviz.load_model("tiny-random", device=args.device, **options)
    return blipviz.load_model(pretrained=False, device=args.device, **options)


def images(n: int, quick: bool, seed: int = 0) -> list:
    """``n`` distinct PIL images, camera-sized (480 x 640) in full runs."""
    from PIL import Image

    from blipviz.testing import synthetic_images

    size = (48, 64) if quick else (480, 640)
    return [Image.fromarray(a) for a in synthetic_images(n, seed=seed, size=size)]


WORDS = (
    "a dog cat man woman child red blue green small large old young running sitting standing on in near "
    "beside the table street beach park room window car bicycle tree field water sky night morning"
).split()


def texts(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct captions of 6 to 12 words (COCO-like lengths: 9 to 15 tokens)."""
    import random

    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 12))) for _ in range(n)]


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def matmul_rate(device: str, quick: bool, reps: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """This machine's dense matmul rate in ``dtype`` now (FLOP/s): median of ``reps`` large torch.mm."""
    n = 256 if quick else (2048 if device == "cpu" else 8192)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    times = [timed(lambda: torch.mm(a, b), device)[0] for _ in range(reps)]
    return 2 * n**3 / statistics.median(times)


# ------------------------------------------------------------------------------------------ FLOPs
def vision_flops(config, n_images: int = 1) -> float:
    v = config.vision_config
    d, i, p = v.hidden_size, v.intermediate_size, v.patch_size
    n_patch = (v.image_size // p) ** 2
    t = 1 + n_patch
    patch = 2 * n_patch * 3 * p * p * d
    per_layer = 2 * t * d * 3 * d + 2 * 2 * t * t * d + 2 * t * d * d + 2 * 2 * t * d * i
    return n_images * (patch + v.num_hidden_layers * per_layer)


def cross_kv_flops(config, n_images: int = 1) -> float:
    v, t = config.vision_config, config.text_config
    n_tokens = 1 + (v.image_size // v.patch_size) ** 2
    return n_images * t.num_hidden_layers * 2 * 2 * n_tokens * v.hidden_size * t.hidden_size


def itm_text_flops(config, lengths: Sequence[int]) -> float:
    """One ITM pass of texts of the given token lengths against one image (keys/values excluded)."""
    v, t = config.vision_config, config.text_config
    n_img = 1 + (v.image_size // v.patch_size) ** 2
    h, i = t.hidden_size, t.intermediate_size
    total = 0.0
    for n in lengths:
        self_attention = 4 * 2 * n * h * h + 2 * 2 * n * n * h
        cross_attention = 2 * 2 * n * h * h + 2 * 2 * n * n_img * h  # keys/values: cross_kv_flops
        feed_forward = 2 * 2 * n * h * i
        per_layer = self_attention + cross_attention + feed_forward
        total += t.num_hidden_layers * per_layer
    return total


def itm_matrix_flops(model, n_images: int, captions: Sequence[str]) -> dict[str, float]:
    """Matmul FLOPs of an ITM score matrix done the blipviz way (one ViT pass per image, K/V once)."""
    tok = model.tokenize(list(captions))
    lengths = tok.attention_mask.sum(1).tolist()
    parts = {
        "vision": vision_flops(model.config, n_images),
        "cross_kv": cross_kv_flops(model.config, n_images),
        "text": n_images * itm_text_flops(model.config, lengths),
    }
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------------------------------- output
def machine() -> dict[str, Any]:
    import blipviz

    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "blipviz": blipviz.__version__,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    allocator = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    if allocator:  # glibc allocator settings change the memory figures
        info["malloc_env"] = allocator
    return info


def append_results(path: Path, benchmark: str, args, rows: list[dict[str, Any]]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": benchmark,
        "quick": bool(args.quick),
        "device": args.device,
        "dtype": getattr(args, "dtype", "float32"),
        **machine(),
        "rows": rows,
    }
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def table(rows: list[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A Markdown table of the rows (floats to 3 significant digits)."""
    columns = list(columns or rows[0].keys())

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def header(args, model) -> str:
    m = machine()
    return (
        f"{model.name} on {args.device}, {getattr(args, 'dtype', 'float32')} "
        f"({m['cpu_cores']} cores, torch {m['torch']}, "
        f"{torch.get_num_threads()} threads), {m['date']}"
    )
