"""The Ray engine: actors sized from what Ray reports (the small-machine case), and the same
collection as the local engine on a local 2-CPU Ray with 2 actors of half a CPU each. Ray's start-up
(a timeout is an EngineError that says how to give it longer), the pool passed as Ray Data's
ActorPoolStrategy, and an unreadable item's record naming its position are tested without Ray."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import numpy as np
import pytest

from blipviz.collection import embed_collection, ray_engine
from blipviz.collection.ray_engine import actor_resources, start_ray
from blipviz.errors import BlipvizError, EngineError, InputError
from blipviz.testing import assert_close, synthetic_images

# Ray's driver talks to its local processes over TCP on 127.0.0.1
pytestmark = pytest.mark.enable_socket


def test_two_actors_on_two_cpus_leave_the_read_task_a_cpu():
    """With 1 CPU per actor a 2-CPU Ray never finishes (the read task waits for a CPU forever)."""
    res = actor_resources(2, None, None, {"CPU": 2.0})
    assert res["concurrency"] == 2 and res["num_cpus"] == 0.5
    assert res["concurrency"] * res["num_cpus"] <= 2.0 - 1.0
    assert res["threads"] == 1


def test_actor_resources_scale_with_the_cluster():
    assert actor_resources(None, None, None, {"CPU": 16.0}) == {
        "concurrency": 15,
        "num_cpus": 1.0,
        "num_gpus": 0.0,
        "threads": 1,
    }
    one = actor_resources(2, None, None, {"CPU": 1.0})
    assert one["num_cpus"] * 2 <= 0.5  # half the CPU stays free for reading
    gpu = actor_resources(None, None, 1, {"CPU": 8.0, "GPU": 4.0})
    assert gpu["concurrency"] == 4 and gpu["num_gpus"] == 1.0
    with pytest.raises(InputError, match="no GPU"):
        actor_resources(None, None, 1, {"CPU": 8.0})


TIMED_OUT = (
    "The current node timed out during startup. This could happen because some of the raylet failed "
    "to startup or the GCS has become overloaded."
)


class FakeRay:
    """Stands for the ``ray`` module at start-up: ``init`` takes ``seconds``, then fails with each
    of ``failures`` in turn."""

    def __init__(self, *failures: BaseException, initialized: bool = False, seconds: float = 0.0) -> None:
        self.failures = list(failures)
        self.initialized = initialized
        self.seconds = seconds
        self.inits: list[dict] = []
        self.shutdowns = 0

    def is_initialized(self) -> bool:
        return self.initialized

    def init(self, **options) -> None:
        self.inits.append(options)
        time.sleep(self.seconds)
        if self.failures:
            raise self.failures.pop(0)
        self.initialized = True

    def shutdown(self) -> None:
        self.shutdowns += 1


def test_a_ray_start_up_that_times_out_is_an_engine_error_that_says_how_to_give_it_longer(monkeypatch):
    """Before: Ray's bare Exception, from ray.init inside embed_collection."""
    fake = FakeRay(Exception(TIMED_OUT), Exception(TIMED_OUT), seconds=0.05)
    monkeypatch.setattr(ray_engine, "_ray", lambda: fake)
    with pytest.raises(EngineError, match=r"did not start within .*start_timeout=300") as caught:
        start_ray(0.01)  # Ray's own 30 s, in short
    assert isinstance(caught.value, RuntimeError) and isinstance(caught.value, BlipvizError)
    assert "ray.init()" in str(caught.value) and "timed out during startup" in str(caught.value)
    assert len(fake.inits) == 1 and fake.shutdowns == 1  # its half-started processes stopped
    assert fake.inits[0] == {"include_dashboard": False, "configure_logging": False, "log_to_driver": False}


def test_a_slow_ray_start_is_tried_again_within_the_time_given(monkeypatch):
    fake = FakeRay(Exception(TIMED_OUT), TimeoutError("GCS"))
    monkeypatch.setattr(ray_engine, "_ray", lambda: fake)
    start_ray(60, num_cpus=2)
    assert len(fake.inits) == 3 and fake.shutdowns == 2 and fake.initialized
    assert fake.inits[-1]["num_cpus"] == 2


