"""The long jobs' opt-in acceleration (``compile=True``, ``autocast="bfloat16"``) on the tiny net:
compiled results equal eager ones within the suite's float32 tolerance, bfloat16 results agree with
float32 ones in rank and come out float32, both options recorded (manifest, provenance) and bound
to a resumed collection, and every refusal named before anything is written.

Compilation is the expensive part (inductor writes and compiles C++): the jobs' tests compile with
torch's ``aot_eager`` backend, which traces the ViT as inductor does (dynamic batch, one padded
batch of one) without generating code; one test compiles the tiny ViT with inductor itself.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import blipviz
from blipviz import CollectionFolderError, InputError, InputTypeError, PairCollection
from blipviz.collection.jobs import PairJob
from blipviz.collection.shards import MANIFEST_NAME
from blipviz.net import accelerate
from blipviz.net.provenance import PROVENANCE_KEYS
from blipviz.testing import assert_close, net_depth, synthetic_images, tolerance

WORDS = "a dog cat man two red blue on the beach street sofa running sitting old bowl of fruit".split()
#: bfloat16 autocast against float32: ranks of the scores. bfloat16 keeps 8 significant bits, so each
#: score moves by a few of its ulps (eps 7.8e-3) per layer; only scores closer than that swap ranks.
#: On the tiny net's informative random weights (ITM probabilities spread with std 0.35, cosines
#: 0.05) the measured Spearman is 0.9996; on the full geometry a bfloat16 net gave 0.997
#: (bench_precision). 0.99 leaves room for unlucky draws, while a lost mask, a wrong token or a
#: pass left in bfloat16 without its float32 head moves scores by 0.1 or more and ranks far more.
MIN_SPEARMAN = 0.99
#: Per layer, 4 ulps of bfloat16: the largest probability change allowed (0.125 at depth 4).
BF16_ULPS = 4


def _spearman(a, b) -> float:
    ra = np.argsort(np.argsort(np.asarray(a, dtype=float).ravel()))
    rb = np.argsort(np.argsort(np.asarray(b, dtype=float).ravel()))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture
def cheap_compile(monkeypatch):
    """torch.compile with the aot_eager backend: traced as for inductor, no C++ generated."""
    monkeypatch.setattr(accelerate, "COMPILE_BACKEND", "aot_eager")


@pytest.fixture
def forced_bf16(monkeypatch):
    """bfloat16 autocast allowed on any CPU (emulated where the CPU has no bfloat16 arithmetic)."""
    monkeypatch.setenv(accelerate.FORCE_BF16_ENV, "1")


def _pairs_csv(tmp_path, n_images: int = 5, captions: int = 2, seed: int = 0):
    """A CSV of ``n_images`` PNG files with ``captions`` generated texts each."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    rows = ["image,text"]
    for i, array in enumerate(synthetic_images(n_images, seed=seed, size=(40, 48))):
        Image.fromarray(array).save(tmp_path / f"{i}.png")
        for _ in range(captions):
            rows.append(f"{i}.png,{' '.join(rng.choice(WORDS, rng.integers(3, 9)))}")
    path = tmp_path / "pairs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _manifest(folder) -> dict:
    return json.loads((folder / MANIFEST_NAME).read_text())


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"compile": "yes"}, InputTypeError, "compile must be True or False, got str 'yes'"),
        ({"compile": 1}, InputTypeError, "compile must be True or False"),
        ({"autocast": "float16"}, InputError, "unknown autocast 'float16'; allowed values: None, 'bfloat16'"),
        ({"autocast": torch.bfloat16}, InputError, "unknown autocast torch.bfloat16"),
    ],
)
def test_bad_values_are_named_before_a_folder_is_written(tiny, tmp_path, options, error, message):
    csv = _pairs_csv(tmp_path, 1, 1)
    with pytest.raises(error, match=re.escape(message)):
        blipviz.score_pairs(tiny, csv, tmp_path / "out", progress=False, **options)
    with pytest.raises(error, match=r"compile|autocast"):
        blipviz.embed_collection(tiny, [tmp_path / "0.png"], tmp_path / "coll", progress=False, **options)
    with pytest.raises(error, match=r"compile|autocast"):
        blipviz.evaluate_retrieval(tiny, synthetic_images(1), ["a dog"], text_image=[0], **options)
    assert not (tmp_path / "out").exists() and not (tmp_path / "coll").exists()
    assert tiny.acceleration == accelerate.EAGER


