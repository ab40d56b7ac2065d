"""Training of geosam classifiers (``geosam train``): data sources, the training loop, metrics, reports.

Importing :mod:`geosam.train` does not import torch; :mod:`geosam.train.engine` does.
"""
