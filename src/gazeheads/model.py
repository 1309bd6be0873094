"""A loaded VLM with its processor and adapter: load, encode prompts, generate."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from torch import nn
from transformers import BatchFeature

from . import hook
from .adapters import Adapter, HeadShape, adapter_for, check_supported_config
from .data.strips import Strip, check_pixels
from .errors import DataError, ModelError
from .layout import MAX_STRIP_PIXELS, ModelLayout, read_layout
from .regions import ImageGeometry

ImageLike = Image.Image | Strip


@dataclass
class Encoded:
    """A batch of prompts, each with one image, ready for the model.

    `geometries[b]` maps regions of row b's image to prompt positions; `prompt_len` is the
    padded prompt length (prompts are left-padded so generation appends on the right).
    `images` are the images as given, one per row (None: nothing is shared between rows).
    """

    inputs: BatchFeature
    geometries: list[ImageGeometry]
    questions: list[str]
    images: list | None = None

    @property
    def batch_size(self) -> int:
        return self.inputs["input_ids"].shape[0]

    @property
    def prompt_len(self) -> int:
        return self.inputs["input_ids"].shape[1]

    @property
    def image_groups(self) -> list[int] | None:
        """Per row, the first row given the same image object: rows that share an image (e.g. one
        strip steered to each of its panels) run the vision tower once."""
        if self.images is None:
            return None
        first: dict[int, int] = {}
        return [first.setdefault(id(image), row) for row, image in enumerate(self.images)]

    def image_mask(self) -> torch.Tensor:
        """Boolean (batch, prompt_len): True at image-token positions."""
        mask = torch.zeros(self.batch_size, self.prompt_len, dtype=torch.bool)
        for row, geometry in enumerate(self.geometries):
            mask[row, geometry.positions.cpu()] = True
        return mask


class GazeModel:
    """A VLM whose language backbone runs gazeheads' attention function.

    With nothing requested the function is plain SDPA, so outputs equal the stock model's.
    """

    def __init__(self, model: nn.Module, processor, *, name: str = "", revision: str | None = None,
                 adapter: Adapter | None = None, layout: ModelLayout | None = None) -> None:
        self.model = model.eval()
        self.layout: ModelLayout = layout or ModelLayout()
        self.processor = processor
        self.adapter: Adapter = adapter if adapter is not None else adapter_for(model, processor)
        if self.adapter.processor is None:
            self.adapter.processor = processor
        self.name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
        self.revision = revision
        hook.register()
        self.adapter.set_attention(model, hook.ATTENTION_NAME)
        tokenizer = self.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def shape(self) -> HeadShape:
        return self.adapter.head_shape(self.model)

    def attention_modules(self) -> list[nn.Module]:
        return self.adapter.attention_modules(self.model)

    def fingerprint(self) -> str:
        """A short hash of the architecture and a sample of the weights (for ranking artifacts)."""
        cached = getattr(self, "_fingerprint", None)
        if cached is None:
            cached = self._fingerprint = self._compute_fingerprint()
        return cached

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        for name, param in self.model.named_parameters():
            digest.update(f"{name}:{tuple(param.shape)}".encode())
        embed = self.model.get_input_embeddings().weight
        # rounded through bfloat16 so that the same weights loaded in float32 or bfloat16 agree
        sample = embed.detach().flatten()[:4096].to(torch.bfloat16).float().cpu().numpy()
        digest.update(sample.tobytes())
        return digest.hexdigest()[:16]

    # prompts ---------------------------------------------------------------------------

    def chat_text(self, question: str) -> str:
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, images: ImageLike | Sequence[ImageLike], questions: str | Sequence[str]) -> Encoded:
        """Tokenise one image per prompt; a single image or question is repeated to match the other."""
        images = [images] if isinstance(images, (Image.Image, Strip)) else _as_list(images, "images")
        questions = [questions] if isinstance(questions, str) else _as_list(questions, "questions")
        for i, image in enumerate(images):
            if not isinstance(image, (Image.Image, Strip)):
                raise DataError(f"Image {i} is a {type(image).__name__}, not a PIL image or a Strip.",
                                "Pass PIL.Image images or strips from gazeheads.data (e.g. resolve_comics).")
            check_pixels(image.image.size if isinstance(image, Strip) else image.size, f"Image {i}",
                         MAX_STRIP_PIXELS)
        for i, question in enumerate(questions):
            if not isinstance(question, str) or not question.strip():
                raise DataError(f"Question {i} is {question!r}, not a non-empty string.", "Pass the question text.")
        if not images or not questions:
            raise DataError("Nothing to encode: no images or no questions.", "Pass at least one image and question.")
        if len(images) == 1 and len(questions) > 1:
            images = images * len(questions)
        if len(questions) == 1 and len(images) > 1:
            questions = questions * len(images)
        if len(images) != len(questions):
            raise DataError(f"{len(images)} images for {len(questions)} questions.",
                            "Give one image for all questions, one question for all images, or equal counts.")
        pil = [im.image if isinstance(im, Strip) else im.convert("RGB") for im in images]
        layouts = [im.panel_boxes if isinstance(im, Strip) else None for im in images]
        texts = [self.chat_text(q) for q in questions]
        inputs = self.adapter.process(self.processor, texts, pil)
        geometries = self.adapter.image_geometries(self.model, inputs, [im.size for im in pil], layouts)
        return Encoded(inputs.to(self.device), geometries, questions, images)

    # generation ------------------------------------------------------------------------

    def generate_ids(self, encoded: Encoded, max_new_tokens: int = 32, *, share_prompt: bool = True,
                     **kwargs) -> torch.Tensor:
        """Greedy by default; returns only the new token ids (batch, new_tokens).

        `share_prompt`: when every row is the same prompt and image and the only steering is
        decode-phase (so all but the prompt's last position are unsteered and identical), the
        prompt is prefilled once for all rows. The tokens are the same either way.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise DataError(f"max_new_tokens must be a whole number >= 1, got {max_new_tokens!r}.",
                            "Ask for at least one new token.")
        tokenizer = self.tokenizer
        kwargs.setdefault("do_sample", False)
        kwargs.setdefault("pad_token_id", tokenizer.pad_token_id)
        inputs = encoded.inputs
        groups = encoded.image_groups
        with torch.inference_mode(), self.adapter.shared_images(self.model, groups):
            if share_prompt and "cache" not in kwargs:
                cache = self._shared_prompt_cache(encoded, groups, kwargs)
                if cache is not None:  # the image is in the cache: only the per-token inputs go on
                    kwargs["cache"] = cache
                    inputs = {key: value for key, value in inputs.items() if is_per_token(value, inputs)}
            out = self.model.generate(**inputs, max_new_tokens=max_new_tokens, **kwargs)
        return out[:, encoded.prompt_len :]

    def _shared_prompt_cache(self, encoded: Encoded, groups: list[int] | None, kwargs: dict):
        """The prompt minus its last token prefilled once and repeated for every row, or None
        when that would not give the same result (see :meth:`generate_ids`)."""
        batch = encoded.batch_size
        plan = hook.attached_plan(self.attention_modules())
        if (batch < 2 or not groups or len(set(groups)) != 1 or plan is None or plan.captures or plan.bias is None
                or not getattr(plan.bias, "prompt_unbiased", False)
                or kwargs.get("do_sample") or kwargs.get("num_beams", 1) != 1):
            return None
        ids = encoded.inputs["input_ids"]
        mask = encoded.inputs.get("attention_mask")
        if not bool((ids == ids[:1]).all()) or (mask is not None and not bool(mask.bool().all())):
            return None
        one = self.encode(encoded.images[0], encoded.questions[0]).inputs
        prefix = {key: (value[:, :-1] if is_per_token(value, one) else value) for key, value in one.items()}
        with hook.bias_suspended(plan):
            cache = self.adapter.base_model(self.model)(**prefix, use_cache=True).cache
        cache.batch_repeat_interleave(batch)
        return cache

    def decode(self, ids: torch.Tensor) -> list[str]:
        return [text.strip() for text in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def generate(self, encoded: Encoded, max_new_tokens: int = 32, **kwargs) -> list[str]:
        """Generate and decode the new text of every row."""
        return self.decode(self.generate_ids(encoded, max_new_tokens, **kwargs))


def _as_list(values, what: str) -> list:
    if values is None or isinstance(values, (bytes, dict)) or not hasattr(values, "__iter__"):
        raise DataError(f"The {what} must be one item or a list, got {type(values).__name__}.",
                        f"Pass the {what} as a list (or a single one).")
    return list(values)


def is_per_token(value, inputs) -> bool:
    """True for tensors laid out (batch, prompt tokens), like input_ids and attention_mask."""
    ids = inputs["input_ids"]
    return isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == ids.shape


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on GPU, float32 on CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def resolve_device(device: str | torch.device | None) -> str:
    """The device to load on ("cuda" when available, else "cpu"), or a clear error for one this machine lacks."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise ModelError(f"{device!r} is not a torch device.", "Use cpu, cuda, cuda:N or mps.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"--device {device}: this machine has no usable CUDA GPU.",
                             "Use --device cpu, or run on a machine with a GPU and a CUDA build of torch.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ModelError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s).",
                             f"Use cuda:0 .. cuda:{torch.cuda.device_count() - 1}.")
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"--device {device}: MPS is not available here.", "Use --device cpu.")
    elif parsed.type not in ("cpu", "cuda", "mps"):
        raise ModelError(f"--device {device}: gazeheads runs on cpu, cuda or mps.", "Use one of those.")
    return str(parsed)


def load(
    name_or_path: str | Path | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    device_map: str | dict | None = None,
    revision: str | None = None,
    trust_remote_code: bool = False,
) -> GazeModel:
    """Load a supported VLM by hub id, local folder or bundled name (default: the bundled tiny model).

    SDPA everywhere, gazeheads' function on the language backbone; bf16 on GPU and float32
    on CPU unless `dtype` is given; `device_map` (e.g. "auto") spreads large models. The
    model's input layout (`GazeModel.layout`) is read from its folder's gazeheads.json.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from .assets import resolve_model

    path, name = resolve_model(name_or_path)
    if device_map is None:
        device = resolve_device(device)
    dtype = dtype or default_dtype(device or "cuda")
    layout = read_layout(path)
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"Cannot load a model config from {path!r}: {exc}",
            "Give a local model folder (with config.json and weights), or a hub id on a machine that can reach "
            "the hub (or has it cached).",
        ) from None
    check_supported_config(config)
    try:
        model = AutoModelForImageTextToText.from_pretrained(
            path, config=config, revision=revision, dtype=dtype, device_map=device_map, attn_implementation="sdpa",
            trust_remote_code=trust_remote_code,
        )
        processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"Cannot load the model or processor from {path!r}: {exc}",
                         "Check that the folder holds the weights, tokenizer and processor files.") from None
    if device_map is None:
        model = model.to(device)
    return GazeModel(model, processor, name=name, revision=revision, layout=layout)
