"""Developer checks that anyone can run (``python -m geosam._devtools.<tool>``); not part of the API."""
