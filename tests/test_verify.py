"""`gazeheads verify` as a specification: it passes on every family's published-config replica in
bfloat16 and float32, it fails on real faults with the check that catches them named, and the
command prints one line per check, writes JSON and exits 1 on a failure.

What runs where (the replicas are costly on a CPU): the library function `verify_model` on every
family's replica in bfloat16 with the float32 capture pass (geometry, exactness, numerics, float32);
the command end to end, every group including prefix sharing, on a saved SmolVLM2 replica folder
in bfloat16 and on the bundled model with a ranking (the causal check); the faults on the Qwen2-VL
replica (the cheapest: 28 image tokens) and on a copy of the bundled model's folder.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import subprocess
import sys

import pytest
import torch

import gazeheads as gh
from gazeheads import cli, hook
from gazeheads.adapters import GenericAdapter, Grid, QwenVLAdapter
from gazeheads.assets import bundled_model_path
from gazeheads.regions import ImageGeometry, View
from gazeheads.specs import SteerSpec
from gazeheads.verify import VerifyOptions, float32_weights, verify_model
from gazeheads.verify.numerics import numerics_check
from gazeheads.verify.observe import Observation

from conftest import draw_strip
from replicas import REPLICAS, build_replica, cast_model
from replicas.llava import CLIP_MEAN, CLIP_STD
from replicas.runtime import fast_products, vision_once

STRIP = draw_strip(widths=(64,) * 6, height=64, gap=0)  # the replicas' test strip: 384x64 px, six 64-px panels
LIBRARY_GROUPS = ("geometry", "exactness", "numerics", "float32")


@contextlib.contextmanager
def replica_run(name: str, dtype: torch.dtype, processor_change=None):
    """A replica as a GazeModel, with the replica runtime (bf16 products in float32 kernels, one vision pass
    per pixel tensor) and a float32 block that casts only the filled rows of its lazy embedding table."""
    model, processor = build_replica(name, dtype=dtype)
    if processor_change is not None:
        processor_change(processor)
    gm = gh.GazeModel(model, processor)
    memo: dict = {}

    @contextlib.contextmanager
    def float32(module):
        memo.clear()
        cast_model(module, torch.float32)
        try:
            yield
        finally:
            memo.clear()
            cast_model(module, dtype)

    with fast_products(dtype), vision_once(gm.adapter.base_model(model), memo):
        yield gm, float32
    del gm, model
    gc.collect()


def padded_llava(processor) -> None:
    """LLaVA-1.5 as trained: the strip padded to a square (the published processor center-crops it)."""
    import transformers as tf

    processor.image_processor = tf.LlavaImageProcessor(
        do_pad=True, size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_center_crop=True,
        resample=3, image_mean=CLIP_MEAN, image_std=CLIP_STD)


# every family, bfloat16 and float32 -----------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in REPLICAS if n != "smolvlm"])  # smolvlm: the command test below
def test_verify_passes_on_every_family_replica_in_bf16_and_float32(name):
    change = padded_llava if name == "llava" else None
    with replica_run(name, torch.bfloat16, change) as (gm, float32):
        report = verify_model(gm, STRIP, options=VerifyOptions(groups=LIBRARY_GROUPS), float32=float32)
    names = [c.name for c in report.checks]
    for expected in ("image tokens", "panel columns", "crop and pad", "chat template", "panel localisation",
                     "capture = eager (bfloat16)", "bias on chosen heads (bfloat16)", "bias numerics",
                     "capture = eager (float32)"):
        assert expected in names, names
    assert not report.failures(), "\n".join(c.line() for c in report.checks)
    assert not any(c.status == "skip" for c in report.checks)
    assert report.check("capture = eager (float32)").detail["per_layer"]  # measured, per layer
    assert max(report.check("capture = eager (float32)").detail["per_layer"].values()) <= 1e-5


def test_published_llava_processor_crops_the_strip_and_verify_says_so():
    with replica_run("llava", torch.float32) as (gm, _):
        report = verify_model(gm, STRIP, options=VerifyOptions(groups=("geometry",)))
    assert set(report.failures()) == {"panel columns", "crop and pad"}
    crop = report.check("crop and pad")
    assert "83.3% of the strip's pixels never seen" in crop.measured and crop.detail["per_panel"][1] == 1.0
    assert "panels [1, 2, 5, 6] are never seen" in report.check("panel localisation").measured


# faults: each fails the check that should catch it ---------------------------------------------------------


@pytest.fixture(scope="module")
def qwen2():
    with replica_run("qwen2_vl", torch.float32) as (gm, _):
        yield gm


def with_adapter(gm, adapter) -> gh.GazeModel:
    return gh.GazeModel(gm.model, gm.processor, adapter=adapter)


def test_fault_wrong_image_token_id_fails_image_tokens(qwen2):
    vision_start = gm_token(qwen2, "<|vision_start|>")
    faulty = with_adapter(qwen2, GenericAdapter(image_token_id=vision_start, grids=[Grid(2, 14)]))
    report = verify_model(faulty, STRIP)
    assert report.failures() == ["image tokens"]
    assert "has 1 image tokens, but the grid rule describes 28" in report.check("image tokens").measured


def gm_token(gm, text: str) -> int:
    return gm.tokenizer.convert_tokens_to_ids(text)


def test_fault_grid_one_column_too_wide_fails_image_tokens(qwen2):
    faulty = with_adapter(qwen2, GenericAdapter(image_token_id=qwen2.model.config.image_token_id, grids=[Grid(2, 15)]))
    report = verify_model(faulty, STRIP)
    assert report.failures() == ["image tokens"]
    assert "28 image tokens, but the grid rule describes 30" in report.check("image tokens").measured


class ShiftedGrid(QwenVLAdapter):
    """The right token count, but every cell's pixels one column to the right of where they are."""

    def image_geometries(self, model, inputs, image_sizes, panel_boxes):
        shifted = []
        for g in super().image_geometries(model, inputs, image_sizes, panel_boxes):
            x0, y0, x1, y1 = g.views[0].box
            step = (x1 - x0) / g.cols
            view = View("image", g.positions, g.rows, g.cols, (x0 + step, y0, x1 + step, y1))
            shifted.append(ImageGeometry.from_views([view], g.image_size, g.panel_boxes))
        return shifted


