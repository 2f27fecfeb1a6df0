"""What a session file holds, read without running anything from it."""

from __future__ import annotations

from ._allowlist import DATA, Allowlist
from ._load import _LoadOptions, _open_session, scan_session
from ._memo import UNKNOWN, StaticCall, StaticGlobal, segment_effects
from ._storage import default_session_path
from .errors import (
    UnpicklingError,
)


class SessionInfo:
    """What a session file holds, read without running anything from it.

    ``imports``: the modules loading it would import (found by scanning the
    pickle segments with inert placeholders), None if they could not be
    scanned (``scan_error`` says why); ``functions``: names of the functions
    saved by value (code that loading would create); ``signed``: whether the
    file carries a signature (checked only by a load or verify with a key);
    ``refused``: variable -> what a restricted load with the allowlist
    ``checked_against`` (by default :data:`mason.DATA`, data only) would
    refuse in it.  ``portable``: the variables whose code saved by value all
    carries its source, so that another minor version of Python compiles
    it again; ``tied``: variable -> why its code runs only on the version
    that saved it (code without source, or it uses such a variable's objects).
    Variables in neither hold no code saved by value.
    """

    _FIELDS = (
        "module",
        "module_kind",
        "variables",
        "skipped",
        "environment",
        "format_version",
        "signed",
        "imports",
        "functions",
        "scan_error",
        "refused",
        "checked_against",
        "portable",
        "tied",
    )

    def __init__(
        self,
        module: str,
        module_kind: str,
        variables=(),
        skipped=(),
        environment=None,
        format_version=(),
        signed=False,
        imports=None,
        functions=(),
        scan_error=None,
        refused=None,
        checked_against="",
        portable=(),
        tied=None,
    ):
        self.module = module
        self.module_kind = module_kind
        self.variables: list[dict] = list(variables)
        self.skipped: list[dict] = list(skipped)
        self.environment: dict = dict(environment or {})
        self.format_version: tuple = tuple(format_version)
        self.signed = signed
        self.imports: list | None = imports
        self.functions: list = list(functions)
        self.scan_error: str | None = scan_error
        self.refused: dict[str, list[str]] = dict(refused or {})
        self.checked_against = checked_against
        self.portable: list[str] = list(portable)
        self.tied: dict[str, str] = dict(tied or {})

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"SessionInfo({fields})"

    def __eq__(self, other):
        if not isinstance(other, SessionInfo):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def names(self) -> list[str]:
        return [v["name"] for v in self.variables]


def inspect(filename=None, storage_options=None, allow=None) -> SessionInfo:
    """Describe a session file (a path, URL or binary stream) without
    running anything from it.

    Safe for untrusted files: the JSON index is parsed after its checksum is
    verified, and the pickle segments are only scanned, by a machine that
    runs nothing, in time and memory linear in their size.
    ``storage_options``: a dict for fsspec, with a URL.  ``allow``: the
    allowlist to judge the file against (default :data:`mason.DATA`):
    ``refused`` tells, per variable, what a load with it would refuse.
    """
    source = default_session_path() if filename is None else filename
    with _open_session(source, _LoadOptions(mmap=False, key=False, storage_options=storage_options)) as session:
        return describe(session, allow, tuple(session.version), session.signature is not None)


def describe(session, allow=None, format_version: tuple = (), signed: bool = False) -> SessionInfo:
    """The :class:`SessionInfo` of an opened session: a container reader, or
    a checkpoint's reader (anything with ``meta`` and ``segments``)."""
    meta = session.meta
    info = SessionInfo(
        module=meta["module"],
        module_kind=meta.get("module_kind", ""),
        variables=[{k: v[k] for k in ("name", "type", "stored", "size")} for v in meta["variables"]],
        skipped=list(meta.get("skipped", [])),
        environment=dict(meta.get("environment", {})),
        format_version=format_version,
        signed=signed,
    )
    allowlist = Allowlist.from_arg(allow) or Allowlist(DATA)  # None: judged against DATA
    info.checked_against = "mason.DATA" if allow is None else ", ".join(map(str, allowlist.patterns))
    try:
        report = scan_session(session, meta["variables"], allowlist)
    except UnpicklingError as exc:  # CorruptSessionError included: a damaged segment
        info.scan_error = str(exc)
    else:
        info.imports = sorted(m for m in report.modules if m != meta["module"])
        info.functions = list(report.functions)
        info.refused = {name: sorted(set(p)) for name, p in report.by_variable.items() if p}
        try:
            info.portable, info.tied = code_portability(session, meta["variables"])
        except UnpicklingError as exc:  # opcodes the scan took but the memo reader does not
            info.scan_error = f"which code is portable is unknown: {exc}"
    return info


_CODE_CALLS = ("code_portable", "code_from_marshal")


def code_portability(session, variables) -> tuple[list[str], dict[str, str]]:
    """(variables whose code all carries source, {variable: why its code is
    tied to the Python that saved it}), read from the opcodes alone.

    As a load on another version would find it: a variable is tied when it
    makes code without source, or when it reads a memo entry that a tied
    variable made (what that variable would have built); code objects and
    constants are made again from the opcodes, so sharing them ties nothing.
    """
    memo: dict[int, object] = {}
    holes: dict[int, str] = {}  # memo index -> the tied variable that wrote it
    portable: list[str] = []
    tied: dict[str, str] = {}
    for var in variables:
        if var.get("memo_reset"):
            memo.clear()
            holes.clear()
        effects = segment_effects(
            session.segment(var["segment"]), memo.__contains__, len(memo), known=lambda i: memo.get(i, UNKNOWN)
        )
        # code it makes, and code made before that it uses (shared, or its own)
        codes = [
            value
            for value in [*effects.writes.values(), *(memo.get(i) for i in effects.gets)]
            if isinstance(value, StaticCall) and value.function in _CODE_CALLS
        ]
        why = next(filter(None, map(_tied, codes)), None)
        if why is None:
            used = next((holes[i] for i in sorted(effects.gets) if i in holes), None)
            if used is not None:
                why = f"{tied[used].split(': ', 1)[0]}: it uses objects of {used!r}"
        if why is not None:
            tied[var["name"]] = why
        elif codes:
            portable.append(var["name"])
        for index, value in effects.writes.items():
            memo[index] = value
            rebuilt = (
                isinstance(value, StaticGlobal) or value is None or type(value) in (str, bytes, int, float, bool, tuple)
            )
            if why is not None and not (rebuilt or (isinstance(value, StaticCall) and not _tied(value))):
                holes[index] = var["name"]
            else:
                holes.pop(index, None)
    return portable, tied


def _tied(call: StaticCall) -> str | None:
    """Why the code ``call`` makes runs only on the Python that saved it, or None."""
    version = call.args[0]
    if not (isinstance(version, tuple) and len(version) >= 2):
        return "its code object is damaged"
    python = f"Python {version[0]}.{version[1]} only"
    if call.function == "code_from_marshal":
        return f"{python}: its code was saved without source (by a mason from before portable code)"
    record = call.args[2] if len(call.args) > 2 else None
    if type(record) is tuple and len(record) == 2 and all(type(part) is str for part in record):
        return f"{python}: {record[0]}: {record[1]}"
    return None
