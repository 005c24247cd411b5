"""Plain-Python models of the Cython `_speedups` modules: the oracles their tests compare
against. Written for obviousness, not speed."""
