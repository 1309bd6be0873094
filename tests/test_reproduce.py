"""`gazeheads reproduce` as a specification: the dry run plans the paper's protocol from a model's
config and processor alone (the Qwen3-VL-8B replica's published config, no weights), checks its
arguments before anything loads, and the full protocol runs end to end on the bundled model with the
ground-truth judge, its report showing the paper's figure beside each measured one.
"""

from __future__ import annotations

import json
import re

import pytest
import transformers

import gazeheads as gh
from gazeheads import cli, prompts
from gazeheads.reproduce.estimate import CostModel, ModelSize, StepEstimate
from gazeheads.reproduce.facts import ParameterCounts
from gazeheads.reproduce.gpus import GPUS
from gazeheads.reproduce.paper import FIGURES, paper_ks

from replicas import REPLICAS


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def qwen3_vl_8b(tmp_path_factory):
    """The published Qwen3-VL-8B-Instruct config (36 layers, nothing cut) and the replica's processor: a model
    folder without weights, as a dry run needs."""
    replica = REPLICAS["qwen3_vl"]
    folder = tmp_path_factory.mktemp("qwen3-vl-8b")
    config = getattr(transformers, replica.config_class)(**replica.config)
    config.architectures = [replica.model_class]
    config.save_pretrained(folder)
    replica.make_processor().save_pretrained(folder)
    assert not list(folder.glob("*.safetensors"))
    return folder


def table_row(stdout: str, step: str) -> list[str]:
    line = next(line for line in stdout.splitlines() if line.startswith(f"{step} "))
    return line.split()


def test_dry_run_plans_the_paper_on_the_qwen3_vl_8b_config(qwen3_vl_8b, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "reproduce", "--model", qwen3_vl_8b, "--dry-run", "--out", tmp_path / "run")
    assert code == 0, stdout
    assert "36 layers x 32 heads (8 KV), head_dim 128, hidden 4096, vocab 151,936" in stdout
    assert "8.77B parameters from the config's shapes" in stdout  # Qwen3-VL-8B: 8,767,123,696
    assert "K = 100 of 1,152 (8.7%)" in stdout and "K = 5, 10, 20, 50, 100, 200 (vqa)" in stdout
    assert "discovery on hf:baulab/openai-comic-strips[0:100], evaluation on hf:baulab/openai-comic-strips[100:500]" \
        in stdout
    # 1536 x 256 px -> smart_resize keeps it (multiples of 32) -> 48 x 8 merged tokens
    assert "1536x256 px" in stdout and ": 384 image tokens" in stdout
    assert table_row(stdout, "discovery")[1:3] == ["100", "600q"]
    assert table_row(stdout, "vqa")[1:3] == ["400", "7,600"]  # 400 strips x (6 targets x 3 conditions + baseline)
    assert table_row(stdout, "dynamic")[2] == "1,200"  # 400 x (gaze, random, baseline)
    assert table_row(stdout, "topk")[2] == "14,400"  # 400 x 6 targets x 6 K
    assert table_row(stdout, "vqa")[5] == "7,200" and table_row(stdout, "dynamic")[5] == "4,800"  # judge calls
    assert re.search(r"estimate: [\d.]+ h of GPU time, peak \d+\.\d GiB \(fits on one NVIDIA H100", stdout)
    assert "how the estimate is made" in stdout and "989 TFLOP/s" in stdout
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_dry_run_with_comics_discovery_evaluates_on_all_500_strips(qwen3_vl_8b, tmp_path, capsys):
    corpus = tmp_path / "COMICS"
    corpus.mkdir()
    code, stdout, _ = run_cli(capsys, "reproduce", "--model", qwen3_vl_8b, "--dry-run", "--comics-discovery",
                              f"comics:{corpus}", "--judge", "truth", "--gpu", "h200", "--out", tmp_path / "run")
    assert code == 0, stdout
    assert f"discovery on comics:{corpus}[0:500], evaluation on hf:baulab/openai-comic-strips[0:500]" in stdout
    assert table_row(stdout, "vqa")[1:3] == ["500", "9,500"] and table_row(stdout, "vqa")[5] == "9,000"
    assert "judge      truth: ready" in stdout and "NVIDIA H200" in stdout


