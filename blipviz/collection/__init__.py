"""Collections: embed 100,000+ images into a folder, resumably, and search them by text.

:func:`embed_collection` writes a collection folder (:mod:`blipviz.collection.shards` describes the
format); :class:`Collection` opens it for search (FAISS, with BLIP's ITM rerank) and maps.
:func:`score_pairs` writes, by the same machinery, a folder of each image scored against its own
text, opened as :class:`PairCollection` (filtering a dataset, BLIP's CapFilt). The local engine
runs the job in this process; ``engine="ray"`` runs the same job on Ray Data
(:mod:`blipviz.collection.ray_engine`, ``pip install blipviz[ray]``). This layer uses the net's
public ports, the store and the analyses; it knows no display.
"""

from __future__ import annotations

from ..errors import CollectionFolderError
from .collection import Collection
from .embed import embed_collection
from .pairs import PairCollection, score_pairs

__all__ = ["Collection", "CollectionFolderError", "PairCollection", "embed_collection", "score_pairs"]
