"""``python -m blipviz.evaluate`` end to end on the offline fixture with the tiny net: the Markdown
row it prints equals the evaluation's metrics, beside the paper's row ("n/a" and why for this net);
``--output`` writes the metrics, the paper's row and the provenance; the paper's rows (Table 5
fine-tuned, Table 6 zero-shot) for hub ids and local copies; errors that name the flag."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import blipviz
from blipviz import evaluate
from blipviz.datasets import load_retrieval_benchmark
from blipviz.net.provenance import PROVENANCE_KEYS
from blipviz.net.registry import blip_config, checkpoint_of_folder
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
    assert _cells(paper)[0] == "BLIP paper: n/a (tiny-random is blipviz's small test net with random weights)"
    assert set(_cells(paper)[1:]) == {"n/a"}
    assert f"{ev.itm_pairs} ITM passes (BLIP's code: {4 * 6 + len(bench.captions) * 4})" in done.stdout


def test_paper_rows_for_the_family_on_their_own_benchmark():
    label, recalls = evaluate.paper_row("Salesforce/blip-itm-base-flickr", "flickr30k")
    assert "Table 5" in label and "ViT-B/16" in label and recalls == (97.3, 99.9, 100.0, 87.3, 97.6, 98.9)
    assert evaluate.paper_row("Salesforce/blip-itm-large-coco", "coco-karpathy")[1][3] == 65.1
    assert evaluate.paper_row("tiny-random", "coco-karpathy") is None


def test_coco_nets_on_flickr30k_get_the_zero_shot_row_of_table_6():
    label, recalls = evaluate.paper_row("Salesforce/blip-itm-base-coco", "flickr30k")
    assert label == "BLIP paper, Table 6 (zero-shot, ViT-B/16 fine-tuned on COCO, 129M)"
    assert recalls == (96.0, 99.9, 100.0, 85.0, 96.8, 98.6)
    label, recalls = evaluate.paper_row("Salesforce/blip-itm-large-coco", "flickr30k")
    assert "ViT-L/16" in label and recalls == (96.7, 100.0, 100.0, 86.7, 97.3, 98.7)
    flickr_on_coco = evaluate.paper_comparison("Salesforce/blip-itm-base-flickr", "coco-karpathy")
    assert flickr_on_coco.label is None and "reports no Flickr30k net on COCO" in flickr_on_coco.reason
    random = evaluate.paper_comparison("Salesforce/blip-itm-base-coco", "coco-karpathy", pretrained=False)
    assert random.label is None and "random weights (--pretrained false)" in random.reason
    val = evaluate.paper_comparison("Salesforce/blip-itm-base-coco", "coco-karpathy", split="val")
    assert val.label is None and "test split" in val.reason
    assert evaluate.paper_comparison("someone/other-net", "flickr30k").reason.startswith(
        "someone/other-net is not"
    )


def _config_folder(folder: Path, architecture: str) -> Path:
    blip_config(architecture).save_pretrained(folder)
    return folder


def test_a_local_copy_is_read_from_its_config_and_its_name(tmp_path):
    copy = _config_folder(tmp_path / "blip-itm-base-coco", "ViT-B/16")
    checkpoint, why = checkpoint_of_folder(copy)
    assert checkpoint.hub_id == "Salesforce/blip-itm-base-coco"
    assert "ViT-B/16 from its config.json" in why and "fine-tuned on COCO" in why
    row = evaluate.paper_comparison(str(copy), "coco-karpathy")
    assert row.label == "BLIP paper, Table 5 (ViT-B/16, 129M)" and row.recalls[0] == 81.9
    assert evaluate.paper_row(str(copy), "flickr30k")[1] == evaluate.PAPER_TABLE_6["ViT-B/16"]

    # the Hugging Face cache's layout: models--owner--name/snapshots/<revision>
    snapshot = tmp_path / "hub" / "models--Salesforce--blip-itm-large-flickr" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    _config_folder(snapshot, "ViT-L/16")
    row = evaluate.paper_comparison(str(snapshot), "flickr30k")
    assert row.recalls == evaluate.PAPER_TABLE_5[("ViT-L/16", "flickr30k")] and "ViT-L/16" in row.label

    wrong = _config_folder(tmp_path / "blip-itm-large-coco", "ViT-B/16")
    checkpoint, why = checkpoint_of_folder(wrong)
    assert checkpoint is None and "named after Salesforce/blip-itm-large-coco (ViT-L/16)" in why
    unnamed = _config_folder(tmp_path / "my-net", "ViT-B/16")
    row = evaluate.paper_comparison(str(unnamed), "coco-karpathy")
    assert row.label is None and "gives the architecture (ViT-B/16) but not the data" in row.reason
    assert "blip-itm-base-coco" in row.reason
    derived = _config_folder(tmp_path / "blip-itm-base-coco-finetuned", "ViT-B/16")
    assert checkpoint_of_folder(derived)[0] is None  # a name must be the checkpoint's exactly


def test_output_writes_metrics_paper_row_and_provenance(flickr, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    argv = ["--benchmark", "flickr30k", "--model", "tiny-random", "--seed", "2", "--path", str(flickr.path)]
    argv += ["--limit", "3", "--k-test", "4", "--no-progress", "--output", str(out)]
    assert evaluate.main(argv) == 0
    assert f"written to {out}" in capsys.readouterr().out
    record = json.loads(out.read_text())
    bench = load_retrieval_benchmark("flickr30k", path=flickr.path, limit=3)
    net = blipviz.load_model("tiny-random", seed=2)
    ev = blipviz.evaluate_retrieval(net, bench.images, bench.captions, text_image=bench.text_image, k_test=4)
    assert record["metrics"] == ev.metrics
    assert (record["benchmark"], record["split"], record["k_test"], record["limit"]) == (
        "flickr30k",
        "test",
        4,
        3,
    )
    assert record["model"] == {"name": "tiny-random", "given": "tiny-random", "pretrained": False, "seed": 2}
    assert record["paper"]["label"] is None and "tiny-random" in record["paper"]["reason"]
    assert set(record["provenance"]) == set(PROVENANCE_KEYS) and record["provenance"]["device"] == "cpu"
    assert record["provenance"]["blipviz"] == blipviz.__version__
    assert record["itm_pairs"] == ev.itm_pairs


def test_help_is_whole_and_says_what_the_device_default_is(capsys):
    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert blipviz.load_model("tiny-random").device == torch.device("cpu")  # what load_model does
    assert "where the net runs: cpu, cuda, cuda:1, mps or xpu:0. Default: cpu" in text
    for flag in ("--output FILE.json", "--pretrained {true,false}", "--seed N", "--images-root FOLDER"):
        assert flag in text
    assert "best available" not in text


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (
            ["--output", "metrics.csv"],
            2,
            "--output metrics.csv: unknown file type '.csv'; give a file ending in .json",
        ),
        (["--limit", "0"], 2, "argument --limit: expected a number >= 1, got 0"),
        (["--max-states-gb", "-1"], 2, "argument --max-states-gb: expected a number >= 0"),
        (["--pretrained", "no"], 2, "argument --pretrained: expected true or false"),
        (["--path", "nowhere"], 1, "--path nowhere: no such file or folder"),
        (["--device", "cuda:3"], 1, "--device cuda:3: "),
    ],
)
def test_errors_name_the_flag(flickr, argv, status, message, capsys):
    base = ["--benchmark", "flickr30k", "--model", "tiny-random", "--path", str(flickr.path)]
    try:
        got = evaluate.main([*base, *argv])
    except SystemExit as exc:
        got = exc.code
    err = capsys.readouterr().err
    assert got == status and message in err, err
    assert "Traceback" not in err


def test_coco_needs_images_root_and_says_so_by_its_flag(tmp_path, capsys):
    base = ["--benchmark", "coco-karpathy", "--model", "tiny-random", "--path", str(tmp_path)]
    assert evaluate.main(base) == 1
    assert "--images-root is needed for coco-karpathy" in capsys.readouterr().err
    assert evaluate.main([*base, "--images-root", str(tmp_path / "coco")]) == 1
    assert f"--images-root {tmp_path / 'coco'}: no such folder" in capsys.readouterr().err


def test_cli_without_data_exits_with_a_message(tmp_path, capsys):
    status = evaluate.main(
        ["--benchmark", "coco-karpathy", "--model", "tiny-random", "--path", str(tmp_path / "nothing")]
    )
    assert status == 1 and "no such file" in capsys.readouterr().err
