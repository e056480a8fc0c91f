"""The benchmark scripts run (``--quick`` on the tiny net, no timing asserted), and their analytic
FLOP counts match what torch's FLOP counter sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks import (
    bench_accelerate,
    bench_cache,
    bench_collection,
    bench_explanation_passes,
    bench_explanations,
    bench_feature_space_explorer,
    bench_itm_matrix,
    bench_memory,
    bench_pairs,
    bench_precision,
    bench_retrieval,
    bench_vision,
    common,
    profile_itm,
)
from blipviz.net.fast_attention import exact_attention
from blipviz.testing import synthetic_images


@pytest.fixture
def shared_tiny(tiny, monkeypatch):
    """The scripts reuse the session's tiny net instead of building their own."""
    monkeypatch.setattr(common, "load", lambda args, **options: tiny)
    return tiny


@pytest.mark.parametrize(
    ("script", "name", "extra"),
    [
        (bench_itm_matrix, "itm_matrix", []),
        (profile_itm, "profile_itm", []),
        (bench_vision, "vision", ["--reps", "1"]),
        (bench_cache, "cache", ["--reps", "1"]),
        (bench_precision, "precision", ["--reps", "1"]),
        (bench_memory, "memory", ["--n-images", "2,3"]),
        (bench_explanations, "explanations", ["--reps", "1"]),
        (
            bench_explanation_passes,
            "explanation_evaluation_floor",
            ["--steps", "2", "--random-orders", "1", "--reps", "1", "--collection-images", "4"],
        ),
        (bench_feature_space_explorer, "feature_space_explorer", ["--reps", "1"]),
        (bench_collection, "collection_throughput", ["--skip", "ray"]),
        (
            bench_collection,
            "collection_search",
            ["--skip", "throughput", "memory", "ray", "--vectors", "clustered"],
        ),
        (bench_retrieval, "retrieval", []),
        (bench_pairs, "pairs_speed", ["--n-images", "2", "--collection-pairs", "6", "--memory-sizes", "10"]),
        (  # torch.compile traced without generating C++ (aot_eager): the wiring, not inductor's time
            bench_accelerate,
            "accelerate",
            ["--backend", "aot_eager", "--force-bf16", "--reps", "1", "--n-images", "2", "--captions", "2"],
        ),
    ],
)
def test_scripts_run_quick(shared_tiny, tmp_path, script, name, extra):
    results = tmp_path / "results.jsonl"
    rows = script.main(["--quick", "--results", str(results), *extra])
    assert rows
    records = [json.loads(line) for line in results.read_text().splitlines()]
    assert records[0]["benchmark"] == name and records[0]["quick"] is True
    assert records[0]["torch"] == torch.__version__ and records[0]["rows"]
    if name == "memory":  # one fresh process per collection size
        assert [r["images"] for r in rows] == [2, 3] and all(r["shape"] == [r["images"], 10] for r in rows)
    if name == "collection_search":  # exact search is exact; the clustered vectors were searched
        assert all(r["vectors"] == "clustered" for r in rows)
        assert [r["recall_at_10"] for r in rows[:2]] == [1.0, 1.0]
    if name == "pairs_speed":  # pair_scores, the per-pair recipe and score_pairs agree; each part wrote
        assert [r["benchmark"] for r in records] == ["pairs_speed", "pairs_collection", "pairs_memory"]
        assert [r["pairs"] for r in records[0]["rows"]] == [2, 10]
        assert all(r["max_abs_diff"] < 1e-5 for r in records[0]["rows"] + records[1]["rows"])
        assert [r["scored"] for r in records[2]["rows"]] == [10]
    if name == "explanation_evaluation_floor":  # each distinct image through the ViT once; a rerank
        # of stored states without any ViT pass, equal to one that passes the candidates again
        assert [r["benchmark"] for r in records] == [
            "explanation_evaluation_floor",
            "collection_rerank_states",
        ]
        assert rows[0]["vit_images"] == rows[0]["distinct_images"]
        assert rows[1]["vit_images"] == 0 and rows[2]["vit_images"] > 0 and rows[2]["max_abs_diff"] < 1e-6
    if name == "profile_itm":  # every second of each call falls in one phase, and each phase ran
        for shape in dict.fromkeys(r["shape"] for r in rows):
            parts = {r["phase"]: r["seconds"] for r in rows if r["shape"] == shape}
            whole = parts.pop("whole call")
            profiled = next(r["profiled_s"] for r in rows if r["shape"] == shape and "profiled_s" in r)
            assert all(parts[phase] > 0 for phase in ("preprocess", "vision", "multimodal"))
            # the profiler saw most of the call and never more than it: no time counted twice
            assert 0.5 * whole < profiled <= 1.05 * whole
            assert sum(parts.values()) == pytest.approx(max(whole, profiled), rel=1e-9)
    if name == "accelerate":  # every variant ran; compiled scores equal eager ones, bfloat16 ones rank alike
        assert [r["variant"] for r in rows] == ["eager", "compile", "autocast", "compile+autocast"]
        assert all(r["wall_s"] > 0 and r["pairs"] == 4 for r in rows)
        assert rows[1]["itm_max_abs_diff"] < 1e-5 and rows[1]["backend"] == "aot_eager"
        assert all(r["itm_spearman"] > 0.9 for r in rows)
        assert bench_accelerate.os.environ.get("BLIPVIZ_FORCE_BF16") is None  # the process's state restored
    if name == "itm_matrix":  # blipviz and the per-pair recipe agree
        assert all(r["max_abs_diff"] < 1e-5 for r in rows)
        assert [r["shape"] for r in rows] == ["2 x 3", "3 x 3", "1 x 5", "5 x 1"]


