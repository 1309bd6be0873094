"""gazeheads vs the reference method, side by side on one model in one process.

    python -m benchmarks.run [--quick] [--device cpu|cuda] [--layers N] [--out benchmarks/results/NAME.json]

Three sections (BENCHMARKS.md explains each): discovery, steered generation, evaluation
throughput. Times are medians over repeats after warmup, with the methods of a section
interleaved repeat by repeat so that background load hits them alike; peak memory is the
CUDA allocator's peak on GPU and the process's peak resident set size (VmHWM, reset before
each call) on CPU. Ratios compare numbers measured in this one run.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import gc
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

import gazeheads as gh
from gazeheads.discovery import strip_matrices
from gazeheads import prompts

from .models import ModelSpec, build_model, draw_strip, spread_heads
from gazeheads.reference import eager_steer, reference_strip_matrices

MiB = 2**20


# machine and memory -------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(device: torch.device, dtype: torch.dtype) -> dict:
    import transformers

    info = {
        "cpu": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "gazeheads": gh.__version__,
        "device": device.type,
        "dtype": str(dtype).replace("torch.", ""),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def _fixed_mmap_threshold() -> bool:
    """Make glibc return freed tensor memory to the OS, so that RSS peaks are per call.

    By default glibc raises its mmap threshold after large frees and keeps later blocks on the
    heap, where a freed block stays resident; then the peak of one call would hide inside the
    leftovers of an earlier one. A fixed threshold (128 KiB) turns that off.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 128 * 1024)) and bool(libc.mallopt(-1, 128 * 1024))  # M_MMAP_/M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        return False


