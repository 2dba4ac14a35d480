"""Video I/O. Only the window arithmetic lives here so far; PyAV is imported lazily where it is used."""