def test_fault_grid_off_by_one_column_fails_panel_localisation(qwen2):
    faulty = with_adapter(qwen2, ShiftedGrid(qwen2.processor))
    report = verify_model(faulty, STRIP, options=VerifyOptions(groups=("geometry",)))
    assert "image tokens" not in report.failures()  # the count is right ...
    assert "panel localisation" in report.failures()  # ... the columns are not
    assert min(report.check("panel localisation").detail["margins"].values()) < 0


def dropping_bias(module, query, key, value, attention_mask, **kwargs):
    """An attention implementation that ignores the steering bias (as a kernel that takes no bias would)."""
    plan = hook.attached_plan([module])
    if plan is None or plan.bias is None:
        return hook.gaze_attention_forward(module, query, key, value, attention_mask, **kwargs)
    with hook.bias_suspended(plan):
        return hook.gaze_attention_forward(module, query, key, value, attention_mask, **kwargs)


def test_fault_attention_that_drops_the_bias_fails_the_bias_check(qwen2):
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register("drops_bias", dropping_bias)
    AttentionMaskInterface.register("drops_bias", sdpa_mask)
    qwen2.model.set_attn_implementation({"text_config": "drops_bias"})
    try:
        report = verify_model(qwen2, STRIP, options=VerifyOptions(groups=("exactness",)))
    finally:
        qwen2.adapter.set_attention(qwen2.model, hook.ATTENTION_NAME)
    assert report.failures() == ["bias on chosen heads (float32)"]  # the captures still equal eager rows
    measured = report.check("bias on chosen heads (float32)").measured
    assert "attention rows moved at heads []" in measured and "attention outputs moved at heads []" in measured


def test_fault_template_with_the_question_first_fails_chat_template(qwen2):
    template = qwen2.processor.chat_template
    reordered = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% for part in message['content'] %}"
                 "{% if part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% for part in "
                 "message['content'] %}{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
                 "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                 "{% endif %}")
    qwen2.processor.chat_template = reordered
    try:
        report = verify_model(qwen2, STRIP, options=VerifyOptions(groups=("geometry",)))
    finally:
        qwen2.processor.chat_template = template
    assert report.failures() == ["chat template"]
    assert "the question comes before the image" in report.check("chat template").measured


def test_a_bias_too_weak_for_the_logits_fails_bias_numerics():
    rows = {0: torch.tensor([[0.7, 0.2, 0.1, 1e-6]])}  # a logit spread of ln(0.7 / 1e-6) = 13.5
    observed = Observation(rows, None, 0)
    assert numerics_check(SteerSpec(), torch.bfloat16, observed, observed).status == "pass"
    weak = numerics_check(SteerSpec(strength=5.0), torch.bfloat16, observed, observed)
    assert weak.failed and "does not clear the logit spread 13.5" in weak.measured
    broken = numerics_check(SteerSpec(), torch.float16, observed, Observation(rows, None, 3))
    assert broken.failed and "3 inf/NaN values" in broken.measured


def test_float32_block_restores_the_model_bit_for_bit():
    layer = torch.nn.Linear(8, 8).to(torch.bfloat16)
    model = torch.nn.Sequential(layer, torch.nn.Linear(8, 8).to(torch.bfloat16))
    model[1].weight = model[0].weight  # tied
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with float32_weights(model):
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert model[1].weight is model[0].weight
    after = model.state_dict()
    assert all(after[k].dtype == torch.bfloat16 and torch.equal(after[k], v) for k, v in before.items())