class Memory:
    """Peak memory of one call: CUDA allocator peak, or the process's RSS high-water mark on CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu_hwm_reset = device.type != "cuda" and self._reset_hwm()

    @staticmethod
    def _status(field: str) -> int:
        match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(match.group(1)) * 1024 if match else 0

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def current(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device)
        return self._status("VmRSS")

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.cpu_hwm_reset:
            self._reset_hwm()

    def peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device)
        return self._status("VmHWM")

    def method(self) -> str:
        if self.device.type == "cuda":
            return "torch.cuda.max_memory_allocated, reset before each call"
        if self.cpu_hwm_reset:
            return ("process peak RSS (VmHWM of /proc/self/status, reset before each call via /proc/self/clear_refs), "
                    "glibc mmap threshold fixed at 128 KiB so freed tensors leave the RSS")
        return "process peak RSS (ru_maxrss; could not be reset, so peaks are upper bounds)"


# timing ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, device: torch.device, memory: Memory, before_model: int, with_weights: int) -> None:
        """`before_model`: memory before the model existed; `with_weights`: right after it was built."""
        self.device, self.memory = device, memory
        self.before_model, self.with_weights = before_model, with_weights

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def group(self, fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
              warmup_fns: dict[str, Callable[[], object]] | None = None) -> dict[str, dict]:
        """Time each fn `repeats` times, interleaved; return times, median, peak memory and last output."""
        warmup_fns = warmup_fns or {}
        results = {name: {"times_s": [], "cpu_times_s": [], "peak_bytes": 0} for name in fns}
        for _ in range(warmup):
            for name, fn in fns.items():
                warmup_fns.get(name, fn)()
        for _ in range(repeats):
            for name, fn in fns.items():
                self.memory.reset()
                self.sync()
                start, cpu_start = time.perf_counter(), time.process_time()
                out = fn()
                self.sync()
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
                peak = self.memory.peak() - self.before_model
                res = results[name]
                res["times_s"].append(elapsed)
                res["cpu_times_s"].append(cpu)
                res["peak_bytes"] = max(res["peak_bytes"], peak)
                res["output"] = out
                del out
        for res in results.values():
            res["median_s"] = statistics.median(res["times_s"])
            res["cpu_median_s"] = statistics.median(res["cpu_times_s"])
            res["peak_mib"] = res["peak_bytes"] / MiB
            res["peak_above_weights_mib"] = (res["peak_bytes"] - (self.with_weights - self.before_model)) / MiB
        return results


class StepClock:
    """Forward-call timestamps of the model during generate(): call 0 is the prefill, the rest decode."""

    def __init__(self, model: torch.nn.Module, bench: Bench) -> None:
        self.model, self.bench = model, bench
        self.calls: list[float] = []

    def __enter__(self) -> "StepClock":
        self.calls.clear()

        def before(module, args, kwargs):
            self.bench.sync()
            self._start = time.perf_counter()

        def after(module, args, kwargs, output):
            self.bench.sync()
            self.calls.append(time.perf_counter() - self._start)

        self.handles = [self.model.register_forward_pre_hook(before, with_kwargs=True),
                        self.model.register_forward_hook(after, with_kwargs=True)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


# the floor: prefix + batched suffixes, SDPA, no capture -----------------------------------


def floor_inputs(gm: gh.GazeModel, strip) -> dict:
    """The same prefix and suffix tensors gh.strip_matrices builds (prepared outside the timing)."""
    n = strip.n_panels
    encodings = [gm.encode(strip, prompts.discovery_question(k, n)) for k in range(1, n + 1)]
    ids = [e.inputs["input_ids"][0] for e in encodings]
    positions = [gm.adapter.position_ids(gm.model, e.inputs) for e in encodings]
    shortest = min(len(s) for s in ids)
    same = (torch.stack([s[:shortest] for s in ids]) == ids[0][:shortest]).all(0)
    prefix = int((~same).nonzero()[0]) if (~same).any() else shortest
    first = encodings[0].inputs
    prefix_inputs = {k: v for k, v in first.items() if k not in ("input_ids", "attention_mask", "mm_token_type_ids")}
    prefix_inputs.update(input_ids=first["input_ids"][:, :prefix], attention_mask=first["attention_mask"][:, :prefix],
                         position_ids=positions[0][..., :prefix])
    if "mm_token_type_ids" in first:
        prefix_inputs["mm_token_type_ids"] = first["mm_token_type_ids"][:, :prefix]
    lengths = [len(s) - prefix for s in ids]
    width = max(lengths)
    suffix_ids = torch.full((n, width), gm.tokenizer.pad_token_id, dtype=torch.long, device=gm.device)
    suffix_pos = torch.zeros((positions[0].shape[0], n, width), dtype=torch.long, device=gm.device)
    for row, (seq, pos, length) in enumerate(zip(ids, positions, lengths)):
        suffix_ids[row, :length] = seq[prefix:]
        suffix_pos[:, row, :length] = pos[:, 0, prefix:]
        suffix_pos[:, row, length:] = pos[:, 0, -1:] + torch.arange(1, width - length + 1, device=gm.device)
    return {"prefix": prefix_inputs, "suffix_ids": suffix_ids, "suffix_pos": suffix_pos, "n": n,
            "prefix_len": prefix, "suffix_lens": lengths, "prompt_len": len(ids[0])}


def floor_forward(gm: gh.GazeModel, prepared: dict) -> None:
    base = gm.adapter.base_model(gm.model)
    with torch.inference_mode():
        cache = base(**prepared["prefix"], use_cache=True).cache
        cache.batch_repeat_interleave(prepared["n"])
        base(input_ids=prepared["suffix_ids"], position_ids=prepared["suffix_pos"], cache=cache,
             use_cache=True)


# sections -------------------------------------------------------------------------------


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def bench_discovery(gm, strip, bench: Bench, args) -> dict:
    prepared = floor_inputs(gm, strip)
    plain_encoded = gm.encode(strip, prompts.discovery_question(1, strip.n_panels))

    def plain():
        with torch.inference_mode():
            gm.model(**plain_encoded.inputs)

    def one_reference_forward():  # cheap warmup of the eager path: one question instead of six
        from gazeheads.reference import eager_everywhere
        with eager_everywhere(gm), torch.inference_mode():
            gm.model(**plain_encoded.inputs, output_attentions=True)

    encode_six = lambda: [gm.encode(strip, prompts.discovery_question(k, strip.n_panels)) for k in range(1, 7)]
    fns = {
        "reference": lambda: reference_strip_matrices(gm, strip),
        "gazeheads": lambda: strip_matrices(gm, strip),
        "floor": lambda: floor_forward(gm, prepared),
        "plain_inference": plain,
        "encode_6_prompts": encode_six,
    }
    res = bench.group(fns, repeats=args.repeats, warmup=1, warmup_fns={"reference": one_reference_forward})
    reference, ours = res["reference"].pop("output"), res["gazeheads"].pop("output")
    for r in res.values():
        r.pop("output", None)
    diff = float(np.abs(reference - ours).max())
    m = {k: v["peak_bytes"] for k, v in res.items()}
    ma = {k: v["peak_above_weights_mib"] for k, v in res.items()}

    def ratios(key):
        t = {k: v[key] for k, v in res.items()}
        return {
            "speedup_vs_reference": ratio(t["reference"], t["gazeheads"]),
            "time_vs_floor": ratio(t["gazeheads"], t["floor"]),
            "time_vs_floor_plus_encoding": ratio(t["gazeheads"], t["floor"] + t["encode_6_prompts"]),
        }

    return {
        "methods": res,
        "tokens": {"prompt": prepared["prompt_len"], "shared_prefix": prepared["prefix_len"],
                   "suffixes": prepared["suffix_lens"], "image_tokens": int(plain_encoded.geometries[0].positions.numel())},
        "max_abs_score_diff": diff,
        "ratios": {
            **ratios("median_s"),
            "peak_vs_plain_inference": ratio(m["gazeheads"], m["plain_inference"]),
            "peak_vs_floor": ratio(m["gazeheads"], m["floor"]),
            "peak_above_weights_vs_plain_inference": ratio(ma["gazeheads"], ma["plain_inference"]),
            "reference_peak_vs_plain_inference": ratio(m["reference"], m["plain_inference"]),
        },
        "ratios_cpu_time": ratios("cpu_median_s"),
    }


def bench_generation(gm, strip, heads, bench: Bench, args) -> dict:
    encoded = gm.encode(strip, prompts.VQA_QUESTION)
    tokens = args.new_tokens
    target = gh.Panel(3)
    clocks: dict[str, list[list[float]]] = {"unsteered": [], "gazeheads_steered": [], "eager_steered": []}

    def run(name, context):
        def fn():
            with context(), StepClock(gm.model, bench) as clock:
                ids = gm.generate_ids(encoded, tokens, min_new_tokens=tokens)
            clocks[name].append(list(clock.calls))
            return ids
        return fn

    import contextlib
    fns = {
        "unsteered": run("unsteered", contextlib.nullcontext),
        "gazeheads_steered": run("gazeheads_steered", lambda: gh.steer(gm, heads, target, encoded)),
        "eager_steered": run("eager_steered", lambda: eager_steer(gm, heads, target, encoded)),
    }
    res = bench.group(fns, repeats=args.gen_repeats, warmup=1)
    same_tokens = bool(torch.equal(res["gazeheads_steered"]["output"], res["eager_steered"]["output"]))
    for name, r in res.items():
        r.pop("output")
        calls = clocks[name][1:]  # skip the warmup call
        r["prefill_s"] = statistics.median(c[0] for c in calls)
        r["decode_per_token_s"] = statistics.median(statistics.median(c[1:]) for c in calls)
    t = {k: v["median_s"] for k, v in res.items()}
    c = {k: v["cpu_median_s"] for k, v in res.items()}
    d = {k: v["decode_per_token_s"] for k, v in res.items()}
    p = {k: v["prefill_s"] for k, v in res.items()}
    return {
        "methods": res,
        "new_tokens": tokens,
        "prompt_len": encoded.prompt_len,
        "heads": {"k": len(heads), "layers": heads.layers(), "list": [list(h) for h in heads]},
        "greedy_tokens_equal_gazeheads_vs_eager": same_tokens,
        "ratios": {
            "steered_vs_unsteered": ratio(t["gazeheads_steered"], t["unsteered"]),
            "speedup_vs_eager_steering": ratio(t["eager_steered"], t["gazeheads_steered"]),
            "prefill_steered_vs_unsteered": ratio(p["gazeheads_steered"], p["unsteered"]),
            "decode_steered_vs_unsteered": ratio(d["gazeheads_steered"], d["unsteered"]),
            "prefill_speedup_vs_eager": ratio(p["eager_steered"], p["gazeheads_steered"]),
            "decode_speedup_vs_eager": ratio(d["eager_steered"], d["gazeheads_steered"]),
        },
        "ratios_cpu_time": {
            "steered_vs_unsteered": ratio(c["gazeheads_steered"], c["unsteered"]),
            "speedup_vs_eager_steering": ratio(c["eager_steered"], c["gazeheads_steered"]),
        },
    }


def bench_evaluation(gm, strip, heads, bench: Bench, args) -> dict:
    n = strip.n_panels
    targets = [gh.Panel(k) for k in range(1, n + 1)]
    one = gm.encode(strip, prompts.VQA_QUESTION)
    batch = gm.encode(strip, [prompts.VQA_QUESTION] * n)
    tokens = args.new_tokens
    phase = args.eval_phase

    def batched():
        with gh.steer(gm, heads, targets, batch, phase=phase):
            return gm.generate_ids(batch, tokens, min_new_tokens=tokens)

    per_row = gm.encode(strip, [prompts.VQA_QUESTION] * n)
    per_row.images = None  # nothing shared: the vision tower (and, phase decode, the prompt) per row

    def batched_no_sharing():
        with gh.steer(gm, heads, targets, per_row, phase=phase):
            return gm.generate_ids(per_row, tokens, min_new_tokens=tokens, share_prompt=False)

    def one_at_a_time():
        rows = []
        for target in targets:
            with gh.steer(gm, heads, target, one, phase=phase):
                rows.append(gm.generate_ids(one, tokens, min_new_tokens=tokens))
        return torch.cat(rows)

    res = bench.group({"batched_per_strip": batched, "batched_no_sharing": batched_no_sharing,
                       "one_at_a_time": one_at_a_time}, repeats=args.eval_repeats, warmup=args.eval_warmup)
    per_row_out = res["batched_no_sharing"].pop("output")
    same = bool(torch.equal(res["batched_per_strip"]["output"], per_row_out))
    same = same and bool(torch.equal(res["batched_per_strip"].pop("output"), res["one_at_a_time"].pop("output")))
    for r in res.values():
        r["targets_per_s"] = n / r["median_s"]
    return {
        "methods": res,
        "targets": n,
        "new_tokens": tokens,
        "phase": phase,
        "greedy_tokens_equal_batched_vs_one_at_a_time": same,
        "ratios": {"throughput_batched_vs_one_at_a_time": ratio(res["one_at_a_time"]["median_s"],
                                                               res["batched_per_strip"]["median_s"]),
                   "sharing_vs_no_sharing": ratio(res["batched_no_sharing"]["median_s"],
                                                  res["batched_per_strip"]["median_s"])},
        "ratios_cpu_time": {"throughput_batched_vs_one_at_a_time": ratio(res["one_at_a_time"]["cpu_median_s"],
                                                                        res["batched_per_strip"]["cpu_median_s"])},
    }


# report ---------------------------------------------------------------------------------

GOALS = [
    ("discovery", "speedup_vs_reference", ">=", 5.0, "discovery speed-up vs reference"),
    ("discovery", "max_abs_score_diff", "<=", 1e-5, "discovery max |score diff| (fp32 goal)"),
    ("discovery", "time_vs_floor", "<=", 1.3, "discovery time / floor"),
    ("discovery", "peak_vs_plain_inference", "<=", 1.1, "discovery peak memory / plain inference"),
    ("generation", "steered_vs_unsteered", "<=", 1.10, "steered / unsteered generation time"),
    ("generation", "speedup_vs_eager_steering", ">=", 3.0, "steered speed-up vs eager steering"),
    ("evaluation", "throughput_batched_vs_one_at_a_time", ">=", 5.0, "eval throughput batched / one at a time"),
]


def goal_rows(results: dict) -> list[dict]:
    """Each goal against the wall-clock ratio, plus the CPU-time ratio where one exists (device cpu)."""
    rows = []
    for section, key, op, bound, label in GOALS:
        if section not in results:
            continue
        sec = results[section]
        value = sec[key] if key in sec else sec["ratios"][key]
        if key == "max_abs_score_diff" and "fp32_max_abs_score_diff" in sec:
            value = sec["fp32_max_abs_score_diff"]
        cpu_value = sec["ratios_cpu_time"].get(key) if results["machine"]["device"] == "cpu" else None
        met = value >= bound if op == ">=" else value <= bound
        rows.append({"goal": label, "measured": value, "measured_cpu_time": cpu_value, "target": f"{op} {bound:g}",
                     "met": bool(met)})
    return rows


def print_table(results: dict) -> None:
    def line(name, r, extra=""):
        cpu = f" (cpu {r['cpu_median_s']:.3f} s)" if info["device"] == "cpu" else ""
        print(f"  {name:<22} {r['median_s']:>9.3f} s{cpu}   peak {r['peak_bytes'] / MiB:>9.1f} MiB "
              f"(+{r['peak_above_weights_mib']:.1f} over weights){extra}")

    info = results["machine"]
    print(f"\nmachine: {info['cpu']} x{info['cpu_cores']} ({info['torch_threads']} threads), device {info['device']}"
          f"{' ' + info.get('gpu', '') if info['device'] == 'cuda' else ''}, {info['dtype']}, torch {info['torch']}, "
          f"transformers {info['transformers']}")
    print(f"model: {results['model']['description']}")
    d = results.get("discovery")
    if d:
        _print_discovery(d, line)
    g = results.get("generation")
    if g:
        _print_generation(g, line)
    e = results.get("evaluation")
    if e:
        _print_evaluation(e, line)
    _print_goals(results["goals"])


def _print_discovery(d: dict, line) -> None:
    print(f"\ndiscovery (one 6-panel strip, {d['tokens']['prompt']}-token prompts, {d['tokens']['image_tokens']} image tokens)")
    for name, r in d["methods"].items():
        line(name, r)


def _print_generation(g: dict, line) -> None:
    print(f"\nsteered generation ({g['new_tokens']} new tokens, greedy, K={g['heads']['k']} heads in "
          f"{len(g['heads']['layers'])} layers)")
    for name, r in g["methods"].items():
        line(name, r, f"   prefill {r['prefill_s']:.3f} s, decode {1000 * r['decode_per_token_s']:.1f} ms/token")


def _print_evaluation(e: dict, line) -> None:
    print(f"\nevaluation throughput ({e['targets']} targets of one strip, {e['new_tokens']} new tokens each, "
          f"phase {e.get('phase', 'prefill+decode')})")
    for name, r in e["methods"].items():
        line(name, r, f"   {r['targets_per_s']:.3f} targets/s")


def _print_goals(goals: list[dict]) -> None:
    print("\ngoals (wall-clock ratios; on CPU also the ratio of process CPU time)")
    for row in goals:
        value, cpu_value = row["measured"], row["measured_cpu_time"]
        shown = f"{value:.2e}" if abs(value) < 1e-2 else f"{value:.3f}"
        cpu = f"cpu {cpu_value:.3f}" if cpu_value is not None else ""
        print(f"  {row['goal']:<44} {shown:>10} {cpu:>10}   target {row['target']:<8} "
              f"{'met' if row['met'] else 'NOT met'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and strip, one repeat: a smoke test")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default 28 on cuda, 4 on cpu)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per method (default 3)")
    parser.add_argument("--gen-repeats", type=int, default=None,
                        help="timed repeats, steered generation (default 3 on cuda, 2 on cpu)")
    parser.add_argument("--eval-repeats", type=int, default=None,
                        help="timed repeats, evaluation (default 3 on cuda, 1 on cpu)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--k-frac", type=float, default=0.09, help="steered heads as a fraction of all heads")
    parser.add_argument("--vision", choices=["small", "2b"], default=None,
                        help="vision tower: 2 blocks of width 256, or Qwen3-VL-2B's 24 x 1024 (default: 2b on cuda, small on cpu)")
    parser.add_argument("--vision-depth", type=int, default=None, help="vision blocks (fewer than 24 to fit a CPU run)")
    parser.add_argument("--sections", default="discovery,generation,evaluation",
                        help="comma-separated subset of discovery, generation, evaluation")
    parser.add_argument("--eval-phase", choices=["prefill+decode", "decode"], default="prefill+decode",
                        help="steering phase of the evaluation section (decode: the prompt is prefilled once per strip)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default=None,
                        help="model dtype (default bfloat16 on cuda, float32 on cpu; bfloat16 on cpu exercises the GPU path)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default benchmarks/results/<device>.json)")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype or ("bfloat16" if device.type == "cuda" else "float32"))
    mmap_fixed = device.type == "cpu" and _fixed_mmap_threshold()
    if args.quick:
        spec, strip = ModelSpec.tiny(layers=args.layers or 2), draw_strip(widths=(64, 96, 64, 32, 64, 128), height=64)
        args.repeats, args.gen_repeats = args.repeats or 1, args.gen_repeats or 1
        args.eval_repeats, args.eval_warmup = args.eval_repeats or 1, 0
        args.new_tokens = min(args.new_tokens, 4)
    else:
        spec = ModelSpec.with_vision(args.vision or ("2b" if device.type == "cuda" else "small"), args.vision_depth,
                                     layers=args.layers or (28 if device.type == "cuda" else 4))
        strip = draw_strip()
        gpu = device.type == "cuda"  # CPU defaults keep one full run near 8 minutes on 1 core
        args.repeats = args.repeats or 3
        args.gen_repeats = args.gen_repeats or (3 if gpu else 2)
        args.eval_repeats = args.eval_repeats or (3 if gpu else 1)
        args.eval_warmup = 1 if gpu else 0  # on CPU the generation section has already warmed these paths
    out = args.out or Path("benchmarks/results") / f"{'quick-' if args.quick else ''}{device.type}.json"

    memory = Memory(device)
    memory.reset()
    before_model = memory.current()
    gm = build_model(spec, device=args.device, dtype=dtype)
    memory.reset()
    baseline = memory.current()
    bench = Bench(device, memory, before_model, baseline)
    shape = gm.shape
    k = max(1, round(args.k_frac * shape.total))
    heads = spread_heads(shape, k)
    n_params = sum(p.numel() for p in gm.model.parameters())
    results: dict = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(device, dtype),
        "model": {
            "description": (f"random Qwen3-VL: {shape.n_layers} layers x {shape.n_heads} heads ({shape.n_kv_heads} KV), "
                            f"hidden {spec.hidden}, head_dim {spec.head_dim}, MLP {spec.intermediate}, vision "
                            f"{spec.vision_depth}x{spec.vision_hidden} patch 16 merge 2, vocab "
                            f"{gm.model.config.text_config.vocab_size}, {n_params / 1e6:.0f}M parameters"),
            "spec": spec.__dict__,
            "parameters": n_params,
            "weights_mib": (baseline - before_model) / MiB,
        },
        "strip": {"size": list(strip.image.size), "panel_boxes": [list(b) for b in strip.panel_boxes]},
        "settings": {"repeats": args.repeats, "gen_repeats": args.gen_repeats, "eval_repeats": args.eval_repeats, "new_tokens": args.new_tokens,
                     "k_heads": k, "memory_method": memory.method(), "glibc_mmap_threshold_fixed": mmap_fixed},
    }
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(sections) - {"discovery", "generation", "evaluation"}
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}: use discovery, generation, evaluation")
    if "generation" not in sections and not args.quick:
        args.eval_warmup = 1  # nothing else has warmed the generation paths
    print(results["model"]["description"], flush=True)
    started = time.perf_counter()
    if "discovery" in sections:
        print("discovery ...", flush=True)
        results["discovery"] = bench_discovery(gm, strip, bench, args)
    if "generation" in sections:
        print("steered generation ...", flush=True)
        results["generation"] = bench_generation(gm, strip, heads, bench, args)
    if "evaluation" in sections:
        print("evaluation throughput ...", flush=True)
        results["evaluation"] = bench_evaluation(gm, strip, heads, bench, args)
    if dtype != torch.float32 and "discovery" in results:  # the score goal is stated in fp32: check it there too
        gm.model.float()
        results["discovery"]["fp32_max_abs_score_diff"] = float(
            np.abs(reference_strip_matrices(gm, strip) - strip_matrices(gm, strip)).max())
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - started
    results["goals"] = goal_rows(results)
    print_table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"\nwrote {out} ({results['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
