"""What a session file holds, read without running anything from it."""

from __future__ import annotations


from ._allowlist import DATA, Allowlist
from ._storage import default_session_path
from .errors import (
    UnpicklingError,
)
from ._load import _LoadOptions, _open_session, scan_session


class SessionInfo:
    """What a session file holds, read without running anything from it.

    ``imports``: the modules loading it would import (found by scanning the
    pickle segments with inert placeholders), None if they could not be
    scanned (``scan_error`` says why); ``functions``: names of the functions
    saved by value (code that loading would create); ``signed``: whether the
    file carries a signature (checked only by a load or verify with a key);
    ``refused``: variable -> what a restricted load with the allowlist
    ``checked_against`` (by default :data:`mason.DATA`, data only) would
    refuse in it.
    """

    _FIELDS = (
        "module", "module_kind", "variables", "skipped", "environment", "format_version",
        "signed", "imports", "functions", "scan_error", "refused", "checked_against",
    )

    def __init__(self, module: str, module_kind: str, variables=(), skipped=(), environment=None,
                 format_version=(), signed=False, imports=None, functions=(), scan_error=None,
                 refused=None, checked_against=""):
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

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._FIELDS)
        return f"SessionInfo({fields})"

    def __eq__(self, other):
        if not isinstance(other, SessionInfo):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in self._FIELDS)

    __hash__ = None  # mutable, like the dataclass it replaces

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
        meta = session.meta
        info = SessionInfo(
            module=meta["module"],
            module_kind=meta.get("module_kind", ""),
            variables=[{k: v[k] for k in ("name", "type", "stored", "size")} for v in meta["variables"]],
            skipped=list(meta.get("skipped", [])),
            environment=dict(meta.get("environment", {})),
            format_version=tuple(session.version),
            signed=session.signature is not None,
        )
        allowlist = Allowlist.from_arg(DATA if allow is None else allow)
        info.checked_against = "mason.DATA" if allow is None else ", ".join(map(str, allowlist.patterns))
        try:
            report = scan_session(session, meta["variables"], allowlist)
        except UnpicklingError as exc:  # CorruptSessionError included: a damaged segment
            info.scan_error = str(exc)
        else:
            info.imports = sorted(m for m in report.modules if m != meta["module"])
            info.functions = list(report.functions)
            info.refused = {name: sorted(set(p)) for name, p in report.by_variable.items() if p}
        return info
