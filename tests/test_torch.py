"""PyTorch tensors, models and optimizers: storages as out-of-band blobs,
views that keep sharing, and ``map_location`` on load.

Skipped where torch is not installed (CI); the CUDA tests need a GPU.
"""

import io
import os
import pickle
import textwrap
import types

import pytest
from conftest import run_python

torch = pytest.importorskip("torch")

import mason  # noqa: E402
from mason import _rebuild  # noqa: E402
from mason._format import ContainerReader  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
NO_GPU = {"CUDA_VISIBLE_DEVICES": ""}


def run(tmp_path, code, env=None, check=True):
    header = f"import mason, torch\nPATH = {str(tmp_path / 's.mason')!r}\nREF = {str(tmp_path / 'ref.pt')!r}\n"
    return run_python(header + textwrap.dedent(code), cwd=tmp_path, env=env, check=check)


# ---------------------------------------------------------------- a model and its optimizer

MODEL_SESSION = """
torch.manual_seed(0)

class Net(torch.nn.Module):  # a class of __main__: saved by value
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
        self.register_buffer("scale", torch.full((3,), 0.5))

    def forward(self, x):
        return self.body(x) * self.scale

def train_step(model, opt, x):
    opt.zero_grad()
    loss = model(x).pow(2).mean()
    loss.backward()
    opt.step()
    return loss.detach()

model = Net().to(DEVICE)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
x = torch.randn(32, 6, device=DEVICE)
first_loss = train_step(model, opt, x)
mason.dump_module(PATH)
# What the loaded session must reproduce: the state now, and one more step.
import copy
reference = copy.deepcopy({"out": model(x).detach(), "model": model.state_dict(), "opt": opt.state_dict()})
reference["next_loss"] = train_step(model, opt, x)
reference["next_out"] = model(x).detach()
torch.save(reference, REF)
"""

MODEL_CHECK = """
import pickle
ref = torch.load(REF, map_location=LOAD_DEVICE)

def same(a, b, computed=False):
    assert a.dtype == b.dtype and a.shape == b.shape and a.device == b.device, (a, b)
    if computed and CROSS_DEVICE:  # computed here on another device than the reference
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5), (a, b)
    else:
        assert torch.equal(a, b), (a, b)

assert isinstance(model, Net) and type(model).__module__ == "__main__"
for p in model.parameters():
    assert p.device.type == LOAD_DEVICE and type(p) is torch.nn.Parameter and p.requires_grad
assert model.state_dict().keys() == ref["model"].keys()
for key, value in ref["model"].items():
    same(model.state_dict()[key], value)
same(model(x).detach(), ref["out"], computed=True)
state = opt.state_dict()
assert state["param_groups"] == ref["opt"]["param_groups"]
assert state["state"].keys() == ref["opt"]["state"].keys() and len(state["state"]) == 4
for index, values in ref["opt"]["state"].items():
    for name, value in values.items():
        same(state["state"][index][name], value)
# The optimizer holds the model's own parameters, not copies.
params = list(model.parameters())
assert [id(p) for p in opt.param_groups[0]["params"]] == [id(p) for p in params]
assert all(p in opt.state for p in params)
# Training goes on exactly as it would have.
same(train_step(model, opt, x), ref["next_loss"], computed=True)
same(model(x).detach(), ref["next_out"], computed=True)
"""


def test_model_and_adam_round_trip(tmp_path):
    run(tmp_path, "DEVICE = 'cpu'\n" + MODEL_SESSION)
    run(tmp_path, "LOAD_DEVICE = 'cpu'\nCROSS_DEVICE = False\nmason.load_module(PATH)\n" + MODEL_CHECK)


@cuda
def test_model_and_adam_on_cuda(tmp_path):
    run(tmp_path, "DEVICE = 'cuda'\n" + MODEL_SESSION)
    run(tmp_path, "LOAD_DEVICE = 'cuda'\nCROSS_DEVICE = False\nmason.load_module(PATH)\n" + MODEL_CHECK)
    # The same file on a machine without a GPU.
    mapped = "LOAD_DEVICE = 'cpu'\nCROSS_DEVICE = True\nmason.load_module(PATH, map_location='cpu')\n"
    run(tmp_path, mapped + MODEL_CHECK, env=NO_GPU)
    proc = run(tmp_path, "mason.load_module(PATH)\n", env=NO_GPU, check=False)
    assert proc.returncode != 0
    assert "cannot restore variable '" in proc.stderr and "map_location='cpu'" in proc.stderr


# ---------------------------------------------------------------- dtypes, views, gradients

