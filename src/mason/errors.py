"""The one error hierarchy of mason.

Every class also subclasses the builtin or pickle exception that users
already catch, so ``except pickle.UnpicklingError`` keeps working for code
written against pickle or dill.
"""

from __future__ import annotations

import pickle

__all__ = [
    "MasonError",
    "PicklingError",
    "UnpicklingError",
    "CorruptSessionError",
    "UnsupportedFormatError",
    "VersionMismatchError",
    "SignatureError",
    "ForbiddenGlobalError",
    "StoreError",
    "CorruptStoreError",
    "CheckpointNotFoundError",
    "StoreLockedError",
    "MasonWarning",
    "PicklingWarning",
    "UnpicklingWarning",
    "SkippedVariableWarning",
    "EnvironmentMismatchWarning",
]


class MasonError(Exception):
    """Base class of every error mason raises on purpose."""


class PicklingError(MasonError, pickle.PicklingError):
    """An object could not be saved; the message names the path to it."""


class UnpicklingError(MasonError, pickle.UnpicklingError):
    """A stream or file could not be turned back into objects."""


class CorruptSessionError(UnpicklingError, ValueError):
    """A session file is truncated, damaged, or not a mason file at all.

    Raised before any object is reconstructed.
    """


class UnsupportedFormatError(CorruptSessionError):
    """A mason file of a format version this mason cannot read."""


class VersionMismatchError(UnpicklingError):
    """Saved code cannot run on this interpreter (the message names both versions)."""


class SignatureError(UnpicklingError):
    """A file's signature is missing, wrong, or the key does not match."""


class ForbiddenGlobalError(UnpicklingError):
    """A file would import or call something outside the caller's allowlist."""


class StoreError(MasonError, ValueError):
    """A checkpoint store cannot be used: not a store, or one this mason cannot read."""


class CorruptStoreError(CorruptSessionError, StoreError):
    """Something a checkpoint needs is missing, truncated or damaged in its store.

    A restore raises it before any object is reconstructed.
    """


class CheckpointNotFoundError(StoreError, LookupError):
    """No checkpoint with that id (or prefix) in the store, or the store has none."""


class StoreLockedError(MasonError, TimeoutError):
    """Another process held the store (a prune, or the checkpoints a prune waits
    for) for longer than the wait allowed; nothing was changed."""


class MasonWarning(UserWarning):
    """Base class of mason's warnings."""


class PicklingWarning(MasonWarning, pickle.PickleError):
    """Saving went on, but something was not saved as asked (dill's name)."""


class UnpicklingWarning(MasonWarning, pickle.UnpicklingError):
    """Loading went on, but something did not come back as saved (dill's
    name): e.g. a file handle whose file is gone reopened as an empty file."""


class SkippedVariableWarning(MasonWarning):
    """Variables could not be saved or restored and were left out.

    A load names them all in one warning; ``failures`` maps each name to
    why (its own error, or the failed variable whose objects it refers to).
    """

    def __init__(self, message="", failures=None):
        super().__init__(message)
        self.failures: dict[str, str] = dict(failures or {})


class EnvironmentMismatchWarning(MasonWarning):
    """A file was saved under another Python or other package versions."""
