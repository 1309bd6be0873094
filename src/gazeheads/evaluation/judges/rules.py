"""The rules every judge shares (docs/method.md): junk answers and answers that repeat the baseline.

Both are decided from the text alone, before any judge is asked, so they cost nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

BASELINE_JACCARD = 0.85  # answers at least this similar to the unsteered answer are misses


def normalize(text: str) -> str:
    """Lowercase, punctuation to spaces, single spaces: 'Red-Circle!' -> 'red circle'."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def words(text: str) -> list[str]:
    """The normalised words of `text`."""
    return normalize(text).split()


def word_jaccard(a: str, b: str) -> float:
    """|A & B| / |A | B| over the sets of normalised words; two empty texts count as identical."""
    wa, wb = set(words(a)), set(words(b))
    if not wa and not wb:
        return 1.0
    return len(wa & wb) / len(wa | wb)


def junk_reason(
    text: str,
    *,
    max_word_share: float = 0.5,
    min_words: int = 6,
    min_distinct_ratio: float = 0.25,
    min_words_distinct: int = 12,
) -> str | None:
    """Why `text` is junk, or None.

    Junk: empty; no word with a letter; one word more than `max_word_share` of at least
    `min_words` words; or a loop (fewer than `min_distinct_ratio` distinct words among at
    least `min_words_distinct`).
    """
    ws = words(text)
    if not ws:
        return "empty"
    if not any(ch.isalpha() for w in ws for ch in w):
        return "no alphabetic word"
    if len(ws) >= min_words and Counter(ws).most_common(1)[0][1] > max_word_share * len(ws):
        return "repetition"
    if len(ws) >= min_words_distinct and len(set(ws)) < min_distinct_ratio * len(ws):
        return "repetition"
    return None
