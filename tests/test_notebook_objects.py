"""What real notebooks hold, saved in one fresh interpreter and restored in another."""

import textwrap

import pytest
from conftest import run_python


def roundtrip(tmp_path, save: str, load: str):
    path = tmp_path / "nb.mason"
    prelude = f"import mason, warnings\nPATH = {str(path)!r}\n"
    run_python(prelude + textwrap.dedent(save), cwd=tmp_path, env={"MPLBACKEND": "Agg"})
    return run_python(prelude + textwrap.dedent(load), cwd=tmp_path, env={"MPLBACKEND": "Agg"})


def test_star_imports_come_back_as_the_same_objects(tmp_path):
    roundtrip(
        tmp_path,
        """
        from numpy import *
        from math import *
        names = [n for n in dir() if not n.startswith('_')]
        mason.dump_module(PATH)
        info = mason.inspect(PATH)
        assert len(info.variables) > 300, len(info.variables)
        """,
        """
        mason.load_module(PATH)
        import numpy, math
        assert add is numpy.add and ndarray is numpy.ndarray and array is numpy.array and sin is math.sin
        assert floor is math.floor and e == math.e
        assert newaxis is None and inf == numpy.inf
        """,
    )


def test_pandas_multiindex_and_time_index(tmp_path):
    roundtrip(
        tmp_path,
        """
        import numpy as np, pandas as pd
        idx = pd.MultiIndex.from_product([['a', 'b'], [1, 2, 3]], names=['letter', 'n'])
        frame = pd.DataFrame({'v': np.arange(6.0), 'cat': pd.Categorical(list('xyzxyz'))}, index=idx)
        series = pd.Series(np.arange(5), index=pd.date_range('2026-01-01', periods=5, freq='D', tz='UTC'))
        mason.dump_module(PATH)
        """,
        """
        mason.load_module(PATH)
        import pandas as pd
        assert frame.index.names == ['letter', 'n'] and frame.loc[('b', 2), 'v'] == 4.0
        assert list(frame['cat'].cat.categories) == ['x', 'y', 'z']
        assert str(series.index.tz) == 'UTC' and series.index.freqstr == 'D'
        assert series['2026-01-03'] == 2
        """,
    )


def test_sklearn_pipeline_and_estimator_class_defined_in_notebook(tmp_path):
    roundtrip(
        tmp_path,
        """
        import numpy as np
        from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        class Clip(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
            def __init__(self, limit=3.0):
                self.limit = limit
            def fit(self, X, y=None):
                self.n_features_in_ = X.shape[1]
                return self
            def transform(self, X):
                return np.clip(X, -self.limit, self.limit)

        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 4))
        y = (X[:, 0] + X[:, 1] > 0).astype(int)
        model = make_pipeline(Clip(2.0), StandardScaler(), LogisticRegression()).fit(X, y)
        expected = model.predict_proba(X[:5])
        mason.dump_module(PATH)
        """,
        """
        mason.load_module(PATH)
        import numpy as np
        assert np.allclose(model.predict_proba(X[:5]), expected)
        clip = model.steps[0][1]
        assert type(clip) is Clip and clip.limit == 2.0
        # scikit-learn wraps transform in __init_subclass__: exactly once
        out = Clip(1.0).fit(X).transform(X)
        assert isinstance(out, np.ndarray) and out.max() <= 1.0
        wrapped = Clip.transform
        depth = 0
        while hasattr(wrapped, '__wrapped__'):
            wrapped, depth = wrapped.__wrapped__, depth + 1
        assert depth <= 1, depth
        assert Clip(1.0).set_output(transform='pandas').fit_transform(X).__class__.__name__ == 'DataFrame'
        """,
    )


def test_matplotlib_figure_and_modified_rcparams(tmp_path):
    roundtrip(
        tmp_path,
        """
        import matplotlib
        import matplotlib.pyplot as plt
        matplotlib.rcParams['lines.linewidth'] = 4.5
        matplotlib.rcParams['axes.titlesize'] = 'x-large'
        fig, ax = plt.subplots()
        ax.plot([1, 2, 3], [4, 5, 6], label='line')
        ax.set_title('results')
        params = matplotlib.rcParams
        from matplotlib import rcParams
        mason.dump_module(PATH)
        """,
        """
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.load_module(PATH)
        import matplotlib
        assert ax.get_title() == 'results' and ax.figure is fig
        assert list(ax.lines[0].get_ydata()) == [4, 5, 6]
        assert rcParams is params is matplotlib.rcParams  # the live object, with the user's changes
        assert params['lines.linewidth'] == 4.5 and params['axes.titlesize'] == 'x-large'
        assert not [w for w in caught if 'rcParams' in str(w.message)]
        fig.savefig('out.png')
        """,
    )


