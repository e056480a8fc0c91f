"""``python -m blipviz`` through ``main(argv)``: one image's ranking, every (image, text) pair for
several, the table written as CSV, Parquet or JSON with its provenance, the net options
(``--pretrained false``, ``--seed``, ``--device``), and errors that name the flag."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import blipviz
from blipviz import __main__ as cli
from blipviz.net.provenance import PROVENANCE_KEYS
from blipviz.testing import synthetic_images


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for i, image in enumerate(synthetic_images(2)):
        path = folder / f"photo{i}.png"
        (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path)
        paths.append(str(path))
    return paths


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out = capsys.readouterr()
    return status, out.out, out.err


def test_default_ranks_the_sample_descriptions(tiny, capsys):
    status, out, err = _run(capsys, "--model", "tiny-random")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == "tiny-random: descriptions of sample image china.jpg ranked by ITM"
    assert len(lines) == 1 + 2 + len(cli.DESCRIPTIONS)
    expected = tiny.rank(cli.sample_image(), cli.DESCRIPTIONS)
    assert [line.split()[0] for line in lines[3:]] == [str(i) for i in expected.index]
    for line, text in zip(lines[3:], expected["text"], strict=True):
        assert text in line


def test_one_image_table_written_as_csv_parquet_and_json(tiny, image_files, tmp_path, capsys):
    texts = ["a dog on a beach", "a red car", "two cats"]
    expected = tiny.rank(image_files[0], texts).reset_index()
    argv = ["--model", "tiny-random", "--image", image_files[0]]
    for text in texts:
        argv += ["--text", text]
    status, out, err = _run(capsys, *argv, "--output", str(tmp_path / "t.csv"))
    assert status == 0, err and f"written to {tmp_path / 't.csv'}" in out
    written = pd.read_csv(tmp_path / "t.csv")
    assert list(written.columns) == ["rank", "text", "itm", "cosine", "itm_rank", "cosine_rank"]
    assert list(written["text"]) == list(expected["text"])
    np.testing.assert_allclose(written["itm"], expected["itm"], rtol=1e-12)

    assert _run(capsys, *argv, "--output", str(tmp_path / "t.parquet"))[0] == 0
    written = pd.read_parquet(tmp_path / "t.parquet")
    assert np.array_equal(written["cosine"], expected["cosine"])
    assert written.attrs["model"] == "tiny-random" and written.attrs["score"] == "both"
    made_by = written.attrs["provenance"]
    assert list(made_by) == list(PROVENANCE_KEYS) and made_by["device"] == "cpu"
    assert made_by["dtype"] == "float32" and made_by["blipviz"] == blipviz.__version__

    from blipviz.net.net import BlipNet

    itm_passes = []  # --score cosine runs the unimodal encoders alone: no ITM pass
    original = BlipNet.itm_logits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(BlipNet, "itm_logits", lambda *a, **k: itm_passes.append(1) or original(*a, **k))
        assert _run(capsys, *argv, "--score", "cosine", "--output", str(tmp_path / "t.json"))[0] == 0
    assert itm_passes == []
    record = json.loads((tmp_path / "t.json").read_text())
    assert record["score"] == "cosine" and set(record["provenance"]) == set(PROVENANCE_KEYS)
    rows = pd.DataFrame(record["rows"])
    assert list(rows.columns) == ["rank", "text", "cosine", "cosine_rank"]
    np.testing.assert_allclose(rows["cosine"], sorted(expected["cosine"], reverse=True), rtol=1e-6)


def test_several_images_give_every_pair_with_both_scores(tiny, image_files, tmp_path, capsys):
    texts = ["a dog", "a cat"]
    argv = ["--model", "tiny-random", "--image", image_files[0], "--image", image_files[1]]
    argv += ["--text", texts[0], "--text", texts[1], "--output", str(tmp_path / "pairs.csv")]
    status, out, err = _run(capsys, *argv)
    assert status == 0, err
    assert out.splitlines()[0] == "tiny-random: 2 images x 2 descriptions"
    table = pd.read_csv(tmp_path / "pairs.csv")
    assert list(table.columns) == ["image", "text", "itm", "cosine"]
    assert list(table["image"]) == [image_files[0]] * 2 + [image_files[1]] * 2
    assert list(table["text"]) == texts * 2
    itm, cosine = tiny.scores(image_files, texts)
    np.testing.assert_allclose(table["itm"], itm.values.reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(table["cosine"], cosine.values.reshape(-1), rtol=1e-12)

    assert _run(capsys, *argv[:-2], "--score", "itm", "--output", str(tmp_path / "itm.csv"))[0] == 0
    assert list(pd.read_csv(tmp_path / "itm.csv").columns) == ["image", "text", "itm"]


def test_random_weights_of_a_local_geometry_and_seeds(tiny, image_files, tmp_path, capsys):
    tiny.save_pretrained(tmp_path / "net")
    argv = ["--image", image_files[0], "--text", "a dog", "--text", "a cat", "--score", "itm"]
    local = ["--model", str(tmp_path / "net"), "--pretrained", "false", "--seed", "3"]
    assert _run(capsys, *argv, *local, "--output", str(tmp_path / "a.csv"))[0] == 0
    net = blipviz.load_model(tmp_path / "net", pretrained=False, seed=3)
    expected = net.itm_scores(image_files[0], ["a dog", "a cat"]).values[0]
    np.testing.assert_allclose(sorted(pd.read_csv(tmp_path / "a.csv")["itm"]), sorted(expected), rtol=1e-12)
    tables = []
    for seed in ("1", "2"):
        out = tmp_path / f"seed{seed}.csv"
        assert _run(capsys, *argv, "--model", "tiny-random", "--seed", seed, "--output", str(out))[0] == 0
        tables.append(pd.read_csv(out)["itm"].to_numpy())
    assert not np.allclose(tables[0], tables[1])


def test_device_help_says_what_the_default_resolves_to(capsys):
    assert blipviz.load_model("tiny-random").device == torch.device("cpu")  # load_model(device=None)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--device DEVICE where the net runs: cpu, cuda, cuda:1, mps or xpu:0. Default: cpu" in help_text
    assert "--pretrained {true,false}" in help_text and "--output FILE" in help_text


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--image", "holiday.jpg"], 1, "--image holiday.jpg: no such file"),
        (["--text", "  "], 1, "--text: a description is empty"),
        (["--device", "cuda:7"], 1, "--device cuda:7: "),
        (["--device", "no such device"], 1, "--device no such device: is not a device string"),
        (["--output", "table.txt"], 2, "--output table.txt: unknown file type '.txt'"),
        (["--output", "/no/such/folder/t.csv"], 2, "--output /no/such/folder/t.csv: no such folder"),
        (["--pretrained", "yes"], 2, "argument --pretrained: expected true or false, got 'yes'"),
        (["--seed", "x"], 2, "argument --seed: expected a whole number"),
        (["--score", "best"], 2, "argument --score: invalid choice"),
    ],
)
def test_errors_name_the_flag(argv, status, message, capsys):
    try:
        got = cli.main(["--model", "tiny-random", *argv])
    except SystemExit as exc:  # argparse's usage errors
        got = exc.code
    err = capsys.readouterr().err
    assert got == status and message in err, err
    assert "Traceback" not in err and "load_model" not in err


def test_an_unreadable_image_and_a_missing_model_name_the_flag(tmp_path, capsys):
    (tmp_path / "notes.jpg").write_text("not an image")
    status, _, err = _run(capsys, "--model", "tiny-random", "--image", str(tmp_path / "notes.jpg"))
    assert status == 1 and f"--image {tmp_path / 'notes.jpg'}: not a readable image file" in err
    status, _, err = _run(capsys, "--model", str(tmp_path / "nothing"))
    assert status == 1 and err.startswith(
        f"python -m blipviz: --model {tmp_path / 'nothing'}: no such folder"
    )
    status, _, err = _run(capsys, "--model", "someone/unknown-net", "--pretrained", "false")
    assert status == 1 and "--model someone/unknown-net: --pretrained false needs the geometry" in err
    assert "pretrained=False" not in err
