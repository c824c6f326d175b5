"""How often a spoken word's own text appears in the same training sequence.

No template teaches transcription, but words recur within a sentence as in natural text (an
entity named twice), so a spoken word is sometimes followed, or preceded, by its own text. This
counts it on sequences drawn exactly as training draws them.
"""

from __future__ import annotations

from .corpus import SequenceSampler, is_content


def recurrence_rates(sampler: SequenceSampler, n: int = 5000) -> dict[str, float]:
    """Over ``n`` sampled sequences: the share of sequences with a spoken content word whose text
    also appears in the sequence, and the share of spoken content-word occurrences whose text
    appears (before or after it)."""
    with_any, spoken, matched = 0, 0, 0
    for _ in range(n):
        seq = sampler.sample()
        pairs = list(zip(seq.words, seq.prompt.word_modalities, strict=True))
        texts = {w for w, m in pairs if m == "text"}
        hits = [w in texts for w, m in pairs if m == "speech" and is_content(w)]
        spoken += len(hits)
        matched += sum(hits)
        with_any += any(hits)
    return {
        "sequences": n,
        "share_of_sequences": with_any / n,
        "spoken_words": spoken,
        "share_of_spoken_words": matched / spoken if spoken else 0.0,
    }
