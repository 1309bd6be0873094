"""Geometry checks: the adapter's account of the image against the prompt the model gets and
against what the model's own vision tower does with the pixels.

* image tokens: the image-token ids in the prompt (by the model's own config) are the adapter's
  grid cells, plus at most one pixel-free token after a grid row (anyres newlines);
* panel columns: every panel owns at least one whole token column in some view;
* crop and pad: pixels the processor crops away and padding cells are reported, and no panel
  may lose more than half of its pixels;
* chat template: the question comes after the image in the rendered prompt;
* panel localisation: repainting a panel changes the image-token inputs of the model's first
  layer; the adapter's tokens for that panel must change more than the same tokens moved one column
  left or right (a grid off by a column fails here even when its token count is right).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import torch
from PIL import Image

from ..data.strips import Strip
from ..errors import GazeheadsError
from ..model import Encoded, GazeModel
from ..regions import ImageGeometry, Panel
from .result import CheckResult, failed, judged, passed, skipped

IMAGE_TOKENS = "image tokens"
PANEL_COLUMNS = "panel columns"
CROP_AND_PAD = "crop and pad"
CHAT_TEMPLATE = "chat template"
LOCALISATION = "panel localisation"
MAX_PANEL_LOSS = 0.5


def model_image_token_id(gm: GazeModel) -> int | None:
    """The id the model itself replaces with image features (its config), if it names one."""
    config = gm.model.config
    for key in ("image_token_id", "image_token_index"):
        value = getattr(config, key, None)
        if value is not None:
            return int(value)
    return None


def _views_text(geometry: ImageGeometry) -> str:
    views = geometry.views
    shown = ", ".join(f"{v.name} {v.rows}x{v.cols}" for v in views[:3])
    return shown + (f" and {len(views) - 3} more views" if len(views) > 3 else "")


def encode_failure(error: GazeheadsError | ValueError) -> CheckResult:
    """The adapter could not place the image's tokens at all: the image-token check fails with its reason."""
    problem = getattr(error, "problem", None) or str(error)
    return failed(IMAGE_TOKENS, f"the adapter cannot place the image's tokens: {problem}",
                  "grid cells + row ends = the prompt's image tokens")


def image_token_check(gm: GazeModel, encoded: Encoded) -> CheckResult:
    bound = "grid cells + row ends = the prompt's image tokens"
    geometry = encoded.geometries[0]
    cells = geometry.positions.cpu()
    ids = encoded.inputs["input_ids"][0].cpu()
    token = model_image_token_id(gm)
    if token is None:
        return skipped(IMAGE_TOKENS, "the model's config names no image token id to compare the adapter with", bound)
    in_prompt = set((ids == token).nonzero().flatten().tolist())
    cell_set = set(cells.tolist())
    problems = []
    if len(cell_set) != len(cells):
        problems.append(f"{len(cells) - len(cell_set)} grid cells share a position")
    if cells.numel() != geometry.n_tokens:
        problems.append(f"{cells.numel()} positions for {geometry.n_tokens} grid cells")
    outside = sorted(cell_set - in_prompt)
    if outside:
        problems.append(f"{len(outside)} grid cells are not image tokens (e.g. position {outside[0]}, token "
                        f"{int(ids[outside[0]])}; the model's image token is {token})")
    row_ends = set()
    for view in geometry.views:
        row_ends.update(view.positions.cpu().reshape(view.rows, view.cols)[:, -1].tolist())
    extra = sorted(in_prompt - cell_set)
    unexplained = [p for p in extra if p - 1 not in row_ends]
    if unexplained:
        problems.append(f"{len(unexplained)} image tokens of the prompt belong to no grid cell (e.g. position "
                        f"{unexplained[0]})")
    measured = (f"{len(in_prompt)} image tokens in the prompt = {len(cell_set)} grid cells ({_views_text(geometry)})"
                f" + {len(extra)} row ends")
    if problems:
        measured = "; ".join(problems) + f" ({len(in_prompt)} image tokens in the prompt)"
    return judged(IMAGE_TOKENS, not problems, measured, bound, prompt=len(in_prompt), cells=len(cell_set),
                  row_ends=len(extra), views=[v.describe() for v in geometry.views])


def whole_columns(geometry: ImageGeometry, mask: torch.Tensor) -> int:
    """The most whole token columns the mask holds in one view: columns whose every cell on the image
    (padding cells aside) is in `mask`."""
    best, start = 0, 0
    on_image = geometry.in_image()
    for view in geometry.views:
        n = view.rows * view.cols
        grid = mask[start:start + n].reshape(view.rows, view.cols)
        shown = on_image[start:start + n].reshape(view.rows, view.cols)
        whole = (grid | ~shown).all(0) & shown.any(0)
        best = max(best, int(whole.sum()))
        start += n
    return best


def panel_column_check(geometry: ImageGeometry, n_panels: int) -> CheckResult:
    bound = ">= 1 whole column per panel"
    owned = {}
    for k in range(1, n_panels + 1):
        try:
            owned[k] = whole_columns(geometry, geometry.cell_mask(Panel(k)))
        except GazeheadsError as exc:
            return failed(PANEL_COLUMNS, f"panel {k}: {exc.problem}", bound)
    worst = min(owned, key=owned.get)
    counts = ", ".join(str(owned[k]) for k in sorted(owned))
    return judged(PANEL_COLUMNS, owned[worst] >= 1,
                  f"whole token columns per panel: {counts} (fewest: panel {worst})", bound, per_panel=owned)


