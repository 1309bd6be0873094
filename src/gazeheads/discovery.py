"""Discovery: the gaze score of every head, from forward passes over comic strips.

For each strip and each panel k the model reads the panel question (prompts.discovery_question)
with no generation. For every layer and head we take the post-softmax attention of the last
prompt token and sum it over each panel's image tokens (raw mass, not renormalised). This
gives a (queried panel x attended panel) matrix per head; averaged over strips, the mean of
its diagonal is the head's gaze score.

The N questions of a strip share the image prefix, so by default the prefix runs once and
the N question suffixes run as one batch on a copy of its KV cache.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from transformers.cache_utils import DynamicLayer

from . import hook, prompts
from .data.strips import Strip
from .errors import DataError, RegionError
from .files import atomic_write, write_text
from .model import Encoded, GazeModel, is_per_token
from .progress import progress_bar
from .ranking import Ranking, StripIdentity
from .regions import Panel


class _PanelMassRecorder:
    """Capture callback: per layer, the attended-panel masses of each query row."""

    def __init__(self, membership: torch.Tensor, n_layers: int) -> None:
        self.membership = membership  # (panels, prefix keys) float
        self.masses: list[torch.Tensor | None] = [None] * n_layers

    def __call__(self, layer: int, probs: torch.Tensor, value: torch.Tensor) -> None:
        keys = self.membership.shape[1]
        membership = self.membership.to(probs.device)
        self.masses[layer] = torch.einsum("bhk,pk->hbp", probs[..., :keys], membership).cpu()

    def matrices(self) -> np.ndarray:
        """(layers, heads, queried panel, attended panel)."""
        return torch.stack(self.masses).numpy()  # type: ignore[arg-type]


def _panel_membership(encoded: Encoded, n_panels: int, n_keys: int) -> torch.Tensor:
    geometry = encoded.geometries[0]
    membership = torch.zeros(n_panels, n_keys)
    for k in range(n_panels):
        membership[k, geometry.positions_of(Panel(k + 1)).cpu()] = 1.0
    return membership


def _check_strip(strip: Strip) -> None:
    if strip.n_panels < 1:
        raise DataError(f"Strip {strip.comic_id!r} has no panels.", "Give strips with panel layouts.")


def strip_matrices_per_question(gm: GazeModel, strip: Strip) -> np.ndarray:
    """Reference path: one full forward per panel question. Returns (layers, heads, N, N)."""
    _check_strip(strip)
    n = strip.n_panels
    shape = gm.shape
    out = np.zeros((shape.n_layers, shape.n_heads, n, n), dtype=np.float64)
    for k in range(1, n + 1):
        encoded = gm.encode(strip, prompts.discovery_question(k, n))
        recorder = _PanelMassRecorder(_panel_membership(encoded, n, encoded.prompt_len), shape.n_layers)
        request = hook.CaptureRequest(frozenset(range(shape.n_layers)), recorder)
        with hook.requesting(gm.attention_modules(), capture=request), torch.inference_mode():
            gm.model(**encoded.inputs, use_cache=False)
        out[:, :, k - 1, :] = recorder.matrices()[:, :, 0, :]
    return out


class _SharedPrefixLayer(DynamicLayer):
    """A prefix cache layer read by `batch` rows at once, for one forward.

    `update` returns the prefix (expanded, not copied) followed by the new keys and values
    without storing them, so the N question suffixes need no N copies of the prefix cache.
    """

    def __init__(self, layer: DynamicLayer, batch: int) -> None:
        super().__init__()
        self.keys, self.values = layer.keys, layer.values
        self.dtype, self.device = layer.keys.dtype, layer.keys.device
        self.is_initialized = True
        self.batch = batch

    def update(self, key_states, value_states, *args, **kwargs):
        keys = torch.cat([self.keys.expand(self.batch, -1, -1, -1), key_states], dim=-2)
        values = torch.cat([self.values.expand(self.batch, -1, -1, -1), value_states], dim=-2)
        return keys, values


def _share_prefix(cache, batch: int) -> None:
    """Let `batch` rows read the batch-1 prefix cache (plain dynamic layers are shared, others repeated)."""
    if all(type(layer) is DynamicLayer for layer in cache.layers):
        cache.layers = [_SharedPrefixLayer(layer, batch) for layer in cache.layers]
    else:
        cache.batch_repeat_interleave(batch)


def _common_prefix_len(sequences: Sequence[torch.Tensor]) -> int:
    shortest = min(len(s) for s in sequences)
    stacked = torch.stack([s[:shortest] for s in sequences])
    same = (stacked == stacked[0]).all(0)
    differing = (~same).nonzero()
    return int(differing[0]) if len(differing) else shortest


def strip_matrices(gm: GazeModel, strip: Strip) -> np.ndarray:
    """The N x N matrix of every head for one strip, sharing the image prefix across questions.

    Equal (to float rounding) to :func:`strip_matrices_per_question`. Returns (layers, heads, N, N).
    """
    _check_strip(strip)
    n = strip.n_panels
    shape = gm.shape
    encodings = [gm.encode(strip, prompts.discovery_question(k, n)) for k in range(1, n + 1)]
    ids = [e.inputs["input_ids"][0] for e in encodings]
    positions = [gm.adapter.position_ids(gm.model, e.inputs) for e in encodings]
    prefix = _common_prefix_len(ids)
    last_image = int(encodings[0].geometries[0].positions.max())
    if prefix <= last_image or n == 1 or min(len(s) for s in ids) == prefix:
        return strip_matrices_per_question(gm, strip)

    first = encodings[0].inputs
    del encodings[1:]  # their pixel values are the same image: keep one copy alive
    base = gm.adapter.base_model(gm.model)
    # Every per-token input is cut to the prefix; image tensors go in whole.
    prefix_inputs = {key: (value[:, :prefix] if is_per_token(value, first) else value) for key, value in first.items()}
    suffix_lens = [len(s) - prefix for s in ids]
    width = max(suffix_lens)
    pad = gm.tokenizer.pad_token_id
    suffix_ids = torch.full((n, width), pad, dtype=torch.long, device=gm.device)
    for row, (seq, length) in enumerate(zip(ids, suffix_lens)):
        suffix_ids[row, :length] = seq[prefix:]
    suffix_inputs = {"input_ids": suffix_ids}
    if positions[0] is not None:  # explicit (e.g. multimodal RoPE) positions; else the cache length sets them
        prefix_inputs["position_ids"] = positions[0][..., :prefix]
        suffix_pos = torch.zeros((*positions[0].shape[:-2], n, width), dtype=torch.long, device=gm.device)
        for row, (pos, length) in enumerate(zip(positions, suffix_lens)):
            suffix_pos[..., row, :length] = pos[..., 0, prefix:]
            # Right padding: pad positions continue the sequence; causal masking hides them from real tokens.
            suffix_pos[..., row, length:] = pos[..., 0, -1:] + torch.arange(1, width - length + 1, device=gm.device)
        suffix_inputs["position_ids"] = suffix_pos
    query_index = torch.tensor([length - 1 for length in suffix_lens], device=gm.device)

    recorder = _PanelMassRecorder(_panel_membership(encodings[0], n, prefix), shape.n_layers)
    request = hook.CaptureRequest(frozenset(range(shape.n_layers)), recorder, query_index=query_index)
    # The plan is attached from the prefix on so that it counts the keys of sliding-window layers.
    with torch.inference_mode(), hook.attach_plan(gm.attention_modules()):
        cache = base(**prefix_inputs, use_cache=True).cache
        _share_prefix(cache, n)
        with hook.requesting(gm.attention_modules(), capture=request):
            base(**suffix_inputs, cache=cache, use_cache=True)
    return recorder.matrices()


def _strip_key(index: int, strip: Strip) -> str:
    name = f"{index:06d}-{strip.comic_id}-{strip.image.size[0]}x{strip.image.size[1]}-{list(strip.panel_boxes)}"
    return hashlib.sha1(name.encode()).hexdigest()[:12]


def _open_checkpoint(folder: Path, gm: GazeModel, n_panels: int) -> None:
    """Make `folder` a checkpoint of this model and these prompts, or refuse one of another."""
    folder.mkdir(parents=True, exist_ok=True)
    identity = {"model": gm.fingerprint(),  # hashes every parameter's name and shape, so the head shape too
                "prompts": [prompts.discovery_question(k, n_panels) for k in range(1, n_panels + 1)]}
    meta = folder / "checkpoint.json"
    if meta.exists():
        saved = json.loads(meta.read_text())
        if saved != identity:
            what = [key for key in identity if saved.get(key) != identity[key]]
            raise DataError(f"The discovery checkpoint {folder} was written for another {' and '.join(what)}.",
                            "Use another checkpoint folder, or delete this one to start over.")
        return
    if any(folder.glob("*.npy")):
        raise DataError(f"{folder} holds per-strip matrices but no checkpoint.json saying which model made them.",
                        "Use another checkpoint folder, or delete this one to start over.")
    write_text(meta, json.dumps(identity))


def discover(
    gm: GazeModel,
    strips: Sequence[Strip],
    *,
    shared_prefix: bool = True,
    checkpoint_dir: str | Path | None = None,
    source: str = "",
    progress: bool = True,
) -> Ranking:
    """Score every head over `strips` and return the ranking.

    `strips` may be a lazy :class:`~gazeheads.data.StripSet` (one strip in memory at a time).
    With `checkpoint_dir`, each strip's matrices are written there as soon as they exist,
    and a rerun skips the strips already done (resume after a crash loses nothing); a
    checkpoint made by another model, or with other prompts, is refused. The ranking records
    every strip's source and pixel digest, so evaluations can refuse to test on them.
    """
    if not hasattr(strips, "__len__"):
        strips = list(strips)
    if len(strips) == 0:
        raise DataError("No strips to discover on.", "Give at least one comic strip.")
    source = source or getattr(strips, "source", "")
    compute = strip_matrices if shared_prefix else strip_matrices_per_question
    folder = Path(checkpoint_dir) if checkpoint_dir else None
    per_strip, identities = [], []
    n_panels = None
    for index, strip in enumerate(progress_bar(strips, desc="discovery", unit="strip", disable=not progress)):
        if n_panels is None:
            n_panels = strip.n_panels
            if folder:
                _open_checkpoint(folder, gm, n_panels)
        elif strip.n_panels != n_panels:
            raise DataError(f"Strip {strip.comic_id!r} has {strip.n_panels} panels, the first strip {n_panels}.",
                            "Use strips with the same number of panels.")
        _check_strip(strip)
        identities.append(StripIdentity(strip.meta.get("spec", source), strip.comic_id, strip.digest))
        saved = folder / f"{_strip_key(index, strip)}.npy" if folder else None
        if saved is not None and saved.exists():
            per_strip.append(np.load(saved))
            continue
        try:
            matrices = compute(gm, strip).astype(np.float32)
        except RegionError as exc:
            raise RegionError(f"Strip {strip.comic_id!r}: {exc.problem}", exc.fix) from None
        if saved is not None:
            atomic_write(saved, lambda tmp: np.save(tmp, matrices))
        per_strip.append(matrices)
    return Ranking.from_matrices(
        np.stack(per_strip),
        model=gm,
        prompts=[prompts.discovery_question(k, n_panels) for k in range(1, n_panels + 1)],
        source=source,
        strips=identities,
    )
