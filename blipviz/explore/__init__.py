"""The interactive explorers: the layer above analyses and displays.

:mod:`blipviz.explore.widgets` (``RankingExplorer``, ``MatrixExplorer``, ``AttentionExplorer``;
ipywidgets) and :mod:`blipviz.explore.feature_space_explorer` (``FeatureSpaceExplorer``;
jupyter-scatter, ``pip install 'blipviz[explorer]'``). An explorer calls analyses and the net's
encoders and draws with :mod:`blipviz.display`; nothing below it imports an explorer. Neither module
is imported here: ``import blipviz`` stays light, and ``blipviz.RankingExplorer`` imports
:mod:`~blipviz.explore.widgets` on first use.
"""