def test_ray_that_cannot_start_at_all_or_is_running_already(monkeypatch):
    broken = FakeRay(ValueError("no such address"))
    monkeypatch.setattr(ray_engine, "_ray", lambda: broken)
    with pytest.raises(EngineError, match=r"could not start.*ValueError: no such address.*engine='local'"):
        start_ray(600)
    assert len(broken.inits) == 1  # not a matter of time: not tried again
    running = FakeRay(initialized=True)
    monkeypatch.setattr(ray_engine, "_ray", lambda: running)
    start_ray()
    assert running.inits == []  # the user's Ray, as it is
    with pytest.raises(InputError, match="start_timeout"):
        start_ray(0)


def test_an_unknown_ray_option_is_refused_before_ray_starts(monkeypatch, tiny):
    monkeypatch.setattr(ray_engine, "_ray", lambda: pytest.fail("Ray was started"))
    with pytest.raises(InputError, match=r"unknown engine='ray' option 'actors'; it takes 'concurrency'"):
        ray_engine.run_on_ray(tiny, None, 0, None, 4, False, actors=2)


def test_the_actor_pool_is_ray_data_s_actor_pool_strategy_not_the_deprecated_concurrency(
    monkeypatch, tiny, tmp_path
):
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'blipviz[ray]'")
    from PIL import Image

    from blipviz.collection.sources import as_source

    for i in range(3):
        Image.fromarray(synthetic_images(1)[0]).save(tmp_path / f"{i}.png")
    calls = []

    class Dataset:
        def map_batches(self, fn, **options):
            calls.append(options)
            return SimpleNamespace(iter_batches=lambda **_: iter(()))

    fake = FakeRay(initialized=True)  # a running Ray, as run_on_ray sees it
    fake.cluster_resources = lambda: {"CPU": 4.0}
    fake.put = lambda value: value
    fake.data = SimpleNamespace(
        DataContext=ray.data.DataContext,
        ActorPoolStrategy=ray.data.ActorPoolStrategy,
        from_items=lambda items: Dataset(),
    )
    monkeypatch.setattr(ray_engine, "_ray", lambda: fake)
    from blipviz.collection.jobs import EmbeddingJob

    writer = SimpleNamespace(job=EmbeddingJob(256), n_errors=0)  # takes no rows: the fake maps none
    ray_engine.run_on_ray(tiny, as_source(tmp_path), 0, writer, 4, False, concurrency=3)
    (options,) = calls
    assert "concurrency" not in options
    assert isinstance(options["compute"], ray.data.ActorPoolStrategy)
    assert options["compute"].min_size == options["compute"].max_size == 3
    assert options["num_cpus"] == actor_resources(3, None, None, {"CPU": 4.0})["num_cpus"]


def test_an_unreadable_item_on_a_ray_actor_names_its_source_position(tiny, tmp_path):
    """Before: every record said "image -1" (the actors numbered no row)."""
    pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'blipviz[ray]'")
    import pyarrow as pa
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(synthetic_images(1)[0]).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    embedder = ray_engine.Embedder(ray_engine.net_recipe(tiny), {}, 1, False)
    records = {
        ray_engine.POSITION: [41, 42],
        "id": ["good.png", "bad.png"],
        "item": [str(good), str(bad)],
        "locator": [str(good), str(bad)],
    }
    out = embedder(pa.table(records))
    assert out["error"][0] is None and "image 42" in out["error"][1] and "image -1" not in out["error"][1]
    assert out["position"].tolist() == [41, 42]
    columns = {"image_column": "image", "id_column": None, "text_column": None}
    from_dataset = ray_engine.Embedder(ray_engine.net_recipe(tiny), columns, 1, False)
    batch = pa.table({ray_engine.POSITION: [7], "image": [{"bytes": b"junk", "path": None}]})
    out = from_dataset(batch)
    assert "image 7" in out["error"][0] and out["id"].tolist() == ["7"]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'blipviz[ray]'")
    started = not ray.is_initialized()
    if started:
        try:  # a busy 2-core machine may need more than Ray's 30 s: tried again for up to 5 minutes
            start_ray(300, num_cpus=2)
        except EngineError as exc:  # only a machine where Ray cannot start at all skips
            pytest.skip(f"Ray could not start on this machine: {exc}")
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def dataset():
    import datasets
    from PIL import Image

    images = [Image.fromarray(a) for a in synthetic_images(96, size=(24, 32))]
    return datasets.Dataset.from_dict(
        {"image": images, "name": [f"r{i:02d}" for i in range(96)]},
        features=datasets.Features({"image": datasets.Image(), "name": datasets.Value("string")}),
    )


