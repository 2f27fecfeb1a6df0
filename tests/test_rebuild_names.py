"""Saved files name functions of mason._rebuild: the list only ever grows."""

import mason._rebuild as rebuild

# Append new names at the end; never remove or rename one.
FROZEN = [
    "import_module",
    "module_dict",
    "make_module",
    "module_setstate",
    "code_from_marshal",
    "make_cell",
    "cell_setstate",
    "make_function",
    "function_setstate",
    "empty_cell_marker",
    "make_class",
    "make_enum",
    "class_setstate",
    "make_typevar",
    "make_staticmethod",
    "make_classmethod",
    "make_dict_keys",
    "make_dict_values",
    "make_dict_items",
    "make_mappingproxy",
    "make_memoryview",
    "make_weakref",
    "make_lock",
    "make_rlock",
    "class_attribute",
    "make_dead_weakref",
    "make_weakproxy_to",
    "make_dead_weakproxy",
    "make_tempfile",
    "getattr_chain",
    "make_file",
    "make_stringio",
    "matplotlib_rcparams",
    "make_keyed_ref",
    "make_weakref_with_callback",
    "make_array",
    "bytes_from_buffer",
    "torch_storage",
    "torch_tensor",
    "torch_parameter",
    "torch_tensor_setstate",
    "torch_typed_storage",
    "module_attribute",
    "reopen_file",
    "make_method",
    "import_package",
    "dill_create_function",
    "dill_create_code",
    "dill_create_cell",
    "dill_create_type",
    "dill_load_type",
    "dill_import_module",
    "dill_class_attribute",
    "dill_namedtuple",
    "dill_ndarray",
    "dill_dtype_class",
    "dill_filehandle",
    "dill_rlock",
    "dill_weakref",
    "dill_weakproxy",
    "dill_typing_tuple",
    "dill_eval_repr",
    "dill_setitems",
    "dill_setattr",
    "dill_delattr",
    "code_portable",
    "dataclass_setstate",
    "dask_future",
    "dask_graph",
    "dask_partition_file",
    "dask_cluster_note",
]


def public_callables():
    return [
        name
        for name, value in vars(rebuild).items()
        if not name.startswith("_") and callable(value) and getattr(value, "__module__", None) == rebuild.__name__
    ]


def test_every_frozen_name_still_exists():
    missing = [name for name in FROZEN if not callable(getattr(rebuild, name, None))]
    assert not missing, f"removed or renamed reconstructors break saved files: {missing}"


def test_no_unlisted_reconstructors():
    assert set(public_callables()) <= set(FROZEN), (
        f"new reconstructors must be appended to FROZEN: {sorted(set(public_callables()) - set(FROZEN))}"
    )


def test_every_frozen_name_is_pickled_as_this_modules():
    """Some reconstructors live in the _rebuild_* modules: pickle must still
    write ``mason._rebuild.<name>`` for each, and read it back to the same
    function, or files would name modules that a later split moves again."""
    import pickle
    import pickletools

    for name in FROZEN:
        function = getattr(rebuild, name)
        assert function.__module__ == "mason._rebuild" and function.__qualname__ == name, name
        data = pickle.dumps(function, protocol=5)
        globals_named = [
            arg for op, arg, _ in pickletools.genops(data) if op.name in ("SHORT_BINUNICODE", "BINUNICODE")
        ]
        assert globals_named == ["mason._rebuild", name], (name, globals_named)
        assert pickle.loads(data) is function
    assert set(public_callables()) == set(FROZEN)
