"""The Ray engine: actors sized from what Ray reports (the small-machine case), and the same
collection as the local engine on a local 2-CPU Ray with 2 actors of half a CPU each."""

from __future__ import annotations

import os

import numpy as np
import pytest

from blipviz.collection import embed_collection
from blipviz.collection.ray_engine import actor_resources
from blipviz.errors import InputError
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


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'blipviz[ray]'")
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
        except Exception as exc:  # only a machine where Ray cannot start at all skips
            pytest.skip(f"Ray could not start on this machine: {type(exc).__name__}: {exc}")
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
    from_files = embed_collection(tiny, folder, tmp_path / "files", engine="ray", **options)
    assert from_files.ids == [f"{i:03d}.png" for i in range(40)]
    assert_close(from_files.embeddings, local.embeddings[:40])
