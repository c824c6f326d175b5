"""How often a spoken word's own text appears in the same training sequence.

No template teaches transcription, but words recur within a sentence as in natural text (an
entity named twice), so a spoken word is sometimes followed, or preceded, by its own text. This
counts it on sequences drawn exactly as training draws them.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from .corpus import SequenceSampler


def recurrence_rates(sampler: SequenceSampler, n: int = 5000) -> dict[str, float]:
    """Over ``n`` sampled sequences: the share of sequences with a spoken content word whose text
    also appears in the sequence, and the share of spoken content-word occurrences whose text
    appears (before or after it); and how often each content word is spoken (the fewest, the
    median and the most occurrences per word type)."""
    with_any, spoken, matched = 0, 0, 0
    per_word = Counter({w: 0 for w in sampler.world.content_words})
    for _ in range(n):
        seq = sampler.sample()
        pairs = list(zip(seq.words, seq.prompt.word_modalities, strict=True))
        texts = {w for w, m in pairs if m == "text"}
        said = [w for w, m in pairs if m == "speech" and sampler.world.is_content(w)]
        per_word.update(said)
        hits = [w in texts for w in said]
        spoken += len(hits)
        matched += sum(hits)
        with_any += any(hits)
    return {
        "sequences": n,
        "share_of_sequences": with_any / n,
        "spoken_words": spoken,
        "share_of_spoken_words": matched / spoken if spoken else 0.0,
        "spoken_per_word_min": min(per_word.values()),
        "spoken_per_word_median": float(np.median(list(per_word.values()))),
        "spoken_per_word_max": max(per_word.values()),
    }
