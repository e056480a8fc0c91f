"""A stateful property test of collection folders (hypothesis ``RuleBasedStateMachine``).

Random sequences of: embedding a source into one folder (whole, or killed after any number of
batches, between or inside shards), with the source it was started on or another one with the
same file names and other pixels; damaging files (a truncated or deleted shard, a flipped byte in
the embeddings, a deleted manifest); a user's own files put into the folder; opening and
searching. A plain model in memory says what the folder must hold. The invariants after every step:

- never a row from another source: whatever is returned holds exactly the embeddings of the one
  source the folder was started on (compared with an uninterrupted run of that source);
- never a user's file lost or changed;
- every failure is a :class:`blipviz.BlipvizError`, never a raw error from below.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from blipviz import BlipvizError
from blipviz.collection import Collection, embed_collection
from blipviz.testing import synthetic_images

N = 4
SHARD = 2
BATCH = 1
SOURCES = ("a", "b")
USER_FILES = {
    "notes.txt": "a user's notes",
    "shards/shard-old.parquet": "a user's export",
    "shards/shard-000009.parquet": "a user's file at a shard name no run reaches",
    ".blipviz-tmp-notes.txt": "a user's file named like a temporary",
}


class Killed(Exception):
    """Stands for a kill of the process in the middle of a run."""


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two folders with the same file names and other pixels, and each one's uninterrupted
    collection embeddings."""
    from PIL import Image

    import blipviz

    model = blipviz.load_model("tiny-random")
    base = tmp_path_factory.mktemp("sources")
    reference = {}
    for seed, name in enumerate(SOURCES):
        root = base / name
        root.mkdir()
        for i, a in enumerate(synthetic_images(N, size=(16, 16), seed=50 + seed)):
            Image.fromarray(a).save(root / f"p{i}.png")
        whole = embed_collection(
            model, root, base / f"whole-{name}", batch_size=BATCH, shard_size=SHARD, progress=False
        )
        reference[name] = (whole.ids, np.array(whole.embeddings))
    return model, base, reference


class CollectionFolders(RuleBasedStateMachine):
    """One collection folder under random runs, damage and a user's files."""

    model = None
    base: Path
    reference: dict

    @initialize()
    def start(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="blipviz-states-"))
        self.out = self.tmp / "c"
        self.bound: str | None = None  # the source the folder was started on
        self.complete = False
        self.damaged = False  # a file blipviz wrote was changed behind its back
        self.user: dict[str, str] = {}

    def teardown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------ helpers
    def _check(self, collection: Collection, source: str) -> bool:
        """A returned collection holds exactly the rows of ``source``, no other source's (or, damaged
        after it was written, refuses to serve them)."""
        ids, embeddings = self.reference[source]
        assert collection.ids == ids
        try:
            served = np.asarray(collection.embeddings)
        except BlipvizError:
            assert self.damaged
            return False
        np.testing.assert_array_equal(served, embeddings)
        return True

    def _embed(self, source: str, killed_after: int | None):
        real = type(self.model).iter_image_states
        calls = {"n": 0}

        def failing(net, *args, **kwargs):
            calls["n"] += 1
            if killed_after is not None and calls["n"] > killed_after:
                raise Killed
            yield from real(net, *args, **kwargs)

        with mock.patch.object(type(self.model), "iter_image_states", failing):
            return embed_collection(
                self.model, self.base / source, self.out, batch_size=BATCH, shard_size=SHARD, progress=False
            )

    def _rows_on_disk(self) -> bool:
        return bool(list((self.out / "shards").glob("shard-00000[0-8].parquet")))

    def _refusal_expected(self, source: str) -> bool:
        foreign = self.bound is None and bool(self.user)  # a user's files and no manifest
        return self.bound not in (None, source) or self.damaged or foreign

    # -------------------------------------------------------------------------------- rules
    @rule(source=st.sampled_from(SOURCES), killed_after=st.none() | st.integers(0, N))
    def embed(self, source, killed_after):
        try:
            collection = self._embed(source, killed_after)
        except Killed:
            if self._rows_on_disk():  # the folder holds rows of a source now: it is bound to it
                assert self.damaged or self.bound in (None, source), f"{self.bound}'s folder took {source}"
                self.bound = source
            return
        except BlipvizError:
            assert self._refusal_expected(source)
            return
        # a damaged folder may have lost every row of its first source; otherwise it is bound
        assert self.damaged or self.bound in (None, source), f"a folder of {self.bound} took rows of {source}"
        self.bound = source
        self.complete = True
        if self._check(collection, source):
            self.damaged = False  # every file verified: whole again

    @rule(k=st.integers(1, N))
    def open_and_search(self, k):
        try:
            collection = Collection.open(self.out, self.model)
            found = collection.search("a photo", k=k, rerank=0)
        except BlipvizError:
            return
        assert self.complete and self.bound is not None
        ids, embeddings = self.reference[self.bound]
        assert collection.ids == ids
        query = self.model.encode_texts(["a photo"]).embeddings.numpy()[0]
        cosine = embeddings @ query
        top = np.sort(cosine)[::-1][: min(k, N)]
        np.testing.assert_allclose(found["cosine"].to_numpy(), top, atol=1e-5)
        np.testing.assert_allclose(
            cosine[found["image_index"].to_numpy()], found["cosine"].to_numpy(), atol=1e-5
        )

    @rule(what=st.sampled_from(["truncate shard", "delete shard", "flip embeddings", "delete manifest"]))
    def damage(self, what):
        shards = sorted((self.out / "shards").glob("shard-00000[0-8].parquet")) if self.out.is_dir() else []
        if what in ("truncate shard", "delete shard") and shards:
            shard = shards[len(shards) // 2]
            if what == "delete shard":
                shard.unlink()
            else:
                shard.write_bytes(shard.read_bytes()[:30])
        elif what == "flip embeddings" and (self.out / "embeddings.npy").is_file():
            path = self.out / "embeddings.npy"
            data = bytearray(path.read_bytes())
            data[-7] ^= 0x10
            path.write_bytes(bytes(data))
        elif what == "delete manifest" and (self.out / "blipviz-collection.json").is_file():
            (self.out / "blipviz-collection.json").unlink()
            if not self._rows_on_disk():
                self.bound, self.complete = None, False  # nothing of a source is left: a new folder
                return
        else:
            return
        self.damaged = True

    @rule(name=st.sampled_from(sorted(USER_FILES)))
    def add_user_file(self, name):
        path = self.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(USER_FILES[name])
            self.user[name] = USER_FILES[name]

    # ---------------------------------------------------------------------------- invariants
    @invariant()
    def users_files_are_intact(self):
        for name, text in getattr(self, "user", {}).items():
            assert (self.out / name).read_text() == text, f"the user's {name} was changed or deleted"


@pytest.mark.slow
def test_collection_folders_under_random_runs_damage_and_users_files(sources):
    model, base, reference = sources
    CollectionFolders.model = model
    CollectionFolders.base = base
    CollectionFolders.reference = reference
    run = CollectionFolders.TestCase
    run.settings = settings(
        max_examples=int(os.environ.get("BLIPVIZ_STATE_EXAMPLES", "10")),
        stateful_step_count=6,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    run().runTest()
