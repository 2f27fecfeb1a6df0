"""The session functions under dill's module name: ``mason.session.dump_module``
is ``dill.session.dump_module`` for code written against dill.

Loading runs code from the file: only load files you trust.
"""

from ._session import dump_module, dump_session, load_module, load_module_asdict, load_session

__all__ = ["dump_module", "load_module", "load_module_asdict", "dump_session", "load_session"]
