"""The two child processes of ``benchmarks/corpus_check.py``.

``save``: runs a notebook's code cells in ``__main__`` through an IPython
``InteractiveShell`` (so ``%pylab`` and ``%matplotlib`` work), saves the
session with ``mason.dump_module`` and describes every variable.
``load``: a fresh interpreter that restores the file with
``mason.load_module`` and describes every variable again.

The parent compares the two descriptions.  This module is imported under
its own name, never as ``__main__``: the session's namespace holds the
notebook's variables and nothing of ours.  A description is deterministic
across processes (no ids, no addresses, sets sorted), so equal objects
give equal fingerprints.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import math
import re
import signal
import sys
import time
import traceback
import types
import warnings

# ----------------------------------------------------------------- fingerprints

#: per variable: how many nodes are described and how deep
_BUDGET = 20_000
_MAX_DEPTH = 7
#: generic objects (anything without a rule below) are opened this deep only
_MAX_OBJECT_DEPTH = 4
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+|0x[0-9a-fA-F]{6,}")

_SCALARS = (type(None), bool, int, float, complex, str, bytes)


def _h(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _qualname(obj) -> str:
    return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', getattr(obj, '__name__', '?'))}"


def _typename(obj) -> str:
    return _qualname(type(obj))


class Fingerprint:
    """Describes one object as a string, depth- and size-limited.

    ``parts``: the fingerprints of the object's direct parts (attributes,
    keys, columns), so a difference can be located; ``coarse`` is True when
    some part could be compared by type only.
    """

    def __init__(self):
        self.budget = _BUDGET
        self.stack: set[int] = set()
        self.coarse = False
        self.truncated = False
        self.parts: dict[str, str] = {}

    def top(self, obj) -> str:
        return self.fp(obj, 0, record=True)

    def _part(self, record: bool, label: str, value: str) -> None:
        if record and len(self.parts) < 40:
            self.parts[label] = _h(value) if len(value) > 60 else value

    def fp(self, obj, depth: int, record: bool = False) -> str:
        self.budget -= 1
        if self.budget < 0:
            self.truncated = True
            return "<budget>"
        if depth > _MAX_DEPTH:
            self.truncated = True
            return f"<deep {_typename(obj)}>"
        if isinstance(obj, _SCALARS):
            return self._scalar(obj)
        key = id(obj)
        if key in self.stack:
            return f"<cycle {_typename(obj)}>"
        self.stack.add(key)
        try:
            return self._compound(obj, depth, record)
        except Exception as exc:  # a description must not sink the check
            self.coarse = True
            return f"<{_typename(obj)}: {type(exc).__name__}>"
        finally:
            self.stack.discard(key)

    def _scalar(self, obj) -> str:
        if isinstance(obj, float) and math.isnan(obj):
            return "float:nan"
        if isinstance(obj, (str, bytes)) and len(obj) > 200:
            raw = obj.encode("utf-8", "surrogatepass") if isinstance(obj, str) else obj
            return f"{type(obj).__name__}:{len(obj)}:{hashlib.sha1(raw).hexdigest()[:16]}"
        return f"{type(obj).__name__}:{obj!r}"

    def _seq(self, items, depth, record, label) -> str:
        out = []
        for i, item in enumerate(items):
            if self.budget <= 0:
                self.truncated = True
                out.append("...")
                break
            f = self.fp(item, depth + 1)
            self._part(record, f"[{i}]", f)
            out.append(f)
        return f"{label}[{', '.join(out)}]"

    def _mapping(self, items, depth, record, label) -> str:
        out = []
        for k, v in items:
            if self.budget <= 0:
                self.truncated = True
                out.append("...")
                break
            kf = self.fp(k, depth + 1)
            vf = self.fp(v, depth + 1)
            self._part(record, f"[{kf[:40]}]", vf)
            out.append(f"{kf}: {vf}")
        return f"{label}{{{', '.join(out)}}}"

    def _compound(self, obj, depth, record) -> str:
        t = type(obj)
        tname = _typename(obj)
        mod = t.__module__ or ""
        if isinstance(obj, types.ModuleType):
            return f"module:{obj.__name__}"
        if isinstance(obj, type):
            return self._class(obj, depth)
        if isinstance(obj, types.FunctionType):
            return self._function(obj, depth)
        if isinstance(
            obj,
            (
                types.BuiltinFunctionType,
                types.WrapperDescriptorType,
                types.MethodDescriptorType,
                types.MethodWrapperType,
            ),
        ):
            owner = getattr(obj, "__self__", None)
            owner = "" if owner is None or isinstance(owner, types.ModuleType) else _typename(owner)
            return f"builtin:{_qualname(obj)}:{owner}"
        if isinstance(obj, types.MethodType):
            return f"method:{self.fp(obj.__func__, depth + 1)}:self={_typename(obj.__self__)}"
        if isinstance(obj, types.CodeType):
            return self._code(obj, depth)
        if isinstance(obj, (classmethod, staticmethod)):
            return f"{tname}({self.fp(obj.__func__, depth + 1)})"
        if isinstance(obj, property):
            return f"property({self.fp(obj.fget, depth + 1)},{self.fp(obj.fset, depth + 1)})"
        if mod.startswith("numpy") or mod.startswith("pandas"):
            got = self._numeric(obj, depth, record)
            if got is not None:
                return got
        if mod.startswith("sympy") and _is_sympy_value(obj):
            import sympy

            text = sympy.srepr(obj)
            return f"sympy:{tname}:{_h(text) if len(text) > 200 else text}"
        if mod.startswith(("matplotlib", "mpl_toolkits")) and "matplotlib.artist" in sys.modules:
            from matplotlib.artist import Artist

            if isinstance(obj, Artist):
                return self._artist(obj, depth)
        if tname == "matplotlib.cbook.CallbackRegistry":
            # matplotlib pickles only the callbacks it was told to
            # (``_pickled_cids``), by design; the id counter moves on every pickle.
            kept = {s: sorted(c for c in d if c in obj._pickled_cids) for s, d in obj.callbacks.items()}
            return f"CallbackRegistry:{obj._signals}:{kept}"
        if isinstance(obj, (list, tuple)) and t in (list, tuple) or hasattr(obj, "_fields"):
            label = tname if t not in (list, tuple) else ("list" if t is list else "tuple")
            return self._seq(obj, depth, record, label)
        if isinstance(obj, (set, frozenset)):
            items = sorted(self.fp(x, depth + 1) for x in obj)
            return f"{tname}{{{', '.join(items)}}}"
        if isinstance(obj, dict):
            label = tname
            factory = getattr(obj, "default_factory", None)
            if factory is not None:
                label += f"({self.fp(factory, depth + 1)})"
            text = self._mapping(list(obj.items()), depth, record, label)
            extra = self._instance_dict(obj, depth, record) if hasattr(obj, "__dict__") and vars(obj) else ""
            return text + extra
        if isinstance(obj, (list, tuple)):  # subclasses: items, then attributes
            text = self._seq(obj, depth, record, tname)
            return text + (self._instance_dict(obj, depth, record) if hasattr(obj, "__dict__") else "")
        if mod == "collections" and tname == "collections.deque":
            return self._seq(list(obj), depth, record, "deque")
        if isinstance(obj, (range, slice)) or mod in ("datetime", "decimal", "fractions", "uuid", "pathlib", "re"):
            return f"{tname}:{obj!r}"
        if isinstance(obj, (bytearray, memoryview)):
            return f"{tname}:{hashlib.sha1(bytes(obj)).hexdigest()[:16]}:{len(obj)}"
        if isinstance(obj, io.IOBase):
            return f"file:{tname}:{getattr(obj, 'name', '?')!r}:{getattr(obj, 'mode', '?')}:{obj.closed}"
        if mod == "functools" and tname == "functools.partial":
            return (
                f"partial({self.fp(obj.func, depth + 1)}, {self.fp(obj.args, depth + 1)}, "
                f"{self.fp(obj.keywords, depth + 1)})"
            )
        if isinstance(obj, types.GeneratorType) or t.__name__.endswith("iterator"):
            self.coarse = True
            return f"<iterator {tname}>"
        return self._generic(obj, depth, record)

    def _class(self, cls, depth) -> str:
        head = f"class:{_qualname(cls)}"
        if cls.__module__ != "__main__" or depth > 2:
            return head
        attrs = []
        for name in sorted(vars(cls)):
            if name in ("__dict__", "__weakref__", "__doc__", "__module__", "__qualname__", "__slotnames__"):
                continue
            value = vars(cls)[name]
            attrs.append(f"{name}={self.fp(value, depth + 1)}")
        bases = ",".join(_qualname(b) for b in cls.__bases__)
        return f"{head}({bases}){{{'; '.join(attrs)}}}"

    def _code(self, code, depth) -> str:
        consts = ",".join(self.fp(c, depth + 1) for c in code.co_consts)
        body = hashlib.sha1(code.co_code).hexdigest()[:16]
        return f"code:{code.co_name}:{body}:{consts}:{code.co_names}"

    def _function(self, fn, depth) -> str:
        head = f"function:{_qualname(fn)}"
        if fn.__module__ != "__main__":
            return head
        parts = [
            self._code(fn.__code__, depth + 1),
            self.fp(fn.__defaults__, depth + 1),
            self.fp(fn.__kwdefaults__, depth + 1),
        ]
        if fn.__closure__:
            cells = []
            for cell in fn.__closure__:
                try:
                    cells.append(self.fp(cell.cell_contents, depth + 1))
                except ValueError:  # an empty cell
                    cells.append("<empty>")
            parts.append("closure(" + ",".join(cells) + ")")
        if fn.__dict__:
            parts.append(self.fp(dict(fn.__dict__), depth + 1))
        return f"{head}({';'.join(parts)})"

    def _numeric(self, obj, depth, record):
        np = sys.modules.get("numpy")
        pd = sys.modules.get("pandas")
        if np is not None:
            if isinstance(obj, np.ndarray):
                head = f"{type(obj).__name__}:{obj.dtype.str}:{obj.dtype.descr if obj.dtype.fields else ''}:{obj.shape}"
                if isinstance(obj, np.ma.MaskedArray):
                    return head + f":{self.fp(obj.data, depth + 1)}:{self.fp(np.ma.getmaskarray(obj), depth + 1)}"
                if obj.dtype.hasobject:
                    return head + ":" + self._seq(obj.ravel().tolist(), depth, False, "")
                return head + ":" + hashlib.sha1(np.ascontiguousarray(obj).tobytes()).hexdigest()[:16]
            if isinstance(obj, np.generic):
                return f"np:{obj.dtype.str}:{obj!r}"
            if isinstance(obj, np.dtype):
                return f"dtype:{obj.str}:{obj.descr}"
            if isinstance(obj, np.random.Generator):
                return f"{type(obj).__name__}:{self.fp(obj.bit_generator.state, depth + 1)}"
            if isinstance(obj, np.random.RandomState):
                state = obj.get_state(legacy=False)
                return f"RandomState:{self.fp(state, depth + 1)}"
            if isinstance(obj, np.ufunc):
                return f"ufunc:{obj.__name__}"
        if pd is not None:
            if isinstance(obj, pd.DataFrame):
                cols = []
                for i, name in enumerate(obj.columns):
                    f = self.fp(obj.iloc[:, i], depth + 1)
                    self._part(record, f"[{name!r}]", f)
                    cols.append(f)
                return (
                    f"DataFrame:{obj.shape}:{self.fp(obj.columns, depth + 1)}:"
                    f"{self.fp(obj.index, depth + 1)}:{'|'.join(cols)}"
                )
            if isinstance(obj, pd.Series):
                return (
                    f"Series:{obj.name!r}:{obj.dtype}:{self.fp(obj.index, depth + 1)}:{self._values(obj.array, depth)}"
                )
            if isinstance(obj, pd.Index):
                return f"{type(obj).__name__}:{obj.names}:{obj.dtype}:{self._values(obj.array, depth)}"
            if isinstance(obj, pd.api.extensions.ExtensionArray):
                return f"{type(obj).__name__}:{obj.dtype}:{self._values(obj, depth)}"
            if type(obj).__module__.startswith("pandas.core.groupby"):
                return f"{type(obj).__name__}:{self.fp(obj.obj, depth + 1)}:{obj.keys!r}"
        return None

    def _values(self, array, depth) -> str:
        np = sys.modules["numpy"]
        if isinstance(array, np.ndarray):
            return self.fp(array, depth + 1)
        cats = getattr(array, "categories", None)
        if cats is not None:
            return f"cat:{self.fp(cats, depth + 1)}:{self.fp(np.asarray(array.codes), depth + 1)}"
        return self.fp(np.asarray(array, dtype=object), depth + 1)

    def _artist(self, artist, depth) -> str:
        from matplotlib.axes import Axes
        from matplotlib.figure import Figure, SubFigure
        from matplotlib.lines import Line2D

        if isinstance(artist, (Figure, SubFigure)):
            size = tuple(artist.get_size_inches()) if isinstance(artist, Figure) else ()
            axes = [self._artist(ax, depth + 1) for ax in artist.axes]
            return f"Figure:{size}:{artist.dpi}:[{'; '.join(axes)}]"
        if isinstance(artist, Axes):
            lines = [self.fp(line.get_xydata(), depth + 1) for line in artist.get_lines()]
            return (
                f"{type(artist).__name__}:{artist.get_title()!r}:{artist.get_xlabel()!r}:"
                f"{artist.get_ylabel()!r}:{tuple(artist.get_xlim())}:{tuple(artist.get_ylim())}:"
                f"{len(artist.get_children())}:[{','.join(lines)}]"
            )
        if isinstance(artist, Line2D):
            return f"Line2D:{self.fp(artist.get_xydata(), depth + 1)}:{artist.get_label()!r}"
        self.coarse = True
        label = artist.get_label() if hasattr(artist, "get_label") else ""
        return f"{_typename(artist)}:{label!r}:{len(artist.get_children())}"

    def _instance_dict(self, obj, depth, record) -> str:
        state = vars(obj)
        items = sorted(state.items(), key=lambda kv: str(kv[0]))
        return self._mapping(items, depth, record, "+dict")

    def _generic(self, obj, depth, record) -> str:
        tname = _typename(obj)
        if depth > _MAX_OBJECT_DEPTH:
            self.coarse = True
            return f"<{tname}>"
        state = getattr(obj, "__dict__", None)
        slots = []
        for klass in type(obj).__mro__:
            for name in (
                getattr(klass, "__slots__", ()) if isinstance(getattr(klass, "__slots__", ()), (tuple, list)) else ()
            ):
                if name not in ("__dict__", "__weakref__") and hasattr(obj, name):
                    slots.append((name, getattr(obj, name)))
        if isinstance(state, dict) or slots:
            items = sorted(state.items(), key=lambda kv: str(kv[0])) if isinstance(state, dict) else []
            return self._mapping(items + slots, depth, record, f"{tname}")
        # C-level objects: what they pickle as, else a repr without addresses
        try:
            reduced = obj.__reduce_ex__(4)
        except Exception:
            reduced = None
        if isinstance(reduced, tuple) and len(reduced) >= 2:
            return f"{tname}:reduce({self.fp(reduced[1:3], depth + 1)})"
        text = repr(obj)
        if _ADDRESS.search(text):
            self.coarse = True
            return f"<{tname}>"
        return f"{tname}:{text}"


def _is_sympy_value(obj) -> bool:
    from sympy import Basic
    from sympy.matrices import MatrixBase

    return isinstance(obj, (Basic, MatrixBase))


def _is_artist(obj) -> bool:
    if "matplotlib.artist" not in sys.modules:
        return False
    from matplotlib.artist import Artist

    return isinstance(obj, Artist)


def describe(obj) -> dict:
    f = Fingerprint()
    text = f.top(obj)
    return {
        "type": _typename(obj),
        "fp": _h(text),
        "text": text[:20_000],
        "parts": f.parts,
        "coarse": f.coarse,
        "truncated": f.truncated,
    }


# -------------------------------------------------------------------- identity

_VALUE_TYPES = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset)
_LITERALS = (type(None), bool, int, float, complex, str, bytes)


def module_attribute_index() -> dict[int, list]:
    """id(object) -> [(module, attribute)] over every loaded module but __main__."""
    index: dict[int, list] = {}
    main = sys.modules["__main__"]
    for name, module in list(sys.modules.items()):
        # ``__mp_main__`` (multiprocessing, joblib) is __main__ under another name.
        if module is main or not isinstance(module, types.ModuleType):
            continue
        try:
            items = list(vars(module).items())
        except Exception:
            continue
        for attr, value in items:
            if attr.startswith("__"):
                continue
            index.setdefault(id(value), []).append((name, attr))
    return index


def identity_facts(namespace: dict, names) -> dict:
    """What is the very same object as what: module attributes, other variables."""
    index = module_attribute_index()
    homes = {}
    for name in names:
        obj = namespace[name]
        if isinstance(obj, types.ModuleType):
            homes[name] = [["<module>", obj.__name__]]
            continue
        if isinstance(obj, _LITERALS):
            continue  # identity of 0, "x" or 3.14 means nothing (mason saves literals by value)
        found = index.get(id(obj), [])
        if isinstance(obj, _VALUE_TYPES):  # a shared () or frozenset() is a coincidence unless star-imported
            found = [pair for pair in found if pair[1] == name]
        if found:
            mod = getattr(obj, "__module__", None)
            found.sort(key=lambda pair: (pair[1] != name, pair[0] != mod, len(pair[0]), pair[0]))
            homes[name] = [list(pair) for pair in found[:3]]
    groups: dict[int, list] = {}
    for name in names:
        obj = namespace[name]
        if isinstance(obj, (type(None), bool, int, float, str, bytes)) or name in homes:
            continue
        groups.setdefault(id(obj), []).append(name)
    shared = [sorted(g) for g in groups.values() if len(g) > 1]
    # One level down: ``ax.figure is fig``, ``pair[0] is frame``...
    owners = {
        id(obj): name
        for name, obj in ((n, namespace[n]) for n in names)
        if not isinstance(obj, _VALUE_TYPES + (types.ModuleType, type, types.FunctionType))
    }
    links = []
    for name in names:
        obj = namespace[name]
        for path, child in _children(obj):
            other = owners.get(id(child))
            if other is not None and other != name and len(links) < 2000:
                links.append([name, path, other])
    return {"homes": homes, "shared": shared, "links": links}


def _children(obj):
    if isinstance(obj, (types.ModuleType, type, types.FunctionType, str, bytes)):
        return
    try:
        if isinstance(obj, (list, tuple)):
            for i, item in enumerate(obj[:100]):
                yield ("item", i), item
        elif isinstance(obj, dict):
            for i, (key, value) in enumerate(obj.items()):
                if i >= 100:
                    break
                if isinstance(key, (str, int)):
                    yield ("key", key), value
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict):
            for i, (key, value) in enumerate(state.items()):
                if i >= 200:
                    break
                if isinstance(key, str):
                    yield ("attr", key), value
    except Exception:
        return


def follow(obj, path):
    kind, key = path
    if kind == "attr":
        return vars(obj)[key]
    return obj[key]


def check_identity(namespace: dict, facts: dict) -> dict:
    """The same facts, checked in the restoring process: name -> what broke."""
    broken: dict[str, list] = {}
    for name, homes in facts["homes"].items():
        if name not in namespace:
            continue
        obj = namespace[name]
        ok = False
        for mod, attr in homes:
            try:
                if mod == "<module>":
                    ok = isinstance(obj, types.ModuleType) and obj.__name__ == attr and sys.modules.get(attr) is obj
                else:
                    module = sys.modules.get(mod) or importlib.import_module(mod)
                    ok = getattr(module, attr) is obj
            except Exception:
                ok = False
            if ok:
                break
        if not ok:
            mod, attr = homes[0]
            what = f"module {attr}" if mod == "<module>" else f"{mod}.{attr}"
            broken.setdefault(name, []).append(f"is no longer {what}")
    for group in facts["shared"]:
        present = [n for n in group if n in namespace]
        if len({id(namespace[n]) for n in present}) > 1:
            for n in present:
                broken.setdefault(n, []).append(
                    f"no longer the same object as {', '.join(x for x in present if x != n)}"
                )
    for name, path, other in facts["links"]:
        if name not in namespace or other not in namespace:
            continue
        try:
            child = follow(namespace[name], path)
        except Exception:
            child = None
        if child is not namespace[other]:
            sep = f".{path[1]}" if path[0] == "attr" else f"[{path[1]!r}]"
            broken.setdefault(name, []).append(f"{name}{sep} is no longer {other}")
    return broken


def main_functions(namespace: dict, names) -> list[str]:
    """Functions (and methods of classes) defined in __main__, by path."""
    found = []
    for name in names:
        obj = namespace.get(name)
        if isinstance(obj, types.FunctionType) and obj.__module__ == "__main__":
            found.append(name)
        elif isinstance(obj, type) and obj.__module__ == "__main__":
            for attr, value in vars(obj).items():
                if isinstance(value, (staticmethod, classmethod)):
                    value = value.__func__
                if isinstance(value, types.FunctionType):
                    found.append(f"{name}.{attr}")
    return found


def function_at(namespace, path):
    name, _, attr = path.partition(".")
    obj = namespace[name]
    if attr:
        obj = vars(obj)[attr]
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
    return obj


def callable_probes(namespace: dict, names) -> list[str]:
    """Functions of __main__ that take no arguments and read a global variable."""
    probes = []
    for name in names:
        fn = namespace.get(name)
        if not isinstance(fn, types.FunctionType) or fn.__module__ != "__main__":
            continue
        code = fn.__code__
        required = code.co_argcount + code.co_kwonlyargcount - len(fn.__defaults__ or ()) - len(fn.__kwdefaults__ or {})
        if required > 0 or code.co_flags & (0x20 | 0x80 | 0x200):  # generators, coroutines
            continue
        reads = [
            n
            for n in code.co_names
            if n in namespace and not isinstance(namespace[n], (types.ModuleType, types.FunctionType, type))
        ]
        if reads:
            probes.append(name)
    return probes[:20]


class _Timeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Timeout("time budget used up")


def call_probe(fn, seconds=5.0) -> str:
    """Call ``fn()`` with the random generators seeded; its result's fingerprint."""
    import random

    random.seed(0)
    np = sys.modules.get("numpy")
    if np is not None:
        np.random.seed(0)
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    sink = io.StringIO()
    try:
        stdout, sys.stdout = sys.stdout, sink
        try:
            result = fn()
        finally:
            sys.stdout = stdout
        return describe(result)["fp"]
    except BaseException as exc:  # the function's own failure is its result
        return f"raised {type(exc).__name__}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ------------------------------------------------------------------ notebooks

