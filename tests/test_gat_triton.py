"""The fused GAT's Triton kernels (:mod:`gnnkit.ops._gat_triton`) against a dense reference.

The reference is the layer's math written densely in this file: a (N_d, N_s, H) score
matrix, a masked softmax over each row, the same keep mask, and autograd for the gradients,
in float64. Without a GPU the kernels run in Triton's interpreter, which must be chosen
before Triton is first imported and then holds for the whole process (Triton's own library
functions are wrapped at import). So those checks run in one child process started with
``TRITON_INTERPRET=1`` (this file run as a script), keeping the pytest process, and any
CUDA test in it, in compiled mode. Without a GPU the kernels are also compiled for sm_90
(Triton ships ptxas), which catches what only the compiler rejects.

Needs Triton (``pip install triton``, about 290 MB, not a dev dependency); skipped without it.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

HAVE_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAVE_TRITON, reason="needs triton (pip install triton)")

SLOPE = 0.2

# name: (n_dst, n_src, heads, channels, a_dst, edge_score, keep, dtype, index dtype)
CASES: dict[str, tuple] = {
    "all_inputs": (10, 10, 3, 5, True, True, True, torch.float32, torch.int64),
    "src_only": (9, 9, 2, 4, False, False, False, torch.float32, torch.int64),
    "bipartite_f64": (7, 9, 2, 3, True, False, True, torch.float64, torch.int32),
    "hub_wide": (6, 12, 1, 150, True, True, False, torch.float32, torch.int64),
    "half": (8, 8, 2, 8, True, True, True, torch.float16, torch.int64),
}
TOLERANCE = {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 2e-2}


def _ptr(index: torch.Tensor, size: int) -> torch.Tensor:
    """Segment pointer (size + 1,) of a sorted index vector."""
    return torch.cat([index.new_zeros(1), torch.bincount(index, minlength=size).cumsum(0)])


def _graph(n_dst: int, n_src: int, index: torch.dtype, gen: torch.Generator) -> dict:
    """A random simple graph, with its CSR and transposed structure built here: receivers 0
    and 3 without edges, receiver 1 fed by every sender but the last, which sends nothing."""
    adj = torch.rand(n_dst, n_src, generator=gen) < 0.3
    adj[1] = True
    adj[[0, 3]] = False
    adj[:, -1] = False
    rows, cols = adj.nonzero(as_tuple=True)  # row-major: sorted by receiver
    perm_t = torch.sort(cols, stable=True).indices
    return {
        "rowptr": _ptr(rows, n_dst).to(index),
        "col": cols.to(index),
        "colptr": _ptr(cols, n_src).to(index),
        "row_t": rows[perm_t].to(index),
        "perm_t": perm_t.to(index),
        "rows": rows,
        "cols": cols,
    }


def _inputs(case: str, device: str) -> tuple[dict, dict]:
    n_dst, n_src, heads, channels, has_dst, has_score, has_keep, dtype, index = CASES[case]
    gen = torch.Generator().manual_seed(len(case))
    graph = _graph(n_dst, n_src, index, gen)
    num_edges = graph["col"].numel()
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64)  # noqa: E731
    # An offset leaves the softmax as it is but overflows exp() without the row maximum.
    offset = 100.0 if case in ("bipartite_f64", "hub_wide") else 0.0
    data = {
        "a_src": rand(n_src, heads) + offset,
        "a_dst": rand(n_dst, heads) if has_dst else None,
        "edge_score": rand(num_edges, heads) if has_score else None,
        "xw": rand(n_src, heads, channels),
        "keep": torch.rand(num_edges, heads, generator=gen) < 0.7 if has_keep else None,
        "grad_out": rand(n_dst, heads, channels),
    }
    data = {k: v if v is None or v.dtype == torch.bool else v.to(dtype) for k, v in data.items()}
    to = lambda v: None if v is None else v.to(device)  # noqa: E731
    return {k: to(v) for k, v in graph.items()}, {k: to(v) for k, v in data.items()}


def _reference(graph: dict, data: dict, scale: float) -> dict:
    """Forward and gradients of the dense masked-softmax GAT, in float64 by autograd."""
    rows, cols = graph["rows"], graph["cols"]
    leaf = {
        k: v.double().requires_grad_()
        for k, v in data.items()
        if v is not None and k not in ("keep", "grad_out")
    }
    n_dst, n_src, heads = (
        graph["rowptr"].numel() - 1,
        graph["colptr"].numel() - 1,
        data["a_src"].size(1),
    )
    s = leaf["a_src"].unsqueeze(0).expand(n_dst, n_src, heads)
    if "a_dst" in leaf:
        s = s + leaf["a_dst"].unsqueeze(1)
    if "edge_score" in leaf:
        s = s + torch.zeros_like(s).index_put((rows, cols), leaf["edge_score"])
    mask = torch.zeros(n_dst, n_src, 1, dtype=torch.bool, device=s.device)
    mask[rows, cols] = True
    z = F.leaky_relu(s, SLOPE).masked_fill(~mask, float("-inf"))
    z = z.masked_fill(~mask.any(1, keepdim=True), 0.0)  # rows without edges: no NaN
    alpha = torch.softmax(z, dim=1) * mask
    weight = alpha
    if data["keep"] is not None:
        drop = torch.zeros(n_dst, n_src, heads, dtype=s.dtype, device=s.device)
        weight = alpha * drop.index_put((rows, cols), data["keep"].double() * scale)
    out = torch.einsum("ijh,jhc->ihc", weight, leaf["xw"])
    out.backward(data["grad_out"].double())
    return {"out": out, "alpha": alpha[rows, cols]} | {f"grad_{k}": v.grad for k, v in leaf.items()}


def _run_kernels(graph: dict, data: dict, scale: float) -> dict:
    """The Triton forward, then the backward from its ``alpha``."""
    from gnnkit.ops import _gat_triton

    g, d = graph, data
    out, alpha = _gat_triton.forward(
        g["rowptr"], g["col"], d["a_src"], d["a_dst"], d["edge_score"], d["xw"],
        SLOPE, d["keep"], scale,
    )  # fmt: skip
    grads = _gat_triton.backward(
        g["rowptr"], g["col"], g["colptr"], g["row_t"], g["perm_t"], d["a_src"],
        d["a_dst"], d["edge_score"], d["xw"], alpha, SLOPE, d["keep"], scale, d["grad_out"],
    )  # fmt: skip
    names = ("grad_xw", "grad_a_src", "grad_a_dst", "grad_edge_score")
    return {"out": out, "alpha": alpha} | dict(zip(names, grads, strict=True))


def check_case(case: str, device: str) -> None:
    """Run both kernels on ``case`` twice; raise if they differ from the reference or
    from their own first run by a single bit."""
    graph, data = _inputs(case, device)
    scale = 1 / 0.7
    # Deterministic mode also fills torch.empty with NaN: an entry the kernels leave
    # unwritten cannot pass for a zero.
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = [_run_kernels(graph, data, scale) for _ in range(2)]
    finally:
        torch.use_deterministic_algorithms(previous)
    expected = _reference(graph, data, scale)
    tol = TOLERANCE[data["xw"].dtype]
    for name, got in runs[0].items():
        want = expected.get(name)
        assert (got is None) == (want is None), f"{name}: {got is None=} {want is None=}"
        if got is None:
            continue
        assert got.dtype == data["xw"].dtype, f"{name}: dtype {got.dtype}"
        assert torch.equal(got, runs[1][name]), f"{name}: differs between two runs"
        torch.testing.assert_close(
            got.double(),
            want,
            rtol=tol,
            atol=tol * max(1.0, want.abs().max().item()),
            msg=lambda m, name=name: f"{name}: {m}",
        )


@pytest.fixture(scope="module")
def interpreted() -> dict[str, str]:
    """``{case: "ok" or the failure}`` from one child process in Triton's interpreter."""
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=path)
    done = subprocess.run(
        [sys.executable, __file__, *CASES],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@needs_triton
@pytest.mark.parametrize("case", list(CASES))
def test_interpreted_kernels_match_dense_reference(interpreted, case):
    assert interpreted[case] == "ok"


@needs_triton
@pytest.mark.cuda
@pytest.mark.parametrize("case", list(CASES))
def test_compiled_kernels_match_dense_reference(case):
    check_case(case, "cuda")


def _compile_sm90(name: str, dtype: str, acc: str, flags: bool) -> dict:
    """Compile kernel ``name`` for an H100/H200 (sm_90) without a GPU: its assembly."""
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from gnnkit.ops import _gat_triton

    fn = getattr(_gat_triton, name)
    const = {
        "ACC": {"fp32": tl.float32, "fp64": tl.float64}[acc],
        "BLOCK_E": 8,
        "BLOCK_H": 4,
        "BLOCK_C": 32,
    }
    const |= {f: flags for f in ("HAS_DST", "HAS_SCORE", "HAS_KEEP")}
    kinds = {"keep": "*u8", "params": f"*{acc}", "g_s": f"*{acc}", "H": "i32", "C": "i32"}
    kinds |= dict.fromkeys(("rowptr", "col", "colptr", "row_t", "perm_t"), "*i64")
    signature = {
        p: "constexpr" if p in const else kinds.get(p, f"*{dtype}")
        for p in inspect.signature(fn).parameters
    }
    const = {k: v for k, v in const.items() if k in signature}
    source = ASTSource(_gat_triton._kernel(fn), signature, const)
    return triton.compile(
        source, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4, "enable_fp_fusion": True}
    ).asm


