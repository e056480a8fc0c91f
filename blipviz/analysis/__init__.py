"""What is computed from a net: scores and rankings, search, attention and GradCAM, zero-shot
classification, the feature-space map, net information. Each analysis takes a
:class:`blipviz.net.BlipNet` and uses only its public ports; results are small objects of arrays and
labels that hand themselves to :mod:`blipviz.display` to be drawn.
"""