def test_the_ray_engine_gives_the_local_engine_s_collection(tiny, dataset, tmp_path, local_ray):
    options = {"id_column": "name", "batch_size": 16, "shard_size": 32, "progress": False}
    local = embed_collection(tiny, dataset, tmp_path / "local", **options)
    on_ray = embed_collection(tiny, dataset, tmp_path / "ray", engine="ray", concurrency=2, **options)
    assert on_ray.ids == local.ids
    assert_close(on_ray.embeddings, local.embeddings)
    manifest = on_ray.manifest
    assert [s["start"] for s in manifest["shards"]] == [0, 32, 64]
    assert manifest["net"] == local.manifest["net"]
    assert os.path.isfile(on_ray.folder / "embeddings.npy")
    assert np.isfinite(on_ray.embeddings).all()


def test_rows_that_come_early_wait_for_their_place_and_none_is_lost_or_repeated():
    import random

    from blipviz.collection.ray_engine import in_source_order

    positions = list(range(5, 105))
    shuffled = positions[:]
    random.Random(0).shuffle(shuffled)
    assert list(in_source_order(((p, f"row {p}") for p in shuffled), 5)) == [f"row {p}" for p in positions]
    with pytest.raises(RuntimeError, match="position 7 twice"):
        list(in_source_order([(5, "a"), (7, "c"), (7, "c")], 5))
    with pytest.raises(RuntimeError, match="no row for source position 6"):
        list(in_source_order([(5, "a"), (7, "c")], 5))


def test_a_streamed_dataset_and_a_folder_on_ray_keep_the_source_order(tiny, dataset, tmp_path, local_ray):
    options = {"batch_size": 8, "shard_size": 16, "progress": False}
    local = embed_collection(tiny, dataset, tmp_path / "local", id_column="name", **options)
    streamed = embed_collection(
        tiny, dataset.to_iterable_dataset(), tmp_path / "stream", id_column="name", engine="ray", **options
    )
    assert streamed.ids == local.ids
    assert_close(streamed.embeddings, local.embeddings)
    folder = tmp_path / "images"
    folder.mkdir()
    for i, record in enumerate(dataset.select(range(40))):
        record["image"].save(folder / f"{i:03d}.png")
    (folder / "040.png").write_bytes(b"not a png")  # its record names position 40, as locally
    from_files = embed_collection(tiny, folder, tmp_path / "files", engine="ray", **options)
    assert from_files.ids == [f"{i:03d}.png" for i in range(40)]
    assert_close(from_files.embeddings, local.embeddings[:40])
    files_locally = embed_collection(tiny, folder, tmp_path / "files-local", **options)
    assert from_files.errors.to_dict("records") == files_locally.errors.to_dict("records")
    assert from_files.errors["position"].tolist() == [40] and "image 40" in from_files.errors["reason"][0]


def test_score_pairs_on_ray_equals_the_local_engine_row_for_row(tiny, dataset, tmp_path, local_ray):
    from blipviz import score_pairs
    from blipviz.testing import net_depth

    captioned = dataset.add_column("text", [f"picture {i % 7} of a scene" for i in range(len(dataset))])
    options = {"id_column": "name", "batch_size": 16, "shard_size": 32, "progress": False}
    local = score_pairs(tiny, captioned, tmp_path / "local", **options).to_pandas()
    on_ray = score_pairs(
        tiny, captioned, tmp_path / "ray", engine="ray", concurrency=2, **options
    ).to_pandas()
    assert on_ray["id"].tolist() == local["id"].tolist() and on_ray["error"].isna().all()
    for column in ("itm", "itm_logit", "cosine"):
        assert_close(on_ray[column].to_numpy(), local[column].to_numpy(), depth=net_depth(tiny))
    assert on_ray["truncated"].tolist() == local["truncated"].tolist()
