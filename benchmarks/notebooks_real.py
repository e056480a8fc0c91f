"""Every notebook on the full ViT-B/16 geometry: seconds per notebook, within a time limit each.

The net is the default net's architecture with random weights (``load_model(pretrained=False)``),
saved once with ``save_pretrained`` to ``--checkpoint`` (a converted checkpoint: ``load_model(folder)``
reads it as it reads a downloaded one), so each notebook does the real net's arithmetic offline:
``BLIPVIZ_MODEL`` is that folder, ``HF_HUB_OFFLINE=1``, and notebook 4 reads a FashionMNIST-shaped
fixture (``blipviz.testing.write_fashion_mnist_fixture``, 20 images per class) written next to it.
Each notebook runs in its own kernel (nbclient, as nbmake runs them), killed after ``--timeout``
seconds; the executed copies (with outputs and per-cell timings) go to ``--out``.

Prints a Markdown table: each notebook's seconds, whether it passed, its slowest cell, and each cell
that printed an estimate (``blipviz.expected_time``) with the estimate beside the time it took; then
the total. Appends the rows to ``--results`` (``benchmarks/results.jsonl``) like the other scripts.

    python benchmarks/notebooks_real.py                      # all notebooks, 8 minutes each at most
    python benchmarks/notebooks_real.py --only 10 04         # some of them (by number or name)
    python benchmarks/notebooks_real.py --quick              # smoke run on tiny-random

``make notebooks-real`` runs the first line.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import common
else:
    from . import common

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_CHECKPOINT = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "blipviz" / "vit-b16-random"
)
ESTIMATE = re.compile(r"^(?P<what>[^\n]*?): [^\n]*\(measured on [^\n]*\) = (?P<time>[^\n]+)$", re.MULTILINE)


def make_checkpoint(folder: Path) -> Path:
    """The full ViT-B/16 geometry with random weights in ``save_pretrained`` layout, written once."""
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    import blipviz

    print(f"writing the full ViT-B/16 geometry with random weights to {folder} (once) ...", flush=True)
    blipviz.load_model(pretrained=False).save_pretrained(folder)
    return folder


def make_fashion_mnist(folder: Path) -> Path:
    """A FashionMNIST-shaped fixture (20 test images per class) for notebook 4, written once."""
    if not folder.exists():
        from blipviz.testing import write_fashion_mnist_fixture

        write_fashion_mnist_fixture(folder, n_per_class=20, splits=("test",))
    return folder


def selected(only: list[str] | None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if only:
        paths = [p for p in paths if any(p.name == o or p.name.startswith(o) for o in only)]
    return paths


def parse_seconds(text: str) -> float | None:
    """Seconds from :func:`blipviz.analysis.cost.format_duration`'s words ("12 s", "about 3.5 min")."""
    text = text.strip()
    if text == "under a second":
        return 0.5
    found = re.fullmatch(r"(?:about )?([\d.,]+) (s|min|h)", text)
    if not found:
        return None
    value = float(found.group(1).replace(",", ""))
    return value * {"s": 1, "min": 60, "h": 3600}[found.group(2)]


def cell_report(executed: Path) -> dict:
    """Of an executed notebook: its slowest cell, each cell that printed an estimate, and the cell
    it stopped in: the first that raised, else the first that did not finish (``None``: neither)."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    slowest: dict = {}
    estimates = []
    unfinished = failed = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        timing = cell.get("metadata", {}).get("execution", {})
        begin, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if failed is None and any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            failed = index
        if not begin or not end:
            unfinished = index if unfinished is None else unfinished
            continue
        seconds = (
            datetime.datetime.fromisoformat(end.replace("Z", "+00:00"))
            - datetime.datetime.fromisoformat(begin.replace("Z", "+00:00"))
        ).total_seconds()
        if seconds > slowest.get("seconds", -1):
            slowest = {"cell": index, "seconds": round(seconds, 1)}
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        for found in ESTIMATE.finditer(text):
            estimates.append(
                {
                    "cell": index,
                    "what": found.group("what").strip(),
                    "estimate_s": parse_seconds(found.group("time")),
                    "cell_s": round(seconds, 1),
                }
            )
    stopped = failed if failed is not None else unfinished
    return {"slowest_cell": slowest, "estimates": estimates, "stopped_in_cell": stopped}


#: Runs in a child process: executes one notebook in a fresh kernel (nbclient, as nbmake does) and
#: writes the executed copy, with per-cell timings, after each cell and at the end.
EXECUTE = """
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