TENSORS_SESSION = """
import pickle
torch.manual_seed(1)
names = ["bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
         "float64", "complex64", "complex128", "uint16", "uint32", "uint64", "float8_e4m3fn", "float8_e5m2"]
by_dtype = {}
for name in names:
    dtype = getattr(torch, name, None)
    if dtype is None:
        continue  # an older torch
    size = torch.empty(0, dtype=dtype).element_size()
    raw = torch.randint(0, 256, (5, 7 * size), dtype=torch.uint8, device=DEVICE)
    by_dtype[name] = (raw % 2).bool() if name == "bool" else raw.view(dtype)
    by_dtype[name + "_t"] = by_dtype[name].t()  # not contiguous

base = torch.arange(60.0, device=DEVICE).reshape(6, 10)
transposed = base.t()
stepped = base[1:5:2, 3:]
row = base[2]
expanded = torch.arange(3.0, device=DEVICE).expand(4, 3)  # stride 0
empty = torch.empty(0, 3, device=DEVICE)
scalar = torch.tensor(2.5, dtype=torch.bfloat16, device=DEVICE)
conj = torch.randn(4, dtype=torch.complex64, device=DEVICE).conj()  # a lazy conjugate view

leaf = torch.randn(3, requires_grad=True, device=DEVICE)
(leaf * 2).sum().backward()
nonleaf = leaf * 3
param = torch.nn.Parameter(torch.randn(2, 2, device=DEVICE))
frozen = torch.nn.Parameter(torch.randn(2, device=DEVICE), requires_grad=False)
noted = torch.zeros(2, device=DEVICE)
noted.note = "kept"
same_again = [base, base]
storage = base.untyped_storage()
mason.dump_module(PATH)

def describe(t):
    return {"dtype": str(t.dtype), "shape": tuple(t.shape), "stride": t.stride(),
            "offset": t.storage_offset(), "device": t.device.type,
            "bytes": bytes(t.detach().cpu().resolve_conj().contiguous().view(-1).view(torch.uint8).numpy()),
            "requires_grad": t.requires_grad, "type": type(t).__name__}

tensors = {k: v for k, v in globals().items() if isinstance(v, torch.Tensor)}
tensors.update({"by_dtype." + k: v for k, v in by_dtype.items()})
with open(REF, "wb") as f:
    pickle.dump({k: describe(v) for k, v in tensors.items()}, f)
"""

TENSORS_CHECK = """
import pickle
with open(REF, "rb") as f:
    expected = pickle.load(f)
tensors = {k: v for k, v in globals().items() if isinstance(v, torch.Tensor)}
tensors.update({"by_dtype." + k: v for k, v in by_dtype.items()})
assert len(by_dtype) >= 24, sorted(by_dtype)
assert sorted(tensors) == sorted(expected)
for name, t in tensors.items():
    assert describe(t) == expected[name], (name, describe(t), expected[name])

def storage_of(t):
    return t.untyped_storage().data_ptr()

# Views of one storage still share it, and the same tensor stays one object.
assert storage_of(transposed) == storage_of(stepped) == storage_of(row) == storage_of(base)
base[2, 4] = -1.0
assert row[4].item() == -1.0 and transposed[4, 2].item() == -1.0
assert same_again[0] is same_again[1] is base
assert storage.data_ptr() == storage_of(base)
assert by_dtype["float32_t"].untyped_storage().data_ptr() == storage_of(by_dtype["float32"])
# Gradients, Parameters, attributes.
assert leaf.is_leaf and torch.equal(leaf.grad, torch.full((3,), 2.0, device=leaf.device))
assert nonleaf.requires_grad and nonleaf.is_leaf  # saved without its graph, as torch.save does
assert type(param) is torch.nn.Parameter and param.requires_grad
assert type(frozen) is torch.nn.Parameter and not frozen.requires_grad
assert noted.note == "kept"
"""


def test_dtypes_views_and_gradients_round_trip(tmp_path):
    run(tmp_path, "DEVICE = 'cpu'\n" + TENSORS_SESSION)
    describe = TENSORS_SESSION[TENSORS_SESSION.index("def describe") : TENSORS_SESSION.index("tensors = ")]
    run(tmp_path, "mason.load_module(PATH)\n" + describe + TENSORS_CHECK)


@cuda
def test_dtypes_views_and_gradients_on_cuda(tmp_path):
    run(tmp_path, "DEVICE = 'cuda'\n" + TENSORS_SESSION)
    describe = TENSORS_SESSION[TENSORS_SESSION.index("def describe") : TENSORS_SESSION.index("tensors = ")]
    run(tmp_path, "mason.load_module(PATH)\n" + describe + TENSORS_CHECK)
    cpu_describe = describe.replace('"device": t.device.type', '"device": "cuda"')
    run(tmp_path, "mason.load_module(PATH, map_location='cpu')\n" + cpu_describe + TENSORS_CHECK, env=NO_GPU)


