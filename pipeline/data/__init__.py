"""Data stages' library: sources, normalization, splitting, atomic file I/O and the on-disk layout."""
