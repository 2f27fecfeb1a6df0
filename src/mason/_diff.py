"""Comparing two saved sessions variable by variable, from their stored
bytes (nothing is unpickled): ``mason diff`` of two files, and ``mason
store diff`` of two checkpoints.  A side is any session reader whose
``blob_info`` says each blob's raw length, compression and checksum, and
whose ``checksum_name`` says what those checksums are."""

from __future__ import annotations

import hashlib
import pickletools

from .errors import CorruptSessionError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

_PUT_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class Side:
    """One session of a diff: its variables, and what is needed to compare them."""

    def __init__(self, reader: Any, variables: list[dict]):
        self.reader = reader
        self.variables = {v["name"]: v for v in variables}
        self.skipped = {s["name"]: s for s in reader.meta.get("skipped", []) if isinstance(s, dict) and "name" in s}
        self.segment_digests = segment_digests(reader, list(self.variables.values()))

    def blob_digest(self, i: int) -> bytes:
        return hashlib.blake2b(self.reader.blob(i), digest_size=16).digest()


def segment_digests(reader: Any, variables: list[dict]) -> dict[str, bytes]:
    """A digest per variable of its pickle segment, with memo references renumbered.

    The segments share one pickler memo, so the same value gets other memo
    numbers when an earlier variable memoized more or fewer objects.  Here a
    memo reference becomes (the variable that memoized the object, the
    object's position among that variable's memo entries); frame lengths are
    left out.  pickletools only parses: nothing is unpickled.
    """
    owners: dict[int, tuple[str, int]] = {}
    digests = {}
    for var in variables:
        if var.get("memo_reset"):
            owners = {}
        name, ordinal = var["name"], 0
        digest = hashlib.blake2b(digest_size=16)
        for op, arg in _genops(reader.segment(var["segment"]), name):
            if op.name in _PUT_OPS:
                owners[len(owners) if op.name == "MEMOIZE" else arg] = (name, ordinal)
                ordinal += 1
                digest.update(b"\x00put;")
            elif op.name in _GET_OPS:
                owner, position = owners.get(arg, ("?", arg))
                where = "" if owner == name else owner
                digest.update(f"\x00get {where!r} {position};".encode())
            elif op.name != "FRAME":
                digest.update(b"\x00" + op.code.encode("latin-1"))
                if isinstance(arg, (bytes, bytearray)):
                    digest.update(b"%d:" % len(arg))
                    digest.update(arg)
                elif arg is not None:
                    digest.update(ascii(arg).encode())
        digests[name] = digest.digest()
    return digests


def _genops(segment: Any, name: str) -> Iterator[tuple[Any, Any]]:
    try:
        for op, arg, _ in pickletools.genops(bytes(segment)):
            yield op, arg
    except (ValueError, EOFError) as exc:
        raise CorruptSessionError(f"the pickle segment of {name!r} is damaged: {exc}") from None


def _same_blobs(a: Side, a_ids: list[int], b: Side, b_ids: list[int]) -> bool:
    if len(a_ids) != len(b_ids):
        return False
    for i, j in zip(a_ids, b_ids):
        info_a, info_b = a.reader.blob_info(i), b.reader.blob_info(j)
        if info_a["raw_length"] != info_b["raw_length"]:
            return False
        comparable = a.reader.checksum_name == b.reader.checksum_name and info_a["compression"] == info_b["compression"]
        if comparable and info_a["checksum"] == info_b["checksum"]:
            continue
        if comparable and info_a["compression"] is None:
            return False  # the same algorithm over the same kind of bytes: they differ
        # Other algorithms or compressions (or a compressor's other output): compare contents.
        if a.blob_digest(i) != b.blob_digest(j):
            return False
    return True


def compare(a: Side, b: Side) -> dict:
    """What was added, removed and changed from session ``a`` to ``b``, and how many are the same."""
    added, removed, changed, unchanged = [], [], [], 0
    for name in sorted(set(a.variables) | set(b.variables)):
        var_a: Any = a.variables.get(name)
        var_b: Any = b.variables.get(name)
        if var_a is None:
            entry = {"name": name, "type": var_b["type"]}
            if name in a.skipped:
                entry["note"] = f"skipped when A was saved: {a.skipped[name].get('reason', '')}"
            added.append(entry)
        elif var_b is None:
            entry = {"name": name, "type": var_a["type"]}
            if name in b.skipped:
                entry["note"] = f"skipped when B was saved: {b.skipped[name].get('reason', '')}"
            removed.append(entry)
        elif a.segment_digests[name] != b.segment_digests[name] or not _same_blobs(
            a, var_a["blobs"], b, var_b["blobs"]
        ):
            changed.append({"name": name, "type_a": var_a["type"], "type_b": var_b["type"]})
        else:
            unchanged += 1
    return {"added": added, "removed": removed, "changed": changed, "unchanged": unchanged}
