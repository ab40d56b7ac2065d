"""Models: SAM backbones (segment-anything's own classes), band adapter, classifier head, bundles.

Importing this package does not import torch; import the submodules (``geosam.models.sam``...) for that.
"""
