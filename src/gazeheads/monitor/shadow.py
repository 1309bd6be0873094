"""The observer's own unsteered forward: a second copy of the model that replays a generation.

A deployed observer can keep a copy of the weights it trusts and run the same inputs through it,
with no intervention of anyone else's attached. Replaying the prompt and the generated tokens in
one forward (teacher forcing) gives, for every step, the attention the model would have paid
without any intervention; the live attention of a steered head differs from it, and an
unsteered model's does not (up to floating-point summation order).
It costs a second copy of the weights and one extra forward over the whole sequence per generation,
and it only helps while the attacker cannot reach the copy.
"""

from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch

from .. import hook
from ..errors import GazeheadsError
from ..model import Encoded, GazeModel, is_per_token
from .features import total_variation
from .recorder import StepRecorder
from .view import MonitorView


def shadow_model(gm: GazeModel) -> GazeModel:
    """A separate copy of `gm`'s model (same weights, its own attention modules) to replay generations on.

    Built from the configuration and the state dict only, so nothing attached to `gm` (an
    attention plan, a steering bias) is copied or read. It holds a second copy of the weights;
    for a large model load the shadow on another device with ``gazeheads.load(..., device=...)``.
    """
    model = gm.model
    twin = type(model)(copy.deepcopy(model.config))
    twin.load_state_dict(model.state_dict())
    parameter = next(model.parameters())
    twin.to(device=parameter.device, dtype=parameter.dtype)
    return GazeModel(twin, gm.processor, name=gm.name, revision=gm.revision, layout=gm.layout)


def _extended_inputs(encoded: Encoded, tokens: torch.Tensor, device) -> dict:
    """The prompt's inputs followed by `tokens` (batch, n): ids appended, the attention mask extended with
    ones, other per-token inputs (such as token-type ids) with zeros, the text's type; image inputs as they are."""
    inputs = {}
    for key, value in encoded.inputs.items():
        if is_per_token(value, encoded.inputs):
            if key == "input_ids":
                extra = tokens
            elif key == "attention_mask":
                extra = torch.ones_like(tokens)
            else:
                extra = torch.zeros_like(tokens)
            value = torch.cat([value, extra.to(value.device, value.dtype)], dim=1)
        inputs[key] = value.to(device)
    return inputs


def replay(shadow: GazeModel, view: MonitorView, encoded: Encoded, new_ids: torch.Tensor) -> dict[int, torch.Tensor]:
    """The watched heads' rows of every generation step of `new_ids`, computed by `shadow` in one forward.

    The prompt and the generated tokens (teacher forcing) run as one sequence; step s's row is the
    query at the prompt's last position plus s, causal, so it attends to exactly the keys the live
    step saw. Returns, per step, (batch, watched heads, prompt + s keys) float32 rows.
    """
    if new_ids.shape[0] != encoded.batch_size:
        raise GazeheadsError(f"{new_ids.shape[0]} generated rows for a batch of {encoded.batch_size} prompts.",
                             "Pass the ids that gm.generate_ids(encoded, ...) returned for this batch.")
    if shadow.shape != view.shape:
        raise GazeheadsError("The shadow model has another head shape than the monitored model.",
                             "Make the shadow with gazeheads.monitor.shadow_model(gm) or load the same weights.")
    steps = new_ids.shape[1]
    prompt = encoded.prompt_len
    inputs = _extended_inputs(encoded, new_ids[:, : steps - 1], shadow.device)
    columns = view.columns()
    kept: dict[int, list[torch.Tensor]] = {step: [] for step in range(steps)}
    requests = []
    for step in range(steps):
        def keep(layer, probs, value, step=step):
            kept[step].append(probs[:, columns[layer].to(probs.device), : prompt + step].float().cpu())

        where = torch.full((encoded.batch_size,), prompt - 1 + step, dtype=torch.long)
        requests.append(hook.CaptureRequest(frozenset(columns), keep, query_index=where))
    with contextlib.ExitStack() as stack, torch.inference_mode():
        for request in requests:
            stack.enter_context(hook.requesting(shadow.attention_modules(), capture=request))
        shadow.model(**inputs, use_cache=False)
    return {step: torch.cat(rows, dim=1) for step, rows in kept.items()}


def shadow_distances(live: StepRecorder, shadow_rows: dict[int, torch.Tensor], view: MonitorView) -> np.ndarray:
    """(batch, steps, 2): per step, the largest total-variation distance between a head's live and shadow
    rows over the wide view and over the gaze heads (the steps both recorded)."""
    gaze, wide = view.masks()
    steps = [s for s in live.steps() if s in shadow_rows]
    out = np.zeros((live.image_mask.shape[0], len(steps), 2))
    for i, step in enumerate(steps):
        a, b = live.rows[step], shadow_rows[step]
        keys = min(a.shape[-1], b.shape[-1])
        tv = total_variation(a[..., :keys], b[..., :keys]).double()  # (batch, watched heads)
        out[:, i, 0] = tv[:, wide].amax(1).numpy()
        out[:, i, 1] = tv[:, gaze].amax(1).numpy()
    return out
