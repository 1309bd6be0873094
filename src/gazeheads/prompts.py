"""The prompts of the published protocols (docs/method.md), in one place."""

from __future__ import annotations

NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}


def ordinal(k: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th'."""
    if 10 <= k % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


def strip_name(n_panels: int) -> str:
    """'six-panel comic strip' for 6 panels; digits beyond the named numbers."""
    return f"{NUMBER_WORDS.get(n_panels, str(n_panels))}-panel comic strip"


def discovery_question(panel: int, n_panels: int = 6) -> str:
    """The gaze-score prompt for 1-based `panel`."""
    return (
        f"Look carefully at this {strip_name(n_panels)}. "
        f"What is happening in the {ordinal(panel)} panel from the left? Answer briefly."
    )


VQA_QUESTION = "What is the main action or event happening in this comic strip? Answer briefly."
NARRATION_QUESTION = "What is happening in this panel of the comic strip?"
SCENE_QUESTION = "What is in this picture?"
