"""Accuracy assessment of class maps against reference data (``geosam evaluate``).

* :mod:`geosam.accuracy.estimators`: pure numpy estimators on an error matrix (overall, user's and
  producer's accuracy, kappa, F1, IoU; Olofsson et al. 2014 area-weighted accuracy and area estimates).
* :mod:`geosam.accuracy.classes`: the class-mapping file and how map and reference classes match.
* :mod:`geosam.accuracy.classmap`: the class map's grid and class names.
* :mod:`geosam.accuracy.reference`: reference polygons or points read in the map's CRS.
* :mod:`geosam.accuracy.units` and :mod:`geosam.accuracy.tally`: one windowed pass over the map that
  counts its pixels and the reference units (pixels in polygons, points, label-raster pixels) on it.
* :mod:`geosam.accuracy.evaluate`: :func:`~geosam.accuracy.evaluate.evaluate`, the recipe, and its
  :class:`~geosam.accuracy.evaluate.Evaluation` result; :mod:`geosam.accuracy.report` writes it as
  JSON, PNG and a terminal table.

Importing :mod:`geosam.accuracy` imports numpy only.
"""
