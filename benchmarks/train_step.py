"""The tiny model's training step, plain vs --fast-step, on the same model and the same batches.

    python -m benchmarks.train_step --threads 2 --steps 20 --out benchmarks/results/train-step.json

Both variants run the same examples (a counted-narration recipe, whose long answers pad a plain
batch), alternating plain and fast steps so that a change in machine load hits both alike; the
report is the median seconds a step and their ratio. No optimiser step is taken, so every
step starts from the same weights.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from gazeheads import synth
from gazeheads.tiny import build, speed, train
from gazeheads.tiny.tasks import draw_task, sample_example

TASKS = {"panel": 0.6, "narrate_counted": 0.15, "scene": 0.25}  # emergent attempt 11's tasks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20, help="timed steps of each variant")
    parser.add_argument("--batch", type=int, default=28)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from transformers import Qwen3VLForConditionalGeneration

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = build.build_config()
    config.text_config._attn_implementation = "sdpa"
    model = Qwen3VLForConditionalGeneration(config).train()
    model.model.visual.patch_embed.proj = speed.PatchEmbedAsLinear(model.model.visual.patch_embed.proj)
    encoder = train.Encoder(build.build_processor())
    rng = synth.training_rng(0)
    batches = [[sample_example(rng, draw_task(rng, TASKS), follow_prob=0.5) for _ in range(args.batch)]
               for _ in range(args.steps + 2)]

    def plain(examples) -> None:
        model.zero_grad(set_to_none=True)
        train.example_loss(model, encoder.batch(examples)).backward()

    def fast(examples) -> None:
        model.zero_grad(set_to_none=True)
        with speed.grouped_vision_attention(model):
            loss = speed.grouped_loss(model, encoder, examples, train.example_loss)
        loss.backward()

    times: dict[str, list[float]] = {"plain": [], "fast": []}
    for i, examples in enumerate(batches):
        for name, step in (("plain", plain), ("fast", fast)):
            start = time.perf_counter()
            step(examples)
            if i >= 2:  # the first two batches warm up
                times[name].append(time.perf_counter() - start)
    plain_s, fast_s = statistics.median(times["plain"]), statistics.median(times["fast"])
    report = {
        "plain_s_per_step": round(plain_s, 4),
        "fast_s_per_step": round(fast_s, 4),
        "speedup": round(plain_s / fast_s, 3),
        "steps": args.steps, "batch": args.batch, "threads": args.threads, "tasks": TASKS,
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
