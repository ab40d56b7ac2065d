"""Accuracy assessment of class maps against reference data (``geosam evaluate``).

* :mod:`geosam.accuracy.estimators`: pure numpy estimators on an error matrix (overall, user's and
  producer's accuracy, kappa, F1, IoU; Olofsson et al. 2014 area-weighted accuracy and area estimates).
* :mod:`geosam.accuracy.classes`: class names of maps and references and the class-mapping file.
* :mod:`geosam.accuracy.reference`: reference polygons, points or label rasters read against the map
  grid, window by window.
* :mod:`geosam.accuracy.evaluate`: :func:`~geosam.accuracy.evaluate.evaluate`, the recipe, and its
  :class:`~geosam.accuracy.evaluate.Evaluation` result; :mod:`geosam.accuracy.report` writes it as
  JSON, PNG and a terminal table.

Importing :mod:`geosam.accuracy` imports numpy only.
"""
