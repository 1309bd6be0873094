"""What an LLM judge is sent (the forced-choice prompt and the image) and how its reply is read.

The protocol follows the published gaze-heads code's judge: the judge sees the strip and the
steered answer, with the unsteered answer for reference; it is told to place the answer by
what it says about the pictures, not by panel numbers the answer itself mentions; it picks
exactly one panel, or marks the answer junk. The wording here is this package's own.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

from PIL import Image

from .base import JudgeItem

PROMPT_VERSION = 2  # part of the verdict cache key: bump whenever the prompt or its reading changes

_REPLY_FORMAT = '{{"{key}": <{what}, or null>, "junk": <true or false>, "reason": "<a few words>"}}'


def judge_prompt(item: JudgeItem) -> str:
    """The forced-choice question sent with the image."""
    answer = f'"""{item.text}"""'
    reference = (f'For reference, the same model answered this without any intervention:\n"""{item.baseline}"""\n\n'
                 if item.baseline is not None else "")
    if item.category_names is not None:
        options = "\n".join(f"{i}. {name}" for i, name in enumerate(item.category_names, start=1))
        return (
            "The image is a photo. A vision-language model was asked what is in it and answered:\n"
            f"{answer}\n\n{reference}"
            f"Which one of these object categories does the answer name?\n{options}\n\n"
            "Decide by the object the answer is about. If the answer is empty, garbled, repetitive or names "
            "none of them, it is junk.\n\n"
            "Reply with one JSON object and nothing else: "
            + _REPLY_FORMAT.format(key="category", what=f"a number from 1 to {len(item.category_names)}")
        )
    n = item.n_panels
    return (
        f"The image is a comic strip of {n} panels, numbered 1 to {n} from left to right. "
        "A vision-language model was asked about the strip and answered:\n"
        f"{answer}\n\n{reference}"
        "Which single panel does this answer describe? Decide by what the answer says about the pictures "
        "(actions, people, objects, setting), not by any panel number written in the answer: such models "
        "often number their descriptions whatever panel they describe. If the answer is generic, pick the "
        "panel its specific details fit best. If it is empty, garbled, repetitive, or only numbers or labels, "
        "it is junk.\n\n"
        "Reply with one JSON object and nothing else: "
        + _REPLY_FORMAT.format(key="panel", what=f"a number from 1 to {n}")
    )


def encode_image(image: Image.Image, image_format: str = "jpeg", max_side: int | None = 1568) -> tuple[str, str]:
    """(base64 data, media type) of the image as sent to a judge.

    Scaled down (never up) so its longer side is at most `max_side`: Claude scales larger
    images down to about that size itself, so this saves upload bytes, not detail.
    JPEG (quality 90) keeps batch files small; "png" sends lossless pixels.
    """
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if image_format == "png":
        (image if image.mode in ("RGB", "RGBA", "L") else image.convert("RGB")).save(buffer, format="PNG")
        media_type = "image/png"
    else:
        image.convert("RGB").save(buffer, format="JPEG", quality=90)
        media_type = "image/jpeg"
    return base64.b64encode(buffer.getvalue()).decode("ascii"), media_type


_CHOICE_KEYS = ("panel", "category", "choice", "matched_panel")


def _as_choice(value: Any, n_options: int) -> tuple[int | None, str]:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("null", "none", "")):
        return None, "null"
    if isinstance(value, bool):
        return None, "unparsed"
    if isinstance(value, (int, float)) and float(value).is_integer():
        k = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        k = int(value.strip())
    else:
        return None, "unparsed"
    return (k, "ok") if 1 <= k <= n_options else (None, "unparsed")


def _json_objects(reply: str) -> list[dict]:
    found = []
    for blob in re.findall(r"\{[^{}]*\}", reply):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            found.append(data)
    return found


def parse_choice(reply: str, n_options: int) -> tuple[int | None, str]:
    """A 1-based choice from a judge's reply, and how it was read: "ok", "null" or "unparsed".

    Accepts {"panel": k} (or "category"/"choice") anywhere in the reply, code fences and
    prose around it, a number given as a string, and a bare number as the whole reply.
    """
    for data in _json_objects(reply):
        for key in _CHOICE_KEYS:
            if key in data:
                return _as_choice(data[key], n_options)
    match = re.search(r'(?:panel|category|choice)"?\s*[:=]\s*"?(\d+|null|none)', reply, re.IGNORECASE)
    if match:
        return _as_choice(match.group(1), n_options)
    bare = reply.strip().strip("`").strip().rstrip(".")
    if bare.isdigit() or bare.lower() in ("null", "none"):
        return _as_choice(bare, n_options)
    return None, "unparsed"


def parse_reply(reply: str, n_options: int) -> tuple[int | None, str, str]:
    """(choice, status, reason) of a reply to `judge_prompt`.

    status: "ok"; "junk" when the judge marked the answer junk (the choice is then None);
    "null" when it chose no option; "unparsed" when no choice could be read.
    """
    choice, status = parse_choice(reply, n_options)
    objects = _json_objects(reply)
    data = next((d for d in objects if any(k in d for k in _CHOICE_KEYS)), objects[0] if objects else {})
    reason = str(data.get("reason", ""))
    junk = data.get("junk", data.get("is_junk"))
    if junk is True or (isinstance(junk, str) and junk.strip().lower() == "true"):
        return None, "junk", reason
    return choice, status, reason
