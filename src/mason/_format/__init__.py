"""The mason container: a versioned file of pickle segments, aligned blobs and an index.

spec.py defines the bytes (docs/format.md describes them); writer.py and
reader.py mirror each other, the reader checking the index and record shapes
with index.py, reading bytes through sources.py and streams with stream.py,
and signatures with signing.py.  Nothing in this package pickles or
unpickles.
"""

from .reader import ContainerReader
from .writer import ContainerWriter

__all__ = ["ContainerReader", "ContainerWriter"]