def test_dumps_and_loads_keep_dtype_geometry_and_sharing():
    base = torch.arange(24, dtype=torch.bfloat16).reshape(4, 6)
    obj = {"base": base, "view": base.t()[2:], "param": torch.nn.Parameter(torch.ones(3)), "flags": base > 3}
    for protocol in (2, 4, 5, None):
        data = mason.dumps(obj, protocol=protocol)
        assert b"_load_from_bytes" not in data  # not torch's pickling (torch.save inside)
        for result in (mason.loads(data), pickle.loads(data)):
            assert torch.equal(result["base"], base) and result["base"].dtype == torch.bfloat16
            assert result["view"].stride() == obj["view"].stride()
            assert result["view"].storage_offset() == obj["view"].storage_offset()
            assert torch.equal(result["view"], obj["view"])
            assert result["view"].untyped_storage().data_ptr() == result["base"].untyped_storage().data_ptr()
            assert type(result["param"]) is torch.nn.Parameter
            assert torch.equal(result["flags"], obj["flags"])
            result["base"][0, 0] = 7  # writable, never the caller's bytes
    assert base[0, 0] == 0


def test_tensors_torch_pickles_differently_still_round_trip():
    sparse = torch.randn(4, 4).relu().to_sparse()
    meta = torch.empty(3, 2, device="meta")
    result = mason.loads(mason.dumps({"sparse": sparse, "meta": meta}))
    assert torch.equal(result["sparse"].to_dense(), sparse.to_dense())
    assert result["meta"].device.type == "meta" and result["meta"].shape == (3, 2)


def test_typed_storage_round_trips():
    with pytest.warns(UserWarning, match="TypedStorage is deprecated"):
        typed = torch.storage.TypedStorage(
            wrap_storage=torch.arange(4.0).untyped_storage(), dtype=torch.float32, _internal=False
        )
    result = mason.loads(mason.dumps(typed, protocol=5))
    assert type(result) is torch.storage.TypedStorage and result.dtype == torch.float32
    assert result.tolist() == [0.0, 1.0, 2.0, 3.0]


# ---------------------------------------------------------------- out of band


def test_storages_are_blobs_mapped_on_load(tmp_path):
    path = tmp_path / "s.mason"
    module = types.ModuleType("tensors")
    module.big = torch.arange(1 << 20, dtype=torch.float32)  # 4 MiB
    module.half = module.big[::2]  # a view: no second copy
    module.weights = torch.nn.Parameter(torch.randn(256, 128, dtype=torch.bfloat16))
    mason.dump_module(str(path), module=module)

    with ContainerReader.open(str(path)) as reader:
        blobs = sorted(reader.blob_info(i)["raw_length"] for i in range(reader.blob_count))
        segments = [reader.segment_info(i)["raw_length"] for i in range(reader.segment_count)]
    assert blobs == sorted([4 << 20, 256 * 128 * 2])
    assert max(segments) < 2000  # the bytes are not in the pickle
    sizes = {v["name"]: v["size"] for v in mason.inspect(str(path)).variables}
    assert sizes["big"] >= 4 << 20 and sizes["half"] < 1000

    ns = mason.load_module_asdict(str(path))
    big = ns["big"]
    assert torch.equal(big, module.big) and ns["half"].untyped_storage().data_ptr() == big.untyped_storage().data_ptr()
    if os.path.exists("/proc/self/maps"):
        assert _mapped_file(big.data_ptr()) == str(path)  # the file's pages, not a copy
    big[0] = -1.0  # copy-on-write: the file does not change
    assert mason.load_module_asdict(str(path))["big"][0] == 0.0
    eager = mason.load_module_asdict(str(path), mmap=False)
    assert torch.equal(eager["weights"], module.weights)


def _mapped_file(address):
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else None
    return None


# ---------------------------------------------------------------- map_location

# A saving process cannot make CUDA tensors without a GPU; this one names
# 'cuda:0' as the device of every storage it saves (through mason.register,
# in front of mason's own reducer), which is what a GPU session writes.
SAVED_ON_CUDA = """
import pickle
from mason._reducers import thirdparty

@mason.register(torch.UntypedStorage)
def as_if_on_cuda(storage):
    func, (data, device) = thirdparty.reduce_torch_storage(storage)
    return func, (data, "cuda:0")

w = torch.arange(6.0).reshape(2, 3)
wt = w.t()
model = torch.nn.Linear(3, 2)
mason.dump_module(PATH)
with open(PATH + ".pkl", "wb") as f:
    f.write(mason.dumps({"w": w, "wt": wt}, protocol=5))
"""


