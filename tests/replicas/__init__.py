"""Published-config replicas: one real checkpoint per supported family, built in code.

    from replicas import REPLICAS, build_replica
    model, processor = build_replica("qwen3_vl", dtype=torch.bfloat16)
    REPLICAS["qwen3_vl"].checkpoint       # "Qwen/Qwen3-VL-8B-Instruct"
    REPLICAS["qwen3_vl"].facts            # the published numbers, each with its source

What is kept, what is cut and where every number comes from: docs/replicas.md.
"""

from __future__ import annotations

import torch

from .core import CUTTABLE, Cut, Fact, Replica, build_model, cast_model, render, resolve, same
from .gemma3 import REPLICAS as _GEMMA3
from .idefics3 import REPLICAS as _IDEFICS3
from .internvl import REPLICAS as _INTERNVL
from .llava import REPLICAS as _LLAVA
from .qwen import REPLICAS as _QWEN

REPLICAS: dict[str, Replica] = {r.name: r for r in (*_QWEN, *_LLAVA, *_INTERNVL, *_GEMMA3, *_IDEFICS3)}


def build_replica(name: str, dtype: torch.dtype = torch.float32, seed: int = 0):
    """(model, processor) of the replica `name` (a key of REPLICAS), weights seeded, in `dtype`.

    The model's attention is SDPA; wrap it in gazeheads.GazeModel as any loaded model.
    """
    replica = REPLICAS[name]
    processor = replica.make_processor()
    tokenizer = getattr(processor, "tokenizer", processor)
    model = build_model(replica, dtype, tokenizer.get_vocab().values(), seed=seed)
    return model, processor


__all__ = ["CUTTABLE", "Cut", "Fact", "REPLICAS", "Replica", "build_replica", "cast_model", "render", "resolve",
           "same"]