def test_sympy_and_mpmath(tmp_path):
    roundtrip(
        tmp_path,
        """
        import sympy, mpmath
        x, y = sympy.symbols('x y')
        expr = sympy.sin(x) ** 2 + sympy.cos(x) ** 2 + y
        deriv = sympy.diff(expr, y)
        mpmath.mp.dps = 30
        big = mpmath.sqrt(2)
        mason.dump_module(PATH)
        """,
        """
        mason.load_module(PATH)
        import sympy
        assert sympy.simplify(expr) == y + 1 and deriv == 1
        import mpmath
        mpmath.mp.dps = 30  # precision is mpmath's global state, not the session's
        assert str(big).startswith('1.41421356237309504880168872'), big
        """,
    )


def test_unsavable_objects_are_skipped_and_the_rest_restored(tmp_path):
    roundtrip(
        tmp_path,
        """
        import multiprocessing, socket
        import numpy as np
        arr = np.arange(10)
        it = np.nditer(arr)
        pool = multiprocessing.Pool(1)
        sock = socket.socket()
        gen = (i for i in range(3))
        keep = {'total': int(arr.sum())}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            mason.dump_module(PATH, exclude=['caught'])
        skipped = {s['name'] for s in mason.inspect(PATH).skipped}
        assert {'it', 'pool', 'sock', 'gen'} <= skipped, skipped
        pool.terminate()
        sock.close()
        """,
        """
        mason.load_module(PATH)
        assert keep == {'total': 45} and arr.sum() == 45
        assert not any(n in globals() for n in ('it', 'pool', 'sock', 'gen'))
        """,
    )


def test_ipython_bookkeeping_is_never_saved(tmp_path):
    path = tmp_path / "ip.mason"
    cells = ["import mason", "x = 1 + 1", "x", "def f(v):\n    return v * x", f"mason.dump_module({str(path)!r})"]
    run_python(
        f"""
        from IPython.core.interactiveshell import InteractiveShell
        shell = InteractiveShell.instance()
        for cell in {cells!r}:
            result = shell.run_cell(cell)
            assert result.success, result.error_in_exec
        import mason
        names = mason.inspect({str(path)!r}).names()
        assert 'x' in names and 'f' in names, names
        leaked = [n for n in names if n in ('In', 'Out', '_', '__', '___', '_oh', '_ih', '_dh', 'get_ipython', 'exit', 'quit') or n.startswith('_i')]
        assert not leaked, leaked
        """,
        cwd=tmp_path,
    )


def test_lru_cache_functions_of_the_session_come_back_working(tmp_path):
    # functools' own pickling of a cache wrapper is by name: a file saved
    # from __main__ referred to itself and the variable failed to load.
    roundtrip(
        tmp_path,
        """
        import functools

        @functools.lru_cache(maxsize=None)
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)

        @functools.cache
        def shifted(x):
            return x + OFFSET

        @functools.lru_cache
        def square(x):
            return x * x

        square.note = 'kept'

        class Model:
            @functools.lru_cache(maxsize=4, typed=True)
            def triple(self, x):
                return 3 * x

        OFFSET = 10
        fib(20)
        mason.dump_module(PATH)
        """,
        """
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            mason.load_module(PATH)
        assert fib(30) == 832040 and fib.__name__ == 'fib' and fib.cache_parameters()['maxsize'] is None
        assert fib.__wrapped__.__globals__ is globals()
        OFFSET = 100
        assert shifted(1) == 101  # reads the live global
        assert square(3) == 9 and square.note == 'kept' and square.cache_parameters()['maxsize'] == 128
        assert Model().triple(2) == 6 and Model.triple.cache_parameters() == {'maxsize': 4, 'typed': True}
        """,
    )


def test_importable_lru_cache_function_stays_a_reference(tmp_path):
    roundtrip(
        tmp_path,
        """
        from urllib.parse import urlsplit  # an lru_cache wrapper
        import functools
        assert isinstance(urlsplit, functools._lru_cache_wrapper)
        split = urlsplit
        mason.dump_module(PATH)
        """,
        """
        mason.load_module(PATH)
        import urllib.parse
        assert urlsplit is split is urllib.parse.urlsplit
        """,
    )


def test_future_features_and_objects_of_private_modules_keep_their_identity(tmp_path):
    # ``norm`` is an object of scipy.stats._continuous_distns and a public
    # attribute of scipy.stats; ``division`` is __future__'s; ``pi`` a float.
    pytest.importorskip("scipy")
    roundtrip(
        tmp_path,
        """
        exec("from __future__ import division, print_function")  # as a notebook cell does
        from scipy.stats import norm, binom
        from numpy import *
        frozen = norm(loc=1.0)
        mason.dump_module(PATH)
        stored = {v['name']: v['stored'] for v in mason.inspect(PATH).variables}
        assert stored['norm'] == stored['binom'] == 'reference', stored
        """,
        """
        with warnings.catch_warnings():
            warnings.simplefilter('error')
            mason.load_module(PATH)
        import __future__, numpy, scipy.stats
        assert division is __future__.division and print_function is __future__.print_function
        assert norm is scipy.stats.norm and binom is scipy.stats.binom
        assert pi == numpy.pi and add is numpy.add  # literals by value, the rest by reference
        assert frozen.mean() == 1.0
        """,
    )