def test_flop_counts_match_torch_flop_counter(tiny):
    """Vision pass, cross-attention keys/values and the text pass, against FlopCounterMode."""
    config = tiny.config
    image = synthetic_images(1)
    with exact_attention(tiny), torch.inference_mode():
        pixels = torch.stack([tiny.preprocessing(__import__("PIL").Image.fromarray(image[0]))])
        with FlopCounterMode(display=False) as counter:
            tiny.vision_states(pixels)
        vision_total = counter.get_total_flops()
        states = tiny.vision_states(pixels)
        tok = tiny.tokenize(["a dog on the beach", "a cat"])
        with FlopCounterMode(display=False) as counter:
            tiny.itm_logits(tok.select([0]), states)
            tiny.itm_logits(tok.select([1]), states)
        itm_total = counter.get_total_flops()
    head = 2 * (2 * config.text_config.hidden_size * 2)  # itm_head (hidden -> 2) of 2 texts
    lengths = tok.attention_mask.sum(1).tolist()
    expected_itm = 2 * common.cross_kv_flops(config) + common.itm_text_flops(config, lengths) + head
    assert vision_total == common.vision_flops(config)
    assert itm_total == expected_itm


def test_report_shows_the_latest_full_record_of_each_benchmark(tmp_path):
    from benchmarks import report

    results = tmp_path / "results.jsonl"
    lines = [
        {"benchmark": "vision", "quick": False, "date": "d1", "device": "cpu", "cpu_cores": 2, "torch": "t",
         "rows": [{"batch": 1, "images_per_s": 1.0}]},
        {"benchmark": "vision", "quick": False, "date": "d2", "device": "cpu", "cpu_cores": 2, "torch": "t",
         "rows": [{"batch": 1, "images_per_s": 2.0}]},
        {"benchmark": "vision", "quick": True, "date": "d3", "device": "cpu", "cpu_cores": 2, "torch": "t",
         "rows": [{"batch": 1, "images_per_s": 3.0}]},
        {"benchmark": "vision", "quick": False, "date": "d4", "device": "cuda", "dtype": "float16",
         "gpu": "G", "cpu_cores": 2, "torch": "t", "rows": [{"batch": 1, "images_per_s": 400.0}]},
    ]  # fmt: skip
    results.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    text = report.main(["--results", str(results)])
    assert "d2" in text and "| 1 | 2 |" in text and "d1" not in text and "d3" not in text
    # a GPU record is shown beside the CPU one, not instead of it
    assert "### vision, cpu, float32" in text and "### vision, cuda, float16" in text
    assert "| 1 | 400 |" in text