_MAGIC_BACKEND = re.compile(r"^(\s*%(?:matplotlib|pylab))\b(.*)$")
_INSTALLS = re.compile(r"^\s*(?:!|%)\s*(?:pip|conda|apt|apt-get)\b")
_TIMEIT = re.compile(r"^(\s*%%?timeit)\b")


def cells_of(path: str) -> list[str]:
    """The code cells' sources, nbformat 3 or 4, magics adapted to a headless run."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    if "cells" in nb:
        raw = [c for c in nb["cells"] if c.get("cell_type") == "code"]
        sources = [c.get("source", "") for c in raw]
    else:  # nbformat 3: worksheets, and ``input`` instead of ``source``
        raw = [c for ws in nb.get("worksheets", []) for c in ws.get("cells", []) if c.get("cell_type") == "code"]
        sources = [c.get("input", "") for c in raw]
    return [adapt("".join(s) if isinstance(s, list) else s) for s in sources]


def adapt(source: str) -> str:
    lines = []
    for line in source.splitlines():
        m = _MAGIC_BACKEND.match(line)
        if m:
            flags = " ".join(w for w in m.group(2).split() if w.startswith("-"))
            line = f"{m.group(1)} agg {flags}".rstrip()
        elif _INSTALLS.match(line):
            line = "pass  # corpus_check: install line left out"
        elif _TIMEIT.match(line):
            line = _TIMEIT.sub(r"\1 -n1 -r1", line, count=1)
        lines.append(line)
    return "\n".join(lines)


def run_notebook(path: str, budget: float, prelude: str = "") -> dict:
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class HeadlessShell(InteractiveShell):
        def enable_gui(self, gui=None):  # Agg needs no event loop
            pass

    config = Config()
    config.HistoryManager.enabled = False
    config.InteractiveShell.colors = "nocolor"
    main = sys.modules["__main__"]
    shell = HeadlessShell.instance(config=config, user_module=main)
    if prelude:  # the environment shim the manifest names (never in __main__)
        exec(prelude, {"__name__": "_corpus_prelude"})
    cells = cells_of(path)
    ok, failed, errors = 0, 0, {}
    not_run = 0
    deadline = time.monotonic() + budget
    signal.signal(signal.SIGALRM, _on_alarm)
    for source in cells:
        if not source.strip():
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            not_run += 1
            continue
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            result = shell.run_cell(source, store_history=True, silent=False)
        except _Timeout as exc:  # raised outside the cell's own code
            result = None
            error = exc
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if result is not None and result.success:
            ok += 1
            continue
        failed += 1
        if result is not None:
            error = result.error_in_exec or result.error_before_exec
        key = type(error).__name__ if error is not None else "?"
        errors[key] = errors.get(key, 0) + 1
    return {"cells_ok": ok, "cells_failed": failed, "cells_not_run": not_run, "cell_errors": errors}


# ---------------------------------------------------------------------- steps


def _mason_failures(caught) -> tuple[dict, list]:
    import mason

    failures, other = {}, []
    for w in caught:
        if isinstance(w.message, mason.SkippedVariableWarning):
            failures.update(w.message.failures)
        elif isinstance(w.message, mason.MasonWarning):
            other.append(f"{type(w.message).__name__}: {str(w.message)[:300]}")
    return failures, other


def describe_all(namespace, names) -> dict:
    out = {}
    for name in names:
        if name in namespace:
            out[name] = describe(namespace[name])
    return out


def _as_pickle(obj):
    """What a plain in-process pickle round trip makes of ``obj`` (its
    library's own ``__reduce__``/``__setstate__`` may drop state), or None
    where that says nothing more than the object itself."""
    import pickle

    if isinstance(obj, _SCALARS + (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
        return None
    np = sys.modules.get("numpy")
    if np is not None and isinstance(obj, np.ndarray) and not obj.dtype.hasobject:
        return None
    try:
        return describe(pickle.loads(pickle.dumps(obj, 5)))
    except Exception:
        return None


def save(notebook: str, session: str, report: str, budget: float, prelude: str = "") -> None:
    import mason

    run = run_notebook(notebook, budget, prelude)
    namespace = vars(sys.modules["__main__"])
    # Described before the save: pickling may change what it pickles
    # (matplotlib's CallbackRegistry advances its id counter).  Figures and
    # axes after it: describing them computes their lazy limits, which the
    # save must find as the notebook left them.
    before = describe_all(namespace, [n for n in namespace if not n.startswith("__") and not _is_artist(namespace[n])])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        error = None
        try:
            mason.dump_module(session)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
        save_s = time.perf_counter() - start
    failures, other = _mason_failures(caught)
    result = {"run": run, "save_s": save_s, "save_error": error, "save_failures": failures, "save_warnings": other}
    if error is None:
        info = mason.inspect(session)
        saved = [v["name"] for v in info.variables]
        result["saved"] = saved
        result["stored"] = {v["name"]: v["stored"] for v in info.variables}
        result["skipped"] = {s["name"]: s["reason"] for s in info.skipped}
        names = saved + [s for s in result["skipped"] if s not in saved]
        result["descriptions"] = {
            n: before[n] if n in before else describe(namespace[n]) for n in saved if n in namespace
        }
        for name, desc in result["descriptions"].items():
            copied = _as_pickle(namespace[name])
            if copied is not None:
                desc["pickle_fp"] = copied["fp"]
                desc["pickle_type"] = copied["type"]
                if copied["fp"] != desc["fp"]:
                    desc["pickle_text"] = copied["text"]
        result["identity"] = identity_facts(namespace, [n for n in saved if n in namespace])
        result["functions"] = main_functions(namespace, saved)
        probes = callable_probes(namespace, saved)
        result["calls"] = {name: call_probe(namespace[name]) for name in probes}
        del names
    _write(report, result)


def load(session: str, report: str) -> None:
    import mason

    main = sys.modules["__main__"]
    before = set(vars(main))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start = time.perf_counter()
        error = None
        try:
            mason.load_module(session)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:2000]
            error += "\n" + "".join(traceback.format_exc().splitlines(keepends=True)[-6:])
        load_s = time.perf_counter() - start
    failures, other = _mason_failures(caught)
    namespace = vars(main)
    result = {
        "load_s": load_s,
        "load_error": error,
        "load_failures": failures,
        "load_warnings": other,
        "present": sorted(n for n in namespace if n not in before or not n.startswith("__")),
    }
    _write(report + ".partial", result)  # if a description crashes, what loaded is known
    with open(report) as f:
        facts = json.load(f)
    saved = facts.get("saved", [])
    result["descriptions"] = describe_all(namespace, saved)
    result["identity_broken"] = check_identity(
        namespace, facts.get("identity", {"homes": {}, "shared": [], "links": []})
    )
    stale = []
    for path in facts.get("functions", []):
        try:
            fn = function_at(namespace, path)
        except Exception:
            continue
        if fn.__globals__ is not namespace:
            stale.append(path)
    result["stale_globals"] = stale
    result["calls"] = {name: call_probe(namespace[name]) for name in facts.get("calls", {}) if name in namespace}
    _write(report + ".load", result)


def _write(path: str, data) -> None:
    with open(path, "w") as f:
        json.dump(data, f, default=str)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    step = argv[0]
    if step == "save":
        save(argv[1], argv[2], argv[3], float(argv[4]), argv[5] if len(argv) > 5 else "")
    elif step == "load":
        load(argv[1], argv[2])
    else:
        raise SystemExit(f"unknown step {step!r}")
