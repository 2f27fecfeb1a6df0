"""Checkpoint stores: a history of a session, each checkpoint writing only what changed.

api.py holds the public functions; writer.py and reader.py are the store's
counterparts of the container writer and reader (the same methods, so the
session pickler and loader use them unchanged); catalog.py lists
checkpoints, locks.py keeps checkpoints and prunes apart, housekeeping.py
prunes and verifies; layout.py, manifest.py and objects.py define the bytes
(docs/store.md describes them); backend.py reaches local directories and URLs.
"""

from .api import (
    PruneReport,
    StoreReport,
    checkpoint,
    checkpoints,
    default_store_path,
    prune,
    restore,
    restore_asdict,
    verify_store,
)

__all__ = [
    "PruneReport",
    "StoreReport",
    "checkpoint",
    "checkpoints",
    "default_store_path",
    "prune",
    "restore",
    "restore_asdict",
    "verify_store",
]
