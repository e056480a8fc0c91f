"""``python -m blipviz.evaluate`` end to end on the offline fixture with the tiny net: the Markdown
row it prints equals the evaluation's metrics, beside the paper's row ("n/a" for this net)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import blipviz
from blipviz import evaluate
from blipviz.datasets import load_retrieval_benchmark
from blipviz.testing.data import write_retrieval_fixture

ROOT = Path(blipviz.__file__).resolve().parents[1]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.fixture(scope="module")
def flickr(tmp_path_factory):
    return write_retrieval_fixture(tmp_path_factory.mktemp("flickr"), "flickr30k", n_images=5)


def test_cli_prints_the_metrics_as_a_markdown_row_beside_the_paper(flickr, tiny):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    argv = ["--benchmark", "flickr30k", "--model", "tiny-random", "--path", str(flickr.path)]
    argv += ["--limit", "4", "--k-test", "6", "--batch-size", "2", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "blipviz.evaluate", *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header, rule, ours, paper = lines[:4]
    assert _cells(header)[:5] == ["row", "images", "captions", "k_test", "TR@1"] and set(rule) <= set("|-")
    bench = load_retrieval_benchmark("flickr30k", path=flickr.path, limit=4)
    ev = blipviz.evaluate_retrieval(
        tiny, bench.images, bench.captions, text_image=bench.text_image, k_test=6, batch_size=2
    )
    row = _cells(ours)
    assert row[0] == "tiny-random, Flickr30k test, first 4 images"
    assert row[1:4] == ["4", str(len(bench.captions)), "6"]
    expected = [
        ev.metrics[k] for k in ("txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean")
    ]
    assert row[4:] == [f"{v:.1f}" for v in expected]
    assert _cells(paper)[0].startswith("BLIP paper: n/a") and set(_cells(paper)[1:]) == {"n/a"}
    assert f"{ev.itm_pairs} ITM passes (BLIP's code: {4 * 6 + len(bench.captions) * 4})" in done.stdout


def test_paper_rows_for_the_family_on_their_own_benchmark():
    label, recalls = evaluate.paper_row("Salesforce/blip-itm-base-flickr", "flickr30k")
    assert "ViT-B/16" in label and recalls == (97.3, 99.9, 100.0, 87.3, 97.6, 98.9)
    assert evaluate.paper_row("Salesforce/blip-itm-large-coco", "coco-karpathy")[1][3] == 65.1
    assert evaluate.paper_row("Salesforce/blip-itm-base-coco", "flickr30k") is None  # zero-shot: not Table 5
    assert evaluate.paper_row("tiny-random", "coco-karpathy") is None


def test_cli_without_data_exits_with_a_message(tmp_path, capsys):
    status = evaluate.main(
        ["--benchmark", "coco-karpathy", "--model", "tiny-random", "--path", str(tmp_path / "nothing")]
    )
    assert status == 1 and "no such file" in capsys.readouterr().err
