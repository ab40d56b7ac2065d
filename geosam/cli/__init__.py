"""The ``geosam`` command line: a thin shell that parses options and calls the library."""