def crop_pad_check(geometry: ImageGeometry, n_panels: int) -> CheckResult:
    bound = f"no panel loses more than {MAX_PANEL_LOSS:.0%} of its pixels"
    lost = geometry.unseen_fraction()
    per_panel = {k: geometry.unseen_fraction(Panel(k)) for k in range(1, n_panels + 1)}
    padding = int((~geometry.in_image()).sum())
    boxes = "; ".join(f"({x0:g}, {y0:g})-({x1:g}, {y1:g})" for x0, y0, x1, y1 in geometry.unseen())
    measured = f"{lost:.1%} of the strip's pixels never seen{' at ' + boxes if boxes else ''}; " \
               f"{padding} padding cells (assigned to no panel)"
    worst = max(per_panel, key=per_panel.get)
    if per_panel[worst] > MAX_PANEL_LOSS:
        measured += f"; panel {worst} loses {per_panel[worst]:.0%} (pad the image instead of cropping it)"
    return judged(CROP_AND_PAD, per_panel[worst] <= MAX_PANEL_LOSS, measured, bound, unseen=lost,
                  per_panel=per_panel, padding_cells=padding)


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def template_check(gm: GazeModel, encoded: Encoded) -> CheckResult:
    """The chat template puts the image before the question, as the adapter and the prompts expect."""
    bound = "image tokens before the question"
    ids = encoded.inputs["input_ids"][0].cpu().tolist()
    cells = encoded.geometries[0].positions.cpu()
    first, last = int(cells.min()), int(cells.max())
    question = _words(encoded.questions[0])
    tokenizer = gm.tokenizer
    before = _words(tokenizer.decode(ids[:first], skip_special_tokens=True))
    after = _words(tokenizer.decode(ids[last + 1:], skip_special_tokens=True))
    where = f"image tokens at positions {first}..{last} of {len(ids)}"
    if question in before:
        return failed(CHAT_TEMPLATE, f"{where}; the question comes before the image", bound)
    if question not in after:
        return failed(CHAT_TEMPLATE, f"{where}; the question is not in the prompt after the image", bound)
    return passed(CHAT_TEMPLATE, f"{where}; the question follows the image", bound)


def repaint(strip: Strip, panels: list[int]) -> Strip:
    """The strip with every pixel of some panels changed by 128 in each channel (a large change anywhere)."""
    pixels = np.array(strip.image.convert("RGB"))
    for panel in panels:
        x0, y0, x1, y1 = strip.panel_boxes[panel - 1]
        pixels[y0:y1, x0:x1] ^= 0x80
    return replace(strip, image=Image.fromarray(pixels))


class _Enough(Exception):
    """Stops a forward once the first layer's input has been read."""


def first_layer_image_inputs(gm: GazeModel, strip: Strip, question: str) -> torch.Tensor:
    """(image tokens, hidden) float32: what the first attention layer receives at the image positions."""
    encoded = gm.encode(strip, question)
    positions = encoded.geometries[0].positions
    seen: dict = {}

    def grab(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        seen["inputs"] = hidden[0, positions.to(hidden.device)].detach().float().cpu()
        raise _Enough

    handle = gm.attention_modules()[0].register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.inference_mode():
            gm.adapter.base_model(gm.model)(**encoded.inputs, use_cache=False)
    except _Enough:
        pass
    finally:
        handle.remove()
    return seen["inputs"]


def _shifted(geometry: ImageGeometry, mask: torch.Tensor, step: int) -> torch.Tensor:
    """`mask` with every view's cells moved `step` columns (cells moved past an edge are dropped)."""
    out = torch.zeros_like(mask)
    start = 0
    for view in geometry.views:
        n = view.rows * view.cols
        grid = mask[start:start + n].reshape(view.rows, view.cols)
        moved = torch.zeros_like(grid)
        if step > 0:
            moved[:, step:] = grid[:, :-step]
        else:
            moved[:, :step] = grid[:, -step:]
        out[start:start + n] = moved.reshape(-1)
        start += n
    return out


def localisation_check(gm: GazeModel, strip: Strip, question: str, geometry: ImageGeometry) -> CheckResult:
    """Repaint the odd panels, then the even ones (so no two repainted panels touch), and compare the
    change on each panel's tokens with the change on the same tokens moved one column either way."""
    bound = "each panel's tokens change more than the same tokens moved one column (margin > 0)"
    original = first_layer_image_inputs(gm, strip, question)
    margins, unseen = {}, []
    for panels in (list(range(1, strip.n_panels + 1, 2)), list(range(2, strip.n_panels + 1, 2))):
        if not panels:
            continue
        change = (first_layer_image_inputs(gm, repaint(strip, panels), question) - original).pow(2).sum(-1)
        for k in panels:
            mask = geometry.cell_mask(Panel(k))
            own = float(change[mask].sum())
            if not own > 0:
                unseen.append(k)  # the model never sees this panel (cropped away): the crop check reports it
                continue
            moved = max(float(change[_shifted(geometry, mask, step)].sum()) for step in (-1, 1))
            margins[k] = 1.0 - moved / own
    if not margins:
        return failed(LOCALISATION, "repainting the panels changes no image token", bound)
    worst = min(margins, key=margins.get)
    measured = (f"each panel's tokens change more than a one-column shift of them by a margin >= "
                f"{margins[worst]:.3f} (panel {worst})")
    if unseen:
        measured += f"; panels {sorted(unseen)} are never seen"
    return judged(LOCALISATION, margins[worst] > 0, measured, bound, margins=margins, unseen=sorted(unseen))