path, out, timeout = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
nb = nbformat.read(path, as_version=4)
where = {"metadata": {"path": str(path.parent)}}
client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=where)
# written after each cell too, so a notebook killed at its time limit shows how far it came
client.on_cell_executed = lambda **_: nbformat.write(nb, out / path.name)
try:
    client.execute()
finally:
    nbformat.write(nb, out / path.name)
"""


def kernels_of(pid: int) -> list[int]:
    """The kernels started by process ``pid`` (jupyter_client marks them with ``JPY_PARENT_PID``)."""
    mark = f"JPY_PARENT_PID={pid}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
    return found


def run_one(path: Path, env: dict, timeout: int, out: Path) -> dict:
    """Execute one notebook in a fresh kernel, killed (with its kernel) after ``timeout`` seconds."""
    command = [sys.executable, "-c", EXECUTE, str(path), str(out), str(timeout)]
    executed = out / path.name
    executed.unlink(missing_ok=True)  # a copy from an earlier run
    start = time.perf_counter()
    process = subprocess.Popen(
        command,
        cwd=NOTEBOOKS,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        log, _ = process.communicate(timeout=timeout)
        status = "passed" if process.returncode == 0 else "failed"
    except subprocess.TimeoutExpired:
        kernels = kernels_of(process.pid)  # in a session of their own: killed by id
        os.killpg(process.pid, signal.SIGKILL)
        for pid in kernels:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        log, _ = process.communicate()
        status = f"killed after {timeout} s"
    seconds = time.perf_counter() - start
    row = {"notebook": path.name, "seconds": round(seconds, 1), "status": status}
    if executed.is_file():
        row.update(cell_report(executed))
        if status != "passed" and row["stopped_in_cell"] is not None:
            row["status"] += f" in cell {row['stopped_in_cell']}"
    if status == "failed":
        row["error"] = log.decode(errors="replace")[-3000:]
    return row


def markdown(rows: list[dict]) -> str:
    lines = [
        "| notebook | seconds | status | slowest cell (s) | estimated vs taken |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        slow = r.get("slowest_cell") or {}
        slowest = f"{slow['cell']} ({slow['seconds']:.0f})" if slow else ""
        estimates = "; ".join(
            f"cell {e['cell']} {e['what']}: {e['estimate_s']:.0f} s vs {e['cell_s']:.0f} s"
            for e in r.get("estimates", [])
            if e["estimate_s"] is not None
        )
        lines.append(f"| {r['notebook']} | {r['seconds']:.0f} | {r['status']} | {slowest} | {estimates} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **total** | **{total:.0f}** ({total / 60:.1f} min) | | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT, help="folder of the converted net")
    p.add_argument("--timeout", type=int, default=480, help="seconds each notebook may run (default 8 min)")
    p.add_argument("--only", nargs="*", help="notebooks by number or name (default: all)")
    p.add_argument("--out", type=Path, default=None, help="folder for the executed notebooks")
    p.add_argument("--results", type=Path, default=common.DEFAULT_RESULTS)
    p.add_argument("--quick", action="store_true", help="tiny-random instead of the full geometry")
    args = p.parse_args(argv)
    args.device = "cpu"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if args.quick:
        env["BLIPVIZ_MODEL"] = "tiny-random"
    else:
        checkpoint = make_checkpoint(args.checkpoint.expanduser().resolve())
        env["BLIPVIZ_MODEL"] = str(checkpoint)
        if "BLIPVIZ_FASHION_MNIST" not in env:
            env["BLIPVIZ_FASHION_MNIST"] = str(
                make_fashion_mnist(checkpoint.parent / "fashion-mnist-fixture")
            )
    out = args.out or Path(os.environ.get("TMPDIR", "/tmp")) / "blipviz-notebooks-real"
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"BLIPVIZ_MODEL={env['BLIPVIZ_MODEL']}, at most {args.timeout} s a notebook; executed copies in {out}"
    )
    rows = []
    for path in selected(args.only):
        row = run_one(path, env, args.timeout, out)
        rows.append(row)
        print(f"{row['notebook']}: {row['seconds']:.0f} s, {row['status']}", flush=True)
        if "error" in row:
            print(row["error"], flush=True)
    print()
    print(markdown(rows))
    common.append_results(args.results, "notebooks_real", args, rows)
    return rows


if __name__ == "__main__":
    rows = main()
    sys.exit(0 if rows and all(r["status"] == "passed" for r in rows) else 1)
