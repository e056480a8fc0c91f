"""What a person sees: figures (score matrix, attention grids, feature-space map), styled tables and
the ipywidgets explorers. A display draws computed data and never runs a net; the explorers call
the analyses. matplotlib and ipywidgets are imported when used.
"""
