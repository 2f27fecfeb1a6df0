"""The Unpickler: the C ``pickle.Unpickler`` with dill's class rebinding,
dill's own names read as mason's (see _dillcompat.py), and clear errors for
damaged streams.

Loading a pickle runs code named in it.  Only load data you trust.
"""

from __future__ import annotations

import contextlib
import pickle
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is not imported at run time
    from collections.abc import Iterator

from . import _rebuild, _settings
from ._allowlist import Allowlist
from .errors import UnpicklingError

__all__ = ["Unpickler", "check_map_location", "translate_error"]


class Unpickler(pickle.Unpickler):
    """Unpickles mason (and plain pickle) streams.

    Loading runs code from the stream: only load data you trust.

    ``ignore=False`` (dill's default): when the loaded object is an instance
    of a class saved from ``__main__`` and this interpreter's ``__main__``
    has a class of the same name, the object is rebound to that live class.

    ``allow``: an :class:`~mason._allowlist.Allowlist` (or its patterns):
    the pickle is scanned first and refused if it needs anything outside the
    list, then loaded by mason's restricted machine (``_vm.py``), which
    enforces the list on every step.
    ``map_location``: where torch tensors go, as for ``torch.load``: a device
    ('cpu', 'cuda:1', a ``torch.device``), a dict from saved device names to
    device names, or ``f(storage, location)``; None (default) restores each
    tensor on the device it was saved from.
    """

    def __init__(self, file, *, ignore=None, allow=None, map_location=None, load_state=None, **kwds):
        kwds.pop("main", None)  # dill accepts it; the live __main__ is used
        super().__init__(file, **kwds)
        self._file = file
        self._kwds = kwds
        self._ignore = bool(_settings.option(ignore, "ignore"))
        self._allow = Allowlist.from_arg(allow)
        self._map_location = check_map_location(map_location)
        self._load_state = load_state if load_state is not None else _rebuild._LoadState()

    def find_class(self, module, name):
        return self._resolve(module, name)

    def _resolve(self, module, name):
        # dill's names first: dill itself is never imported, installed or not
        found = _dill_translate(module, name) if module.startswith(_DILL_PREFIXES) or name in _DILL_NAMES else None
        if found is not None:
            kind, value = found
            if kind == "rebuild":
                return self._resolve(_REBUILD, value)  # as mason's own: subclasses see it by that name
            return self._dill_special(value)
        try:
            return super().find_class(module, name)
        except AttributeError:
            renamed = _RENAMES.get((module, name))
            if renamed is None:
                raise
            return super().find_class(*renamed)

    def _dill_special(self, key):
        """dill's hand-written globals, as dill's own Unpickler resolves them."""
        if key == "namespace":
            return self._dill_namespace()
        return _dill_specials()[key]

    def _dill_namespace(self) -> dict:
        # A single object's functions get the live __main__'s globals (dill's
        # semantics); a session load points this at the namespace it fills.
        return sys.modules["__main__"].__dict__

    def load(self):
        if self._allow is not None:
            from ._api import load_restricted

            obj = load_restricted(self._file, self._allow, self._kwds.get("buffers"), self._map_location)
            if not self._ignore:
                _rebind_to_main(obj)
            return obj
        with self.loading():
            return self.load_next()

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The load's options, for the rebuilders while the block runs.

        Rebuilders are module-level functions: the options reach them through
        context variables, set only while a load runs.  A session sets them
        once around all its variables (``load_next`` each)."""
        tokens = (_rebuild._MAP_LOCATION.set(self._map_location), _rebuild._LOAD.set(self._load_state))
        try:
            yield
        finally:
            _rebuild._LOAD.reset(tokens[1])
            _rebuild._MAP_LOCATION.reset(tokens[0])

    def load_next(self):
        """The next pickle of the stream, inside ``loading()`` (plain loads only)."""
        try:
            obj = pickle.Unpickler.load(self)
        except (EOFError, pickle.UnpicklingError) as exc:
            raise translate_error(exc) from None
        if not self._ignore:
            _rebind_to_main(obj)
        return obj


_REBUILD = "mason._rebuild"

#: what dill's hand-written globals are (``namespace`` depends on the load)
#: which globals may be dill's (see _dillcompat.HAND_WRITTEN): only these
#: import the tables, so that mason's own loads never pay for them
_DILL_PREFIXES = ("dill", "__builtin__")
_DILL_NAMES = frozenset({"__main__", "NoneType"})


def _dill_translate(module: str, name: str):
    from . import _dillcompat

    return _dillcompat.translate(module, name)


def _dill_specials() -> dict:
    from . import _dillcompat

    return {"NoneType": type(None), "dill": _dillcompat.DILL_MODULE, "empty_cell": _rebuild._EMPTY_CELL}


#: names that differ between Python versions: (saved) -> (this version's)
_RENAMES = {
    ("enum", "EnumType"): ("enum", "EnumMeta"),  # EnumType is 3.11+'s name
    ("enum", "EnumMeta"): ("enum", "EnumType"),
}


def _rebind_to_main(obj) -> None:
    cls = type(obj)
    if cls.__module__ != "__main__" or isinstance(obj, type):
        return
    live = getattr(sys.modules.get("__main__"), cls.__name__, None)
    if isinstance(live, type) and live is not cls:
        try:
            obj.__class__ = live
        except TypeError:  # layouts differ (slots, builtins): keep the saved class
            pass


def check_map_location(value):
    """``value`` if it is a ``map_location`` torch.load would accept, else TypeError."""
    is_device = type(value).__name__ == "device" and type(value).__module__ == "torch"
    if value is None or isinstance(value, (str, dict)) or callable(value) or is_device:
        return value
    raise TypeError(
        "map_location must be a device name, a torch.device, a dict of device names "
        f"or a callable, not {type(value).__name__}"
    )


def translate_error(exc: BaseException) -> UnpicklingError:
    """mason's error for a stream the unpickler could not read."""
    if isinstance(exc, UnpicklingError):
        return exc
    if isinstance(exc, EOFError):
        return UnpicklingError(f"the pickle stream is truncated ({exc or 'ran out of input'})")
    return UnpicklingError(f"not a valid pickle stream: {exc}")
