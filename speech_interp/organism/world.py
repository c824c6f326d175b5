"""The organism's world knowledge: fixed facts about its entities, learned from text.

Every animal has a home (a place), a food and a colour; every person a workplace (a place) and a
tool (an object); every object a place it is near; every food a colour. A fact is said in one
clause ("the otter lives in the harbor"). Values are drawn once with a fixed generator, so the
facts are the same for every training seed. The facts of odd-indexed animals and persons are
only ever seen in text during training (:data:`TEXT_ONLY_ENTITIES`): recalling them from a
spoken entity needs knowledge to cross from text to speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .lexicon import CATEGORIES


@dataclass(frozen=True)
class Relation:
    """A clause ``the <subject> <words...> <value>``; ``value`` is a category."""

    name: str
    subject: str
    words: tuple[str, ...]
    value: str


RELATIONS: tuple[Relation, ...] = (
    Relation("home", "animal", ("lives", "in", "the"), "place"),
    Relation("food", "animal", ("eats", "the"), "food"),
    Relation("color", "animal", ("is",), "color"),
    Relation("workplace", "person", ("works", "in", "the"), "place"),
    Relation("tool", "person", ("holds", "the"), "object"),
    Relation("spot", "object", ("is", "near", "the"), "place"),
    Relation("food_color", "food", ("is",), "color"),
)
ENTITY_CATEGORIES = ("animal", "person", "object", "food")


def _draw_facts() -> dict[tuple[str, str], str]:
    rng = np.random.default_rng(20261128)
    facts = {}
    for rel in RELATIONS:
        values = CATEGORIES[rel.value]
        for entity in CATEGORIES[rel.subject]:
            facts[(entity, rel.name)] = values[rng.integers(len(values))]
    return facts


FACTS: dict[tuple[str, str], str] = _draw_facts()
TEXT_ONLY_ENTITIES: frozenset[str] = frozenset(
    CATEGORIES["animal"][1::2] + CATEGORIES["person"][1::2]
)


def relations_of(category: str) -> tuple[Relation, ...]:
    return tuple(r for r in RELATIONS if r.subject == category)


def fact_clause(entity: str, relation: Relation) -> list[str]:
    """``the <entity> <relation words> <value>``."""
    return ["the", entity, *relation.words, FACTS[(entity, relation.name)]]


def all_fact_clauses() -> list[tuple[str, Relation, list[str]]]:
    """(entity, relation, words) of every fact, in a fixed order."""
    return [(e, r, fact_clause(e, r)) for r in RELATIONS for e in CATEGORIES[r.subject]]
