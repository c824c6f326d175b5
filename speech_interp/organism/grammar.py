"""The organism's text: one or two clauses per sentence, about entities that have facts.

A clause is a **fact** ("the otter lives in the harbor", :mod:`world`) or a **general** clause
whose slots are filled uniformly ("emma saw the otter near the cave"), so in general clauses a
word's identity is unpredictable while its category is (every lens claim is made against a
same-category control word). A second clause follows with probability ``P_SECOND`` ("... and
..."), about the same entity with probability ``P_SAME_ENTITY``: words recur within a sentence as
they do in natural text, and nothing else repeats a word (no copy or transcription template).
Every function takes the :class:`~speech_interp.organism.world.World` it draws from (v2 by
default).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import ENTITY_CATEGORIES, V2, World, relations_of

P_FACT = 0.5  # share of clauses that state a fact
P_SECOND = 0.6  # share of sentences with a second clause
P_SAME_ENTITY = 0.8  # share of second clauses about the first clause's entity
ACTORS = ("animal", "person")

# General clauses: "E" is the entity slot, other capitals are category slots.
GENERAL: dict[str, tuple[str, ...]] = {
    "saw": ("NAME", "saw", "the", "E"),
    "saw_near": ("NAME", "saw", "the", "E", "near", "the", "PLACE"),
    "acts": ("the", "ADJECTIVE", "E", "VERB_I"),
    "does": ("NAME", "VERB_T", "the", "E"),
}
_ACTOR_ONLY = {"acts"}


@dataclass(frozen=True)
class Sentence:
    kind: str  # "fact" (one fact clause), "general" (anything else)
    words: list[str]
    facts: tuple[tuple[str, str], ...]  # (entity, relation) of every fact clause
    text_only: bool = False  # states a fact of a text-only entity (never spoken in training)


def _pick(rng: np.random.Generator, options):
    return options[int(rng.integers(len(options)))]


def _entity(rng: np.random.Generator, world: World) -> str:
    return _pick(rng, world.categories[_pick(rng, ENTITY_CATEGORIES)])


def clause(
    rng: np.random.Generator, entity: str, p_fact: float, world: World = V2
) -> tuple[list[str], tuple]:
    """A fact or a general clause about ``entity``: (words, facts stated)."""
    category = world.entity_category(entity)
    if rng.random() < p_fact:
        relation = _pick(rng, relations_of(category))
        return world.fact_clause(entity, relation), ((entity, relation.name),)
    names = [n for n in GENERAL if category in ACTORS or n not in _ACTOR_ONLY]
    words = []
    for slot in GENERAL[_pick(rng, names)]:
        if slot == "E":
            words.append(entity)
        elif slot.isupper():
            words.append(_pick(rng, world.categories[slot.lower()]))
        else:
            words.append(slot)
    return words, ()


def sentence_of(world: World, kind: str, words: list[str], facts: tuple) -> Sentence:
    """A :class:`Sentence`, text-only when it states a fact of a text-only entity."""
    text_only = any(e in world.text_only_entities for e, _ in facts)
    return Sentence(kind, words, facts, text_only)


def sample_sentence(
    rng: np.random.Generator,
    *,
    p_fact: float = P_FACT,
    p_second: float = P_SECOND,
    p_same_entity: float = P_SAME_ENTITY,
    world: World = V2,
) -> Sentence:
    """One or two clauses (see the module docstring)."""
    entity = _entity(rng, world)
    words, facts = clause(rng, entity, p_fact, world)
    if rng.random() >= p_second:
        return sentence_of(world, "fact" if facts else "general", words, facts)
    second = entity if rng.random() < p_same_entity else _entity(rng, world)
    more, more_facts = clause(rng, second, p_fact, world)
    return sentence_of(world, "general", [*words, "and", *more], facts + more_facts)