@pytest.mark.parametrize("argv, message", [
    (["-k", "2000"], "K=2000 heads asked of a model with 1152 heads"),
    (["--ks", "5,5000"], "K=5000 heads asked"),
    (["--judge", "oracle"], "unknown judge kind"),
    (["--comics-discovery", "comics:/no/such/corpus"], "no such COMICS corpus folder"),
    (["--comics", "hf:baulab/openai-comic-strips[9:3]"], "selects no strip"),
    (["--n-strips", "0"], "--n-strips 0: must be at least 1"),
])
def test_arguments_are_checked_before_anything_loads(argv, message, qwen3_vl_8b, tmp_path, capsys):
    code, _, stderr = run_cli(capsys, "reproduce", "--model", qwen3_vl_8b, "--out", tmp_path / "run", *argv)
    assert code == 2 and message in stderr, stderr
    assert "loading" not in stderr


def test_dry_run_token_counts_are_the_model_s_own(tmp_path, capsys):
    """The plan's prompt lengths equal what GazeModel.encode gives on the same strip (the bundled model)."""
    code, stdout, _ = run_cli(capsys, "reproduce", "--model", "tiny-qwen3vl", "--dry-run", "--judge", "truth",
                              "--out", tmp_path / "run")
    assert code == 0, stdout
    gm = gh.load()
    strip = gh.data.resolve_comics("synth:100000[0:1]", gm.layout.strip)[0]
    vqa = gm.encode(strip, prompts.VQA_QUESTION).prompt_len
    image = gm.encode(strip, prompts.VQA_QUESTION).geometries[0].n_tokens
    assert f"{image} image tokens; prompt tokens vqa {vqa}," in stdout
    assert "K = 4 of 48 (8.3%)" in stdout and "K = 1, 2, 4, 8 (vqa)" in stdout  # the paper's shares of 48 heads
    assert "answers 4 tokens, dynamic segments 3" in stdout  # the bundled model's own answer lengths


def test_paper_sweep_scales_to_the_model_and_is_the_paper_s_on_1152_heads():
    assert paper_ks(1152) == (5, 10, 20, 50, 100, 200)
    assert paper_ks(48) == (1, 2, 4, 8)


def test_cost_model_decode_is_bounded_by_weights_read_and_layer_overhead():
    params = ParameterCounts(total=8_000_000_000, vision=0, embedding=0, lm_head=0)
    size = ModelSize(layers=32, heads=32, kv_heads=8, head_dim=128, hidden=4096, intermediate=14336, vocab=1,
                     params=params)
    cost = CostModel(size, GPUS["h100"])
    step = StepEstimate("decode", 1)
    cost.forward(step, rows=1, queries=1, context=0, logits=False)
    memory_bound = 8e9 * 2 / (3.35e12 * 0.7)  # 16 GB of weights at 70% of 3.35 TB/s
    assert step.seconds == pytest.approx(max(memory_bound, 32 * 6e-4))
    step = StepEstimate("prefill", 1)
    cost.forward(step, rows=1, queries=4096, context=2048, logits=False)
    flops = 2 * 8e9 * 4096 + 4 * 32 * 32 * 128 * 4096 * 2048
    assert step.flops == pytest.approx(flops) and step.seconds == pytest.approx(flops / (989e12 * 0.4))


def test_reproduce_runs_end_to_end_on_the_bundled_model(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "reproduce", "--model", "tiny-qwen3vl", "--judge", "truth", "--n-strips", 1,
                              "--discover-strips", 3, "--out", out)
    assert code == 0, stdout
    summary = json.loads((out / "summary.json").read_text())["results"]
    seen = {(r["protocol"], r["condition"]) for r in summary}
    assert seen == {("vqa", "gaze"), ("vqa", "random"), ("vqa", "all"), ("narration", "gaze"),
                    ("narration", "random"), ("narration", "all"), ("dynamic", "gaze"), ("dynamic", "random"),
                    ("topk", "gaze")}
    assert sorted(r["k"] for r in summary if r["protocol"] == "topk") == [1, 2, 4, 8]
    figures = json.loads((out / "paper_vs_measured.json").read_text())["figures"]
    assert [f["key"] for f in figures] == [f.key for f in FIGURES] + ["k_share"]
    assert all(f["measured"] != "not run" for f in figures)
    vqa = next(f for f in figures if f["key"] == "vqa_gaze")
    assert vqa["paper"] == "83.1% of 3,000 pairs" and vqa["n"] == 6 and vqa["measured_value"] is not None
    report = (out / "report.html").read_text()
    start = report.index('id="paper-vs-measured"')
    assert start < report.index('id="discovery"')  # right after the overview
    section = report[start:report.index("</table>", start)]
    for text in (">paper</th>", ">measured</th>", "83.1% of 3,000 pairs", "79.4%", "0.87", "K = 100",
                 "destroys generation", vqa["measured"].split(",")[0]):
        assert text in section, text
    assert "paper vs measured" in stdout and "83.1% of 3,000 pairs" in stdout
