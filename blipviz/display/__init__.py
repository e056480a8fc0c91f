"""What a person sees: figures (score matrix, attention grids, feature-space map) and styled
tables. A display draws computed data: it never runs a net and imports no analysis (the interactive
explorers, which do call analyses, are :mod:`blipviz.explore`). matplotlib is imported when used.
"""
