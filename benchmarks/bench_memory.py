"""Peak memory (RSS) of scoring 100 images x 10 texts with ``itm_scores``.

Images are given as files (as in a notebook over a folder), so they are decoded batch by batch. The
files are written by the parent process, a few at a time, and each measurement runs in a fresh child
process that only loads the net and scores. After loading, the kernel's peak-RSS mark is reset
(``/proc/self/clear_refs``), so the peak of loading (transient copies of the weights) is not
mistaken for the scoring's; the peak during scoring minus the resident size before it is the working
memory of the scoring and of nothing else. For scale, the table gives the size of the raw image
states of all images (what holding them at once would cost) and of one batch.

    python benchmarks/bench_memory.py            # full ViT-B/16 geometry, 100 and 200 images: ~5 min
    python benchmarks/bench_memory.py --quick
"""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common


def _status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in MB; ``None`` elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; ``False`` where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_mb() -> float:
    if (hwm := _status_mb("VmHWM")) is not None:
        return hwm
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def write_images(folder: Path, n: int, quick: bool, chunk: int = 10) -> list[Path]:
    """Write ``n`` distinct PNG files into ``folder``, ``chunk`` images in memory at a time."""
    paths = []
    for start in range(0, n, chunk):
        batch = common.images(min(chunk, n - start), quick, seed=7 + start)
        for i, image in enumerate(batch, start):
            paths.append(folder / f"{i:04d}.png")
            image.save(paths[-1])
        del batch
    return paths


def measure(args) -> dict:
    """In this process: load, then score the files of ``args.image_dir``; peak RSS before and after."""
    paths = sorted(Path(args.image_dir).glob("*.png"))
    caps = common.texts(args.n_texts, seed=3)
    model = common.load(args)
    load_peak = _peak_mb()
    gc.collect()
    # The peak of loading (transient copies of the weights) is not the scoring's: reset the mark and
    # measure from the resident size now. Without /proc, fall back to the peak since start.
    loaded = _status_mb("VmRSS") if _reset_peak() else None
    loaded = load_peak if loaded is None else loaded
    on_gpu = str(args.device).startswith("cuda")
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
        gpu_loaded = torch.cuda.memory_allocated() / 2**20
    batch = args.batch_size or model.default_batch_size
    elapsed, scores = common.timed(
        lambda: model.itm_scores(paths, caps, batch_size=batch, progress=False), args.device
    )
    peak = _peak_mb()
    gpu = {}
    if on_gpu:  # the GPU's own memory: allocated by torch, above the loaded net
        gpu = {"gpu_scoring_mb": torch.cuda.max_memory_allocated() / 2**20 - gpu_loaded}
    raw_mb = model.n_image_tokens * model.width * torch.finfo(model.dtype).bits / 8 / 2**20
    return {
        "images": args.n_images,
        "texts": args.n_texts,
        "batch_size": batch,
        "seconds": elapsed,
        "rss_load_peak_mb": load_peak,
        "rss_after_load_mb": loaded,
        "rss_peak_mb": peak,
        "scoring_mb": peak - loaded,
        "raw_all_images_mb": raw_mb * args.n_images,
        "raw_one_batch_mb": raw_mb * min(batch, args.n_images),
        "shape": list(scores.shape),
        **gpu,
    }


def main(argv: list[str] | None = None) -> list[dict]:
    p = common.parser(__doc__.splitlines()[0])
    p.add_argument(
        "--n-images",
        default=None,
        help="comma-separated collection sizes, one fresh process each (default 100,200; 8 with --quick)",
    )
    p.add_argument("--n-texts", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=None, help="images per ViT pass (default: the net's)")
    p.add_argument("--in-process", action="store_true", help="measure in this process (used by the child)")
    p.add_argument("--image-dir", type=Path, help="folder of the images to score (given to the child)")
    args = p.parse_args(argv)
    sizes = [int(n) for n in (args.n_images or ("8" if args.quick else "100,200")).split(",")]
    if args.in_process:  # the child: one size, its row as JSON on the last line
        if args.image_dir is None or len(sizes) != 1:
            p.error("--in-process needs --image-dir and one --n-images (see write_images)")
        args.n_images = sizes[0]
        print(json.dumps(measure(args)))
        return []
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as folder:
            write_images(Path(folder), n, args.quick)
            cmd = [sys.executable, str(Path(__file__).resolve()), "--in-process", "--device", args.device]
            cmd += ["--n-images", str(n), "--n-texts", str(args.n_texts), "--image-dir", folder]
            cmd += ["--dtype", args.dtype]
            cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
            cmd += ["--quick"] if args.quick else []
            run = subprocess.run(cmd, check=True, capture_output=True, text=True)
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
    model_name = "tiny-random" if args.quick else "full ViT-B/16 geometry, random weights"
    print(f"{model_name} on {args.device}, {args.dtype}; {common.machine()}")
    print(common.table(rows))
    common.append_results(args.results, "memory", args, rows)
    return rows


if __name__ == "__main__":
    main()
