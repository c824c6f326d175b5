"""Small hand-made spoken utterances for the causal-test suites (two voices, categories)."""

from __future__ import annotations

import random

from speech_interp.data import Utterance, Word

CATEGORY = {
    "the": "det",
    "a": "det",
    "cat": "noun",
    "dog": "noun",
    "bird": "noun",
    "fish": "noun",
    "sees": "verb",
    "eats": "verb",
    "big": "adj",
    "small": "adj",
    "red": "adj",
    "in": "prep",
    "park": "noun",
    "river": "noun",
}
SENTENCES = [
    ("v1", "the big cat sees the dog", ()),
    ("v1", "a small bird eats the fish", ()),
    ("v1", "the red fish sees a cat", (5,)),
    ("v2", "the red dog sees a bird", ()),
    ("v2", "a big fish eats the cat", (4,)),
    ("v2", "the small cat eats a fish", ()),
]


def units(voice: str, word: str) -> tuple[int, ...]:
    """The same word in the same voice always has the same units; longer words have more."""
    rng = random.Random(f"{voice}/{word}")
    return tuple(rng.randrange(500) for _ in range(len(word) // 2 + 1))


def utterance(i: int, voice: str, text: str, text_words=()) -> Utterance:
    words = []
    for j, w in enumerate(text.split()):
        spoken = j not in text_words
        cat = CATEGORY[w]
        words.append(
            Word(
                w,
                "speech" if spoken else "text",
                units(voice, w) if spoken else None,
                cat,
                cat not in ("det", "prep"),
            )
        )
    return Utterance(f"u{i}", tuple(words), voice)


def causal_utterances() -> list[Utterance]:
    return [utterance(i, v, t, tw) for i, (v, t, tw) in enumerate(SENTENCES)]