@pytest.fixture
def saved_on_cuda(tmp_path):
    run(tmp_path, SAVED_ON_CUDA)
    return tmp_path


@pytest.mark.parametrize(
    "map_location",
    ["'cpu'", "torch.device('cpu')", "{'cuda:0': 'cpu'}", "lambda storage, location: storage"],
)
def test_map_location_restores_cuda_tensors_on_the_cpu(saved_on_cuda, map_location):
    run(
        saved_on_cuda,
        f"""
        mason.load_module(PATH, map_location={map_location})
        assert w.device.type == 'cpu' and torch.equal(w, torch.arange(6.0).reshape(2, 3))
        assert wt.untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
        assert model.weight.device.type == 'cpu' and model(torch.ones(1, 3)).shape == (1, 2)
        ns = mason.load_module_asdict(PATH, map_location={map_location})
        assert torch.equal(ns['w'], w)
        with open(PATH + '.pkl', 'rb') as f:
            data = f.read()
        obj = mason.loads(data, map_location={map_location})
        assert torch.equal(obj['w'], w) and obj['wt'].stride() == (1, 3)
        assert torch.equal(mason.load(open(PATH + '.pkl', 'rb'), map_location={map_location})['wt'], wt)
        """,
        env=NO_GPU,
    )


def test_cuda_tensors_without_map_location_are_a_clear_error(saved_on_cuda):
    proc = run(
        saved_on_cuda,
        """
        import sys
        try:
            mason.load_module(PATH)
        except mason.UnpicklingError as exc:
            print(exc)
        else:
            sys.exit("loaded without a GPU")
        assert 'w' not in globals()  # nothing changed
        ns = mason.load_module_asdict(PATH, names=['model'], map_location={'cuda:0': 'cpu'})
        assert ns['model'].weight.device.type == 'cpu'
        """,
        env=NO_GPU,
    )
    message = proc.stdout.strip()
    assert "cannot restore variable 'model'" in message, message
    assert "'cuda:0'" in message and "CUDA is not available" in message
    assert "map_location='cpu'" in message


def test_map_location_moves_storages_to_another_device():
    # 'meta' stands for any device other than the CPU on a machine without a GPU.
    base = torch.arange(12.0).reshape(3, 4)
    obj = {"base": base, "view": base[1:]}
    moved = mason.loads(mason.dumps(obj, protocol=5), map_location="meta")
    assert moved["base"].device.type == "meta" and moved["view"].shape == (2, 4)
    assert moved["view"].storage_offset() == 4
    kept = mason.loads(mason.dumps(obj), map_location={"cuda:0": "meta"})  # not saved there: stays
    assert kept["base"].device.type == "cpu"
    seen = []

    def choose(storage, location):
        seen.append((storage.device.type, location))
        return None  # the default placement

    mason.loads(mason.dumps(obj), map_location=choose)
    assert seen == [("cpu", "cpu")]  # one storage for both tensors


def test_map_location_is_checked():
    data = mason.dumps(torch.ones(2))
    with pytest.raises(TypeError, match="map_location"):
        mason.loads(data, map_location=3)
    with pytest.raises(TypeError, match="map_location"):
        mason.load_module_asdict(io.BytesIO(), map_location=3.5)
    with pytest.raises(mason.UnpicklingError, match="not a torch device"):
        mason.loads(data, map_location="gpu please")
    assert _rebuild._MAP_LOCATION.get() is None  # not left set by a failed load


def test_rebuilder_reports_a_device_it_cannot_reach():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(mason.UnpicklingError, match=r"saved on 'cuda:1'.*map_location='cpu'"):
        _rebuild.torch_storage(bytearray(8), "cuda:1")
    token = _rebuild._MAP_LOCATION.set("cpu")
    try:
        storage = _rebuild.torch_storage(bytearray(b"\x01" * 8), "cuda:1")
    finally:
        _rebuild._MAP_LOCATION.reset(token)
    assert storage.device.type == "cpu" and storage.nbytes() == 8
    with pytest.raises(mason.UnpicklingError, match="no dtype"):
        _rebuild.torch_tensor(storage, "float99", 0, (2,), (1,), False)
    with pytest.raises(mason.UnpicklingError, match="damaged tensor"):
        _rebuild.torch_tensor(storage, "float32", 0, (100,), (1,), False)
