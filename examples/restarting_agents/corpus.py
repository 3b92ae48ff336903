"""The job's data: a deterministic corpus, its chunks, and an independent word count.

Nothing here touches the mailbox: the driver uses it to make the corpus and to check
the agents' result, the splitter to cut the corpus into chunks.
"""

from __future__ import annotations

import random
from collections import Counter

__all__ = ["chunk_lines", "count_words", "make_corpus"]

_SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "qu", "an", "el")


def make_corpus(seed: int, lines: int = 2000, words_per_line: int = 12) -> str:
    """A text of ``lines`` lines drawn from a small vocabulary; the same for the same seed.

    Word frequencies are skewed (a few words are common, most are rare), as in real text.
    """
    rng = random.Random(seed)
    vocabulary = sorted({_word(rng) for _ in range(400)})
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    rows = (" ".join(rng.choices(vocabulary, weights, k=rng.randint(1, words_per_line)))
            for _ in range(lines))
    return "\n".join(rows) + "\n"


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(1, 4)))


def chunk_lines(text: str, chunks: int, index: int) -> str:
    """Chunk ``index`` of ``chunks``: a run of whole lines; together they cover ``text``."""
    lines = text.splitlines()
    start, end = len(lines) * index // chunks, len(lines) * (index + 1) // chunks
    return "\n".join(lines[start:end])


def count_words(text: str) -> dict[str, int]:
    """Word -> occurrences, words split on whitespace."""
    return dict(Counter(text.split()))
