"""How fast this machine multiplies matrices: the peak the speed tables compare against.

:func:`matmul_rate` times square matmuls (float32 on a CPU, bfloat16 on a GPU by default) and
returns FLOP/s; the benchmarks and the GPU runs report achieved FLOP/s as a share of it.
Taught in the appendix *Many runs at once*.
"""

from __future__ import annotations

import time


def matmul_rate(n: int = 1024, repeats: int = 20, device: str = "cpu", dtype=None) -> float:
    """Measured FLOP/s of an ``n x n`` matmul on ``device`` (torch's threads; ``dtype``
    default float32 on a CPU, bfloat16 on CUDA)."""
    import torch

    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync()
    return 2 * n**3 * repeats / (time.perf_counter() - t0)