@needs_triton
@pytest.mark.parametrize(
    "name, dtype, acc, flags",
    [
        ("_forward_kernel", "fp32", "fp32", True),
        ("_forward_kernel", "bf16", "fp32", False),
        ("_backward_dst_kernel", "fp32", "fp32", True),
        ("_backward_dst_kernel", "fp64", "fp64", False),
        ("_backward_src_kernel", "fp16", "fp32", True),
    ],
)
def test_kernels_compile_for_sm90(name, dtype, acc, flags):
    pytest.importorskip("triton.backends.nvidia", reason="Triton without its CUDA backend")
    asm = _compile_sm90(name, dtype, acc, flags)
    assert ".target sm_90" in asm["ptx"] and len(asm["cubin"]) > 0


def test_module_imports_and_fails_clearly_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.setitem(sys.modules, "triton.language", None)
    spec = importlib.util.find_spec("gnnkit.ops._gat_triton")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.available()
    graph, data = _inputs("src_only", "cpu")
    with pytest.raises(RuntimeError, match="need Triton: `pip install triton`"):
        module.forward(
            graph["rowptr"], graph["col"], data["a_src"], None, None, data["xw"], SLOPE, None, 1.0
        )


@needs_triton
def test_cpu_tensors_need_the_interpreter():
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        pytest.skip("this process runs Triton's interpreter")
    from gnnkit.errors import InputError
    from gnnkit.ops import _gat_triton

    graph, data = _inputs("src_only", "cpu")
    with pytest.raises(InputError, match="need CUDA tensors, or TRITON_INTERPRET=1"):
        _gat_triton.forward(
            graph["rowptr"], graph["col"], data["a_src"], None, None, data["xw"], SLOPE, None, 1.0
        )


if __name__ == "__main__":  # the interpreter's child process: python this-file CASE...
    results = {}
    for name in sys.argv[1:]:
        try:
            check_case(name, "cpu")
            results[name] = "ok"
        except Exception as exc:  # reported to the parent, which fails that case
            results[name] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(results))
