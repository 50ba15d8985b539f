"""The three products of a sparse step, each by every candidate kernel, on one mesh.

A sparse-layout step (``engines/edge_ops.py``) is made of three products over the P edges of
the mesh of ``meshprop bench --workload scale`` (``Topology.sparse_random``, mean degree 10):

- forward  T = S A[:, free]                (B, F): Eq. 3 before φ̂;
- transposed  δ = e A[:, free]ᵀ            (B, N): the reciprocal network's gain (rule 4);
- per-edge gradient  g_p = Σ_b S[b, i_p] e[b, j_p]   (P,).

Candidates: torch CSR ``torch.sparse.mm`` (what meshprop uses), gathers + ``index_add_`` in the
batch-major layout (B, N) and in the neuron-major layout (N, B), SciPy CSR × dense (always one
thread), and for the gradient ``torch.sparse.sampled_addmm`` (SDDMM) with the operand layouts
meshprop uses and with a row-major second operand, and row gathers + ``bmm``.  Each cell is the
median of ``--repeats`` calls after a warm-up, and its ratio to the product's bandwidth bound:
the bytes it must move at least (weights, 16 bytes of indices per edge, the dense operand read
and the result written once) over the bandwidth of a copy of written memory, measured in the
same process (``meshprop.bench.scale.bandwidth``).

Run: PYTHONPATH=src python benchmarks/sparse_products.py --neurons 100000 --threads 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from meshprop.allocator import keep_freed_memory
from meshprop.bench.scale import _topology, bandwidth
from meshprop.engines.edge_ops import edge_index_of


def _csr(crow, col, values, size) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def candidates(neurons: int, batch: int) -> dict[str, dict[str, Callable[[], object]]]:
    """{product: {kernel: a call computing it}} on the scale benchmark's mesh of ``neurons``."""
    import scipy.sparse as sp

    topo = _topology(neurons)
    ix = edge_index_of(topo, torch.device("cpu"))
    N, F, P = ix.n_neurons, ix.n_free, len(ix.src)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(P, generator=g)
    S = torch.randn(batch, N, generator=g)  # batch-major
    St = S.T.contiguous()  # neuron-major (N, B)
    e = torch.randn(batch, F, generator=g)
    et = e.T.contiguous()
    A_target = _csr(ix.crow_target, ix.col_target, w[ix.by_target], (F, N))
    A_source = _csr(ix.crow_source, ix.dst, w, (N, F))
    pattern = _csr(ix.crow_source, ix.dst, torch.zeros(P), (N, F))
    sp_target = sp.csr_matrix(
        (w[ix.by_target].numpy(), ix.col_target.numpy(), ix.crow_target.numpy()), shape=(F, N)
    )
    sp_source = sp.csr_matrix((w.numpy(), ix.dst.numpy(), ix.crow_source.numpy()), shape=(N, F))
    St_np, et_np = St.numpy(), et.numpy()
    src, dst = ix.src, ix.dst
    return {
        "forward S·A": {
            "torch CSR sparse.mm (used)": lambda: torch.sparse.mm(A_target, St),
            "gather + index_add_, (B, N)": lambda: S.new_zeros(batch, F).index_add_(
                1, dst, S[:, src] * w
            ),
            "row gather + index_add_, (N, B)": lambda: St.new_zeros(F, batch).index_add_(
                0, dst, St.index_select(0, src).mul_(w[:, None])
            ),
            "SciPy CSR @ dense": lambda: sp_target @ St_np,
        },
        "transposed e·Aᵀ": {
            "torch CSR sparse.mm (used)": lambda: torch.sparse.mm(A_source, et),
            "gather + index_add_, (B, F)": lambda: e.new_zeros(batch, N).index_add_(
                1, src, e[:, dst] * w
            ),
            "row gather + index_add_, (F, B)": lambda: et.new_zeros(N, batch).index_add_(
                0, src, et.index_select(0, dst).mul_(w[:, None])
            ),
            "SciPy CSR @ dense": lambda: sp_source @ et_np,
        },
        "per-edge gradient Σ_b S e": {
            "sampled_addmm, Sᵀ rows + e columns (used)": lambda: torch.sparse.sampled_addmm(
                pattern, St, et.T, beta=0.0
            ),
            "sampled_addmm, e row-major": lambda: torch.sparse.sampled_addmm(
                pattern, St, e, beta=0.0
            ),
            "row gathers + bmm, (N, B)": lambda: torch.bmm(
                St.index_select(0, src).unsqueeze(1), et.index_select(0, dst).unsqueeze(2)
            ),
            "gather-multiply-sum, (B, N)": lambda: (S[:, src] * e[:, dst]).sum(0),
            "NumPy row gathers + einsum": lambda: np.einsum(
                "pb,pb->p", St_np[src.numpy()], et_np[dst.numpy()]
            ),
        },
    }


def bound_ms(neurons: int, batch: int, rate: float) -> float:
    """One product's bandwidth bound: P·(4 + 16) + B·(N + F)·4 bytes at ``rate`` bytes/s."""
    topo = _topology(neurons)
    moved = topo.n_edges * 20 + batch * (topo.n_neurons + topo.n_free) * 4
    return 1e3 * moved / rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    keep_freed_memory()
    rate = bandwidth()
    limit = bound_ms(args.neurons, args.batch, rate)
    table = candidates(args.neurons, args.batch)
    heads = " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in args.threads)
    print(f"N = {args.neurons}, B = {args.batch}, float32; bandwidth {rate / 1e9:.1f} GB/s, ")
    print(f"bound per product {limit:.2f} ms; cells: ms (× bound)\n")
    print(f"| product | kernel | {heads} |")
    print("| --- | --- |" + " --- |" * len(args.threads))
    for product, kernels in table.items():
        for name, fn in kernels.items():
            cells = []
            for threads in args.threads:
                torch.set_num_threads(threads)
                ms = _median_ms(fn, args.repeats)
                cells.append(f"{ms:.1f} ({ms / limit:.1f}×)")
            print(f"| {product} | {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