# the command --------------------------------------------------------------------------------------------


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def smolvlm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smolvlm2-replica")
    model, processor = build_replica("smolvlm", dtype=torch.bfloat16)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_command_verifies_a_saved_checkpoint_in_bf16(smolvlm_folder, tmp_path, capsys):
    out = tmp_path / "verify.json"
    loaded = gh.load(smolvlm_folder, dtype=torch.bfloat16)  # the folder loads as any checkpoint does
    assert type(loaded.model).__name__ == REPLICAS["smolvlm"].model_class
    del loaded
    with fast_products(torch.bfloat16):
        code, stdout, _ = run_cli(capsys, "verify", "--model", smolvlm_folder, "--dtype", "bfloat16",
                                  "--comics", "synth", "--strip-height", 64, "--strip-gap", 0, "--out", out)
    lines = [line for line in stdout.splitlines() if line.startswith(("PASS", "FAIL", "SKIP"))]
    assert code == 0, stdout
    names = ["image tokens", "panel columns", "crop and pad", "chat template", "panel localisation",
             "capture = eager (bfloat16)", "bias on chosen heads (bfloat16)", "bias numerics",
             "prefix sharing (bfloat16)", "capture = eager (float32)"]
    assert [line.split("  ")[1] for line in lines] == names
    assert all(line.startswith("PASS") and "(bound " in line for line in lines)
    report = json.loads(out.read_text())
    assert report["passed"] is True and report["dtype"] == "bfloat16"
    assert [c["name"] for c in report["checks"]] == names and report["setup"]["layers"] == [0, 1]


@pytest.fixture(scope="module")
def bundled_ranking(tmp_path_factory):
    from gazeheads.mainjob import SYNTH_DISCOVERY_SEED

    gm = gh.load()
    strips = gh.data.resolve_comics(f"synth:{SYNTH_DISCOVERY_SEED}[0:6]", gm.layout.strip)
    path = tmp_path_factory.mktemp("ranking") / "ranking.json"
    gh.discover(gm, strips, progress=False).save(path)
    return path


def test_command_with_a_ranking_runs_the_causal_check(bundled_ranking, tmp_path, capsys):
    code, stdout, _ = run_cli(capsys, "verify", "--ranking", bundled_ranking, "--n-strips", 2,
                              "--checks", "exactness,causal", "--out", tmp_path / "v.json")
    assert code == 0, stdout
    causal = next(line for line in stdout.splitlines() if "causal (ranking)" in line)
    assert causal.startswith("PASS") and "(bound top-K gaze > random and > unsteered)" in causal
    table = json.loads((tmp_path / "v.json").read_text())["tables"]["causal"]
    by_condition = {row["condition"]: row for row in table}
    assert set(by_condition) == {"unsteered", "top-K gaze", "random non-gaze"}
    assert by_condition["top-K gaze"]["n"] == 12 and by_condition["top-K gaze"]["accuracy"] >= 0.75
    assert "top-K gaze" in stdout and "random non-gaze" in stdout  # the table is printed


def test_command_exits_1_naming_the_check_when_the_config_names_the_wrong_image_token(tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    config["image_token_id"] = config["vision_start_token_id"]  # a wrong image-token id
    (folder / "config.json").write_text(json.dumps(config))
    code, stdout, _ = run_cli(capsys, "verify", "--model", folder, "--out", tmp_path / "v.json")
    assert code == 1
    assert stdout.splitlines()[0].startswith("FAIL  image tokens  the adapter cannot place the image's tokens")
    assert json.loads((tmp_path / "v.json").read_text())["failures"] == ["image tokens"]


@pytest.mark.parametrize("argv, message", [
    (["--layers", "0,9"], "Layers [9] do not exist in a model with 6 layers"),
    (["--heads", "8"], "Heads [8] do not exist in layers of 8 heads"),
    (["--checks", "geometry,speed"], "unknown group(s) ['speed']"),
    (["--out", "verify.txt"], "is not a .json file"),
    (["--judge", "oracle", "--ranking", "RANKING"], "unknown judge kind"),
])
def test_command_checks_its_arguments_before_loading(argv, message, bundled_ranking, tmp_path, capsys):
    argv = [str(bundled_ranking) if a == "RANKING" else a for a in argv]
    code, _, stderr = run_cli(capsys, "verify", *argv)
    assert code == 2 and message in stderr and "loading" not in stderr


def test_command_refuses_a_ranking_of_another_model(bundled_ranking, smolvlm_folder, capsys):
    code, _, stderr = run_cli(capsys, "verify", "--model", smolvlm_folder, "--ranking", bundled_ranking)
    assert code == 2 and "was made for a model of shape" in stderr and "loading" not in stderr


def test_help_imports_no_torch():
    code = ("import sys\nfrom gazeheads.cli import main\n"
            "for argv in (['verify', '--help'], ['reproduce', '--help']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('LOADED', sorted(m for m in ('torch', 'transformers', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and "LOADED []" in out.stdout, out.stderr[-2000:]
