"""The mason container: a versioned file of pickle segments, aligned blobs and a JSON index.

spec.py defines the bytes (docs/format.md describes them); writer.py and
reader.py mirror each other.  Nothing in this package pickles or unpickles.
"""

from .reader import ContainerReader
from .writer import ContainerWriter

__all__ = ["ContainerReader", "ContainerWriter"]
