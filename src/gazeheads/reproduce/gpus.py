"""The GPUs a reproduction estimate can assume: vendors' data-sheet peak figures."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    """Peak dense bf16 throughput (TFLOP/s), memory bandwidth (TB/s) and memory (GiB) of one GPU."""

    name: str
    tflops: float
    bandwidth_tbs: float
    memory_gib: float


GPUS = {
    "h100": Gpu("NVIDIA H100 SXM 80 GB", 989.0, 3.35, 80.0),
    "h200": Gpu("NVIDIA H200 141 GB", 989.0, 4.8, 141.0),
    "a100": Gpu("NVIDIA A100 SXM 80 GB", 312.0, 2.04, 80.0),
}