def test_bf16_autocast_is_refused_on_a_cpu_without_native_bf16_unless_forced(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv(accelerate.FORCE_BF16_ENV, raising=False)
    monkeypatch.setattr(accelerate, "cpu_bf16_support", lambda: [])
    csv = _pairs_csv(tmp_path, 1, 1)
    with pytest.raises(InputError, match=r"native bfloat16 .*AVX512-BF16.*BLIPVIZ_FORCE_BF16=1") as caught:
        blipviz.score_pairs(tiny, csv, tmp_path / "out", progress=False, autocast="bfloat16")
    assert "emulated and slower than float32" in str(caught.value)
    assert not (tmp_path / "out").exists()
    monkeypatch.setenv(accelerate.FORCE_BF16_ENV, "1")
    with tiny.accelerated(autocast="bfloat16") as options:
        assert options.autocast == "bfloat16" and tiny.acceleration is options
    monkeypatch.delenv(accelerate.FORCE_BF16_ENV)
    monkeypatch.setattr(accelerate, "cpu_bf16_support", lambda: ["avx512_bf16"])
    with tiny.accelerated(autocast="bfloat16"):
        pass
    assert tiny.acceleration == accelerate.EAGER


def test_compile_without_a_cxx_compiler_is_a_named_error(tiny, tmp_path, monkeypatch):
    """inductor's own compiler search finds nothing (its search list faked): refused up front."""
    from torch._inductor import config

    monkeypatch.delenv("TORCH_INDUCTOR_INSTALL_GXX", raising=False)
    with config.patch({"cpp.cxx": (None, "blipviz-no-such-compiler")}):
        assert accelerate.cxx_compiler() is None
        with pytest.raises(InputError, match=r"compile=True needs a C\+\+ compiler.*leave compile out"):
            blipviz.embed_collection(tiny, [tmp_path / "x.png"], tmp_path / "coll", compile=True)
    assert not (tmp_path / "coll").exists()
    assert accelerate.cxx_compiler() is not None  # torch's setting restored


def test_options_a_net_cannot_take_are_named(tiny, tmp_path, monkeypatch, forced_bf16):
    from blipviz.store import FeatureCache

    half = blipviz.load_model("tiny-random", dtype=torch.bfloat16)
    with (
        pytest.raises(InputError, match="this net is bfloat16 already"),
        half.accelerated(autocast="bfloat16"),
    ):
        pass
    monkeypatch.setattr(tiny, "quantization", "int8")
    with pytest.raises(InputError, match=r"this net is quantised \(int8\)"), tiny.accelerated(compile=True):
        pass
    monkeypatch.setattr(tiny, "quantization", None)
    monkeypatch.setattr(tiny, "feature_cache", FeatureCache(tmp_path / "cache"))
    with pytest.raises(InputError, match="feature cache"):
        blipviz.evaluate_retrieval(tiny, synthetic_images(1), ["a dog"], text_image=[0], autocast="bfloat16")


def test_compiled_jobs_equal_eager_ones_and_say_so(tiny, tmp_path, cheap_compile):
    csv = _pairs_csv(tmp_path, 5, 2)
    eager = blipviz.score_pairs(tiny, csv, tmp_path / "eager", progress=False, batch_size=4)
    fast = blipviz.score_pairs(tiny, csv, tmp_path / "fast", progress=False, batch_size=4, compile=True)
    for column in ("itm", "itm_logit", "cosine"):
        assert_close(fast.to_pandas()[column], eager.to_pandas()[column], depth=net_depth(tiny))
    assert fast.manifest["acceleration"] == {"compile": True, "autocast": None}
    assert fast.manifest["provenance"]["compile"] is True and eager.manifest["provenance"]["compile"] is False
    # a collection: batches of 4, then 1 (padded to 2 for the compiled ViT)
    paths = [tmp_path / f"{i}.png" for i in range(5)]
    plain = blipviz.embed_collection(tiny, paths, tmp_path / "c0", batch_size=4, progress=False)
    compiled = blipviz.embed_collection(
        tiny, paths, tmp_path / "c1", batch_size=4, progress=False, compile=True
    )
    assert_close(compiled.embeddings, plain.embeddings, depth=net_depth(tiny, "image"))
    assert _manifest(tmp_path / "c1")["acceleration"]["compile"] is True
    images, texts = synthetic_images(3, seed=1), ["a dog", "two cats", "a red car"]
    ref = blipviz.evaluate_retrieval(tiny, images, texts, text_image=[0, 1, 2], batch_size=2)
    got = blipviz.evaluate_retrieval(tiny, images, texts, text_image=[0, 1, 2], batch_size=2, compile=True)
    assert_close(got.score_i2t, ref.score_i2t, depth=net_depth(tiny))
    assert got.provenance is not None and list(got.provenance) == list(PROVENANCE_KEYS)
    assert got.provenance["compile"] is True and got.provenance["autocast"] is None
    assert tiny.acceleration == accelerate.EAGER


@settings(max_examples=examples(3))
@given(seed=st.integers(0, 2**16), n_texts=st.integers(3, 8))
def test_bf16_autocast_agrees_with_float32_in_rank_and_returns_float32(tiny, seed, n_texts):
    import os

    os.environ[accelerate.FORCE_BF16_ENV] = "1"  # hypothesis: no function-scoped fixture
    try:
        rng = np.random.default_rng(seed)
        images = synthetic_images(4, seed=seed)
        texts = [" ".join(rng.choice(WORDS, rng.integers(2, 10))) for _ in range(n_texts)]
        with torch.inference_mode():
            states = tiny.encode_images(images, keep_raw=True)
            exact = (
                np.asarray(tiny.itm_scores(images, texts)),
                np.asarray(tiny.cosine_scores(images, texts)),
            )
            with tiny.accelerated(autocast="bfloat16"):
                fast_states = tiny.encode_images(images, keep_raw=True)
                fast = (
                    np.asarray(tiny.itm_scores(images, texts)),
                    np.asarray(tiny.cosine_scores(images, texts)),
                )
    finally:
        del os.environ[accelerate.FORCE_BF16_ENV]
    assert fast_states.raw.dtype == torch.float32 and fast_states.embeddings.dtype == torch.float32
    assert not torch.equal(fast_states.raw, states.raw)  # it did run in bfloat16
    for a, b in zip(fast, exact, strict=True):
        assert a.dtype == np.float64 and _spearman(a, b) >= MIN_SPEARMAN
    atol = tolerance(torch.bfloat16, depth=net_depth(tiny), magnitude=1.0, ulps=BF16_ULPS)
    assert np.abs(fast[0] - exact[0]).max() <= atol


def test_bf16_pairs_are_recorded_and_bind_a_resumed_folder(tiny, tmp_path, monkeypatch, forced_bf16):
    csv = _pairs_csv(tmp_path, 6, 2, seed=2)
    exact = blipviz.score_pairs(tiny, csv, tmp_path / "exact", progress=False, batch_size=4).to_pandas()
    out = tmp_path / "bf16"
    real = PairJob.compute
    calls = []

    def killed_after_one_batch(self, model, rows):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(self, model, rows)

    monkeypatch.setattr(PairJob, "compute", killed_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        blipviz.score_pairs(tiny, csv, out, progress=False, batch_size=4, shard_size=4, autocast="bfloat16")
    monkeypatch.setattr(PairJob, "compute", real)
    assert _manifest(out)["acceleration"] == {"compile": False, "autocast": "bfloat16"}
    assert len(_manifest(out)["shards"]) == 1
    with pytest.raises(CollectionFolderError, match="was started with compile=False, autocast='bfloat16'"):
        blipviz.score_pairs(tiny, csv, out, progress=False)  # eager rows would join bfloat16 ones
    done = blipviz.score_pairs(tiny, csv, out, progress=False, autocast="bfloat16")
    assert done.manifest["provenance"]["autocast"] == "bfloat16"
    # finished: opened as it was made, whatever the options now (nothing is computed)
    assert len(blipviz.score_pairs(tiny, csv, out, progress=False)) == len(exact)
    got = PairCollection.open(out).to_pandas()
    for column in ("itm", "cosine"):
        assert got[column].dtype == np.float64
        assert _spearman(got[column], exact[column]) >= MIN_SPEARMAN
    # a folder written before the options existed resumes as eager
    legacy = tmp_path / "legacy"
    monkeypatch.setattr(PairJob, "compute", killed_after_one_batch)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        blipviz.score_pairs(tiny, csv, legacy, progress=False, batch_size=4, shard_size=4)
    monkeypatch.setattr(PairJob, "compute", real)
    manifest = _manifest(legacy)
    del manifest["acceleration"]
    (legacy / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CollectionFolderError, match="was started with compile=False, autocast=None"):
        blipviz.score_pairs(tiny, csv, legacy, progress=False, autocast="bfloat16")
    assert len(blipviz.score_pairs(tiny, csv, legacy, progress=False)) == len(exact)


@pytest.mark.slow
def test_inductor_compiled_vit_equals_eager(tiny):
    """One real compilation (inductor, generated C++) of the tiny ViT: batches of 3 and 1 (padded)."""
    images = synthetic_images(3, seed=5)
    with torch.inference_mode():
        pixels = torch.stack([tiny.preprocessing(__import__("PIL").Image.fromarray(a)) for a in images])
        eager = tiny.vision_states(pixels)
        with tiny.accelerated(compile=True):
            compiled = tiny.vision_states(pixels)
            one = tiny.vision_states(pixels[:1])
    assert compiled.dtype == torch.float32 and compiled.shape == eager.shape
    assert_close(compiled, eager, depth=net_depth(tiny, "image"))
    assert_close(one, eager[:1], depth=net_depth(tiny, "image"))