_SHIM = """#!/usr/bin/env bash
# Stands in for python in gpu_check.sh: a benchmark script's command line is written down (one
# argument per line, then a blank line) and not run; with RECORD_ALL=1 every command is.
if [[ "$1" == benchmarks/*.py || -n "${RECORD_ALL:-}" ]]; then
    printf '%s\\n' "$@" >>"$COMMANDS"
    printf '\\n' >>"$COMMANDS"
    [[ "$1" == "${FAIL_STEP:-none}" ]] && exit 3
    exit 0
fi
exec "$REAL_PYTHON" "$@"
"""

#: The benchmark scripts gpu_check.sh runs on a CPU, in order (report.py writes the tables).
GPU_CHECK_SCRIPTS = [
    "bench_vision", "bench_itm_matrix", "bench_precision", "bench_cache", "bench_memory", "bench_pairs",
    "report",
]  # fmt: skip


class _Parsed(Exception):
    """Raised by a benchmark's parser once its command line is read: nothing runs."""


def _gpu_check(tmp_path, **env_extra):
    import os
    import stat
    import subprocess
    import sys
    from pathlib import Path

    shim = tmp_path / "python"
    shim.write_text(_SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    commands = tmp_path / "commands.txt"
    out = tmp_path / "out"
    env = {**os.environ, "DEVICE": "cpu", "QUICK": "1", "PYTHON": str(shim), "REAL_PYTHON": sys.executable}
    env.update(COMMANDS=str(commands), **env_extra)
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", str(out)], cwd=root, env=env, capture_output=True, text=True
    )
    text = commands.read_text() if commands.exists() else ""
    recorded = [block.split("\n") for block in text.split("\n\n") if block.strip()]
    return run, out, recorded


def test_gpu_check_script_runs_its_steps_quick_on_cpu(tmp_path, monkeypatch):
    """benchmarks/gpu_check.sh is meant for a rare machine with a GPU; its plumbing runs here on CPU:
    its version and CUDA-test steps for real, and each benchmark step's command line, which must be
    one its script accepts (the scripts themselves run in test_scripts_run_quick)."""
    import importlib

    run, out, recorded = _gpu_check(tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "passed" in (out / "tests.log").read_text()  # the CUDA tests ran (and skipped on CPU)
    assert "torch" in (out / "versions.log").read_text()
    scripts = [Path(argv[0]).stem for argv in recorded]
    assert scripts == GPU_CHECK_SCRIPTS
    results = str(out / "results.jsonl")
    real_parser = common.parser

    def parser(description):
        p = real_parser(description)
        parse = p.parse_args

        def parse_only(argv=None, namespace=None):
            raise _Parsed(parse(argv, namespace))

        p.parse_args = parse_only
        return p

    monkeypatch.setattr(common, "parser", parser)
    for argv in recorded[:-1]:
        assert argv[argv.index("--results") + 1] == results and "--quick" in argv
        assert argv[argv.index("--device") + 1] == "cpu"
        module = importlib.import_module(f"benchmarks.{Path(argv[0]).stem}")
        with pytest.raises(_Parsed) as parsed:  # argparse exits (SystemExit) on an unknown option
            module.main(argv[1:])
        assert parsed.value.args[0].quick and str(parsed.value.args[0].results) == results
    from benchmarks import report

    argv = recorded[-1]
    assert argv[1:] == ["--results", results, "--include-quick"]
    (out / "results.jsonl").write_text("")
    assert isinstance(report.main(argv[1:]), str)


def test_gpu_check_script_reports_a_failed_step_and_runs_the_rest(tmp_path):
    """One failing step: the script says so, still runs every later step, and exits non-zero."""
    run, _, recorded = _gpu_check(tmp_path, RECORD_ALL="1", FAIL_STEP="benchmarks/bench_cache.py")
    assert run.returncode == 1
    assert "== cache failed (3)" in run.stdout
    scripts = [Path(argv[0]).stem for argv in recorded if argv[0].startswith("benchmarks/")]
    assert scripts == GPU_CHECK_SCRIPTS  # the steps after the failure ran
