"""How the ``mason`` command shows sessions: tables, JSON, and text from a
file made safe to print.  Part of :mod:`mason.cli` (and ``mason store``)."""

from __future__ import annotations

from ._progress import human_size as _human_size

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._inspect import SessionInfo


def _printable(text: str, keep: str = "") -> str:
    """``text`` with control and other unprintable characters escaped.

    Names, types and messages come from the file: printed raw, escape
    sequences in them would drive the terminal (move the cursor, rewrite
    what was printed above).  ``keep``: characters to leave as they are.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else ascii(c)[1:-1] for c in text)


def _info_as_json(info: SessionInfo, label: str) -> dict:
    return {
        "file": label,
        "module": info.module,
        "module_kind": info.module_kind,
        "format_version": ".".join(map(str, info.format_version)),
        "environment": info.environment,
        "variables": info.variables,
        "skipped": info.skipped,
        "total_size": sum(v["size"] for v in info.variables),
        "signed": info.signed,
        "imports": info.imports,
        "functions_by_value": info.functions,
        "scan_error": info.scan_error,
        "checked_against": info.checked_against,
        "refused": info.refused,
        "portable": info.portable,
        "tied": info.tied,
    }


def _info_as_text(info: SessionInfo, label: str) -> str:
    env = info.environment
    python = ".".join(map(str, env.get("python", []))) or "?"
    implementation = env.get("implementation")
    lines = [
        f"file:     {label}" + (f" (format {'.'.join(map(str, info.format_version))})" if info.format_version else ""),
        f"module:   {info.module} ({info.module_kind or 'unknown kind'})",
        f"saved:    {env.get('created', '?')} with mason {env.get('mason', '?')}",
        f"python:   {python}{f' ({implementation})' if implementation else ''} on {env.get('platform', '?')}",
    ]
    packages = env.get("packages") or {}
    lines.append(
        "packages: " + (", ".join(f"{name} {version}" for name, version in sorted(packages.items())) or "none recorded")
    )
    lines.append("signed:   " + ("yes (HMAC-SHA256; `mason verify --key` checks it)" if info.signed else "no"))
    if info.imports is None:
        lines.append(f"imports:  unknown ({info.scan_error})")
    else:
        lines.append("imports:  " + (", ".join(info.imports) or "nothing"))
        code = sorted(set(info.functions))
        lines.append(
            "code:     "
            + (
                f"{_plural(len(info.functions), 'function')} saved by value ({', '.join(code[:6])}{', ...' if len(code) > 6 else ''})"
                if code
                else "none saved by value"
            )
        )
        if info.portable or info.tied:
            lines.append(
                "portable: "
                + (
                    f"{_plural(len(info.tied), 'variable')} tied to the Python version that saved them (see CODE)"
                    if info.tied
                    else "yes: all code saved by value carries its source (other Python versions compile it)"
                )
            )
    if info.imports is not None:
        lines.append(
            f"allow:    {info.checked_against}: "
            + (
                f"a restricted load would refuse {_plural(len(info.refused), 'variable')} (marked !)"
                if info.refused
                else "a restricted load would refuse nothing"
            )
        )
    lines = [_printable(line) for line in lines]
    lines.append("")
    rows = [
        (
            ("! " if v["name"] in info.refused else "") + v["name"],
            v["type"],
            _human_size(v["size"]),
            v["stored"],
            _code_cell(info, v["name"]),
        )
        for v in info.variables
    ]
    rows += [
        (s["name"], s.get("type", "?"), "-", f"skipped: {s.get('reason', 'no reason recorded')}", "")
        for s in info.skipped
    ]
    rows.sort(key=lambda row: row[0])
    lines += _table(("NAME", "TYPE", "SIZE", "STORED", "CODE"), rows, right_aligned={2})
    total = sum(v["size"] for v in info.variables)
    summary = f"{_plural(len(info.variables), 'variable')}, {_human_size(total)}"
    if info.skipped:
        summary += f"; {len(info.skipped)} skipped when saving"
    lines += ["", summary]
    if info.refused:
        lines += ["", f"refused under {_printable(info.checked_against)}:"]
        lines += [
            f"  {_printable(name)}: {_printable(', '.join(problems))}"
            for name, problems in sorted(info.refused.items())
        ]
    if info.tied:
        lines += ["", "tied to the Python version that saved them (CODE):"]
        lines += [f"  {_printable(name)}: {_printable(why)}" for name, why in sorted(info.tied.items())]
    return "\n".join(lines)


def _code_cell(info: SessionInfo, name: str) -> str:
    """The CODE column: ``portable`` (its code carries source: another
    Python version compiles it), ``py3.11`` (tied to that version), or
    nothing (no code saved by value)."""
    if name in info.tied:
        python = info.tied[name].partition(":")[0]  # "Python 3.11 only"
        return "py" + python.split()[1] if python.startswith("Python ") else "tied"
    return "portable" if name in info.portable else ""


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]], right_aligned=frozenset()) -> list[str]:
    rows = [tuple(_printable(str(cell)) for cell in row) for row in [header, *rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if i in right_aligned else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _diff_as_text(result: dict, label_a: str, label_b: str) -> str:
    rows = []
    for entry in result["removed"]:
        rows.append(("-", entry["name"], entry["type"], entry.get("note", "")))
    for entry in result["added"]:
        rows.append(("+", entry["name"], entry["type"], entry.get("note", "")))
    for entry in result["changed"]:
        types_ = entry["type_a"] if entry["type_a"] == entry["type_b"] else f"{entry['type_a']} -> {entry['type_b']}"
        rows.append(("~", entry["name"], types_, ""))
    rows.sort(key=lambda row: row[1])
    lines = [_printable(f"--- {label_a}"), _printable(f"+++ {label_b}")]
    if "module" in result:
        lines.append(_printable(f"module: {result['module']['a']} -> {result['module']['b']}"))
    lines += _table(("", "NAME", "TYPE", ""), rows)[1:] if rows else []
    counts = f"{len(result['added'])} added, {len(result['removed'])} removed, {len(result['changed'])} changed, {result['unchanged']} unchanged"
    lines.append(
        counts if rows or "module" in result else f"no differences ({_plural(result['unchanged'], 'variable')})"
    )
    return "\n".join(lines)
