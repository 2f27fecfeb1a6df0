"""Reconstructors of mason._rebuild for file handles and in-memory text streams.

Part of mason._rebuild, which re-exports every public name here: files name
them ``mason._rebuild.<name>``, and the FROZEN rules of that module hold.
"""

from __future__ import annotations

import io
import os
import sys

from ._rebuild import _check
from .errors import UnpicklingError

# ---------------------------------------------------------------- files

_STD_STREAMS = {"<stdin>": "__stdin__", "<stdout>": "__stdout__", "<stderr>": "__stderr__"}


def make_file(name, mode, position, closed, fmode, contents, text_args):
    """Reopen a saved file handle following dill's three ``fmode`` semantics.

    0 (handle): reopen by name; 1 (contents): reopen and seek to the saved
    position, capped at the file's current end; 2 (file): write the saved
    contents back, then seek.  A writable file is never truncated on
    reopening in modes 0 and 1: loading must not destroy data.
    """
    _check(
        isinstance(name, str)
        and isinstance(mode, str)
        and set(mode) <= set("rwabx+t")
        and type(position) is int
        and fmode in (0, 1, 2)
        and isinstance(closed, bool)
        and (contents is None or isinstance(contents, (str, bytes)))
        and (
            text_args is None
            or (isinstance(text_args, dict) and set(text_args) <= {"encoding", "errors", "newline", "buffering"})
        ),
        "a file handle's state is malformed",
    )
    if name in _STD_STREAMS:
        return getattr(sys, _STD_STREAMS[name])
    writing = any(c in mode for c in "wax+")
    try:
        if fmode == 2:
            # Contents are bytes (text files too, so line endings and
            # encodings come back exactly); older files may hold str.
            with open(name, "w" if isinstance(contents, str) else "wb") as out:
                if contents is not None:
                    out.write(contents)
        elif not os.path.exists(name) and not writing:
            raise FileNotFoundError(f"cannot reopen saved file handle: no file {name!r}")
        flags = os.O_CREAT if writing else 0
        if "+" in mode or ("r" in mode and writing):
            flags |= os.O_RDWR
        elif writing:
            flags |= os.O_WRONLY
        else:
            flags |= os.O_RDONLY
        if "a" in mode:
            flags |= os.O_APPEND

        # The opener ignores the flags ``open`` derives from ``mode`` ('w'
        # would truncate, 'x' would fail on an existing file); going through
        # ``open`` by name keeps the handle's ``name`` and ``mode`` as saved.
        def opener(path, _flags):
            return os.open(path, flags, 0o666)

        handle = open(name, mode, opener=opener, **(text_args or {}))
    except OSError as exc:
        raise UnpicklingError(f"cannot reopen saved file handle {name!r}: {exc}") from None
    if closed:
        handle.close()
        return handle
    if fmode in (1, 2) and position >= 0:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(min(position, size))
    return handle


def make_stringio(value, position):
    _check(isinstance(value, str) and type(position) is int and 0 <= position, "a StringIO's state is malformed")
    buf = io.StringIO(value)
    buf.seek(position)
    return buf


# ---------------------------------------------------------------- files, dill's non-strict loading


def reopen_file(name, mode, position, closed, fmode, contents, text_args):
    """A saved file handle, reopened as :func:`make_file` does, except that a
    file gone since it was saved is not an error (dill's non-strict mode):
    a handle for reading (or a closed one) comes back as an empty anonymous
    file of the same mode, kind and name, with an ``UnpicklingWarning``; a
    handle for writing creates the file again (as ``make_file`` does).
    Nothing is created on disk for a handle that could not write there.
    """
    if not isinstance(name, str) or not isinstance(mode, str) or not isinstance(closed, bool):
        raise UnpicklingError("damaged file handle: name, mode or closed flag of the wrong type")
    if text_args is not None and (
        not isinstance(text_args, dict) or not set(text_args) <= {"encoding", "errors", "buffering"}
    ):
        raise UnpicklingError("damaged file handle: unexpected options for open()")
    if fmode in (0, 1) and name not in _STD_STREAMS and not os.path.exists(name):
        writing = any(c in mode for c in "wax+")
        if closed or not writing:
            return _empty_file_named(name, mode, closed, text_args)
    return make_file(name, mode, position, closed, fmode, contents, text_args)


def _empty_file_named(name, mode, closed, text_args):
    import tempfile
    import warnings

    from .errors import UnpicklingWarning

    try:
        handle = tempfile.TemporaryFile(mode, **(text_args or {}))
    except (OSError, ValueError) as exc:
        raise UnpicklingError(f"cannot stand in for saved file handle {name!r}: {exc}") from None
    raw = getattr(handle, "buffer", handle)
    raw = getattr(raw, "raw", raw)
    raw.name = name  # as saved (the anonymous file has only a descriptor number)
    if closed:
        handle.close()
    else:
        warnings.warn(
            f"file {name!r} no longer exists: its saved handle ({mode!r}) reads an empty file instead",
            UnpicklingWarning,
            stacklevel=2,
        )
    return handle
