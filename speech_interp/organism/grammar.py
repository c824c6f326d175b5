"""A template grammar over the lexicon: sentences a next-word predictor can learn.

Each template is a list of slots: a literal word or a category name in capitals. Sentence
identity is not predictable from context (slots are filled uniformly), but categories are, which
is why every lens claim is made against a same-category control word.
"""

from __future__ import annotations

import numpy as np

from .lexicon import CATEGORIES, FACT_ANIMALS, FACTS

NOUN = CATEGORIES["animal"] + CATEGORIES["object"] + CATEGORIES["food"]
_SLOTS = {"NOUN": NOUN, **{k.upper(): v for k, v in CATEGORIES.items()}}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "transitive": ("the", "ADJECTIVE", "NOUN", "VERB_T", "the", "NOUN"),
    "near": ("NAME", "VERB_T", "a", "COLOR", "NOUN", "near", "the", "PLACE"),
    "property": ("the", "NOUN", "is", "very", "ADJECTIVE"),
    "activity": ("the", "PERSON", "VERB_I", "ADVERB", "in", "the", "PLACE"),
    "company": ("NAME", "and", "the", "PERSON", "VERB_I"),
    "count": ("NAME", "saw", "NUMBER", "COLOR", "NOUN"),
    "food": ("the", "ADJECTIVE", "PERSON", "VERB_T", "some", "FOOD"),
    "negation": ("this", "NOUN", "is", "not", "ADJECTIVE"),
    "habit": ("every", "PERSON", "then", "VERB_I", "ADVERB"),
    "under": ("the", "NOUN", "was", "under", "the", "OBJECT"),
    "again": ("it", "was", "so", "ADJECTIVE", "again"),
    "with": ("that", "PERSON", "VERB_I", "with", "a", "ANIMAL"),
    "on": ("the", "OBJECT", "is", "on", "the", "OBJECT"),
    "by": ("NAME", "VERB_T", "the", "NOUN", "by", "the", "PLACE"),
}
COPY_TEMPLATE = ("i", "saw", "the", "NOUN", "yes", "the", "=3")  # "=3": repeat slot 3


def fill(template: tuple[str, ...], rng: np.random.Generator) -> list[str]:
    """Fill a template's category slots uniformly at random."""
    words: list[str] = []
    for slot in template:
        if slot.startswith("="):
            words.append(words[int(slot[1:])])
        elif slot in _SLOTS:
            options = _SLOTS[slot]
            words.append(options[rng.integers(len(options))])
        else:
            words.append(slot)
    return words


def fact_sentence(animal: str) -> list[str]:
    return ["the", animal, "lives", "in", "the", FACTS[animal]]


def sample_sentence(
    rng: np.random.Generator, *, p_fact: float = 0.2, p_copy: float = 0.15
) -> tuple[str, list[str]]:
    """(kind, words): a fact, a copy sentence or a filled general template."""
    u = rng.random()
    if u < p_fact:
        return "fact", fact_sentence(FACT_ANIMALS[rng.integers(len(FACT_ANIMALS))])
    if u < p_fact + p_copy:
        return "copy", fill(COPY_TEMPLATE, rng)
    names = list(TEMPLATES)
    name = names[rng.integers(len(names))]
    return name, fill(TEMPLATES[name], rng)
