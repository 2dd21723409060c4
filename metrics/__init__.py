"""Metrics for inpainting outputs, a plain library (DESIGN.md): no Django, no evalsite, no
generators. A pure core (features in, number out: frechet.py, kid.py, clip_score.py) with
thin shells for images (images.py) and weights (extractors.py, standins.py).

Weights come from local files only; nothing is downloaded.
"""
