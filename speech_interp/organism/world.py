"""The organism's worlds: which words it speaks and the fixed facts about its entities.

A :class:`World` takes the first words of each inventory category (:mod:`lexicon`) plus the
function words. Every animal has a home (a place), a food and a colour; every person a workplace
(a place) and a tool (an object); every object a place it is near; every food a colour. A fact is
said in one clause ("the otter lives in the harbor"). Values are drawn once with a fixed
generator, so a world's facts are the same for every training seed. The facts of odd-indexed
animals and persons are only ever seen in text during training (``text_only_entities``):
recalling them from a spoken entity needs knowledge to cross from text to speech.

``v2`` is the world of the shipped v2 organism (122 content words); ``small-40``, ``small-80`` and
``small-160`` are the worlds sized for hearing (organism v4: each content word is spoken far more
often in the same number of training sequences).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .lexicon import FUNCTION_WORDS, INVENTORY, LEXICON_SIZES


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
FACT_SEED = 20261128


@dataclass(frozen=True)
class World:
    """A lexicon (the first ``size`` words of each inventory category) and its facts."""

    name: str
    sizes: tuple[tuple[str, int], ...]  # (category, number of words), in a fixed order

    @cached_property
    def categories(self) -> dict[str, tuple[str, ...]]:
        return {c: INVENTORY[c][:n] for c, n in self.sizes}

    @cached_property
    def category_of(self) -> dict[str, str]:
        """word -> category ("function" for function words)."""
        table = {w: "function" for w in FUNCTION_WORDS}
        for cat, words in self.categories.items():
            for w in words:
                if w in table:
                    raise ValueError(f"word {w!r} is in two categories ({table[w]}, {cat})")
                table[w] = cat
        return table

    @property
    def words(self) -> list[str]:
        """Every word of the lexicon, in a fixed order."""
        return list(self.category_of)

    @property
    def content_words(self) -> list[str]:
        return [w for w, c in self.category_of.items() if c != "function"]

    def is_content(self, word: str) -> bool:
        return self.category_of[word] != "function"

    @cached_property
    def facts(self) -> dict[tuple[str, str], str]:
        """(entity, relation name) -> value, drawn once with a fixed generator."""
        rng = np.random.default_rng(FACT_SEED)
        out = {}
        for rel in RELATIONS:
            values = self.categories[rel.value]
            for entity in self.categories[rel.subject]:
                out[(entity, rel.name)] = values[rng.integers(len(values))]
        return out

    @cached_property
    def text_only_entities(self) -> frozenset[str]:
        return frozenset(self.categories["animal"][1::2] + self.categories["person"][1::2])

    def entity_category(self, word: str) -> str:
        return next(c for c in ENTITY_CATEGORIES if word in self.categories[c])

    def fact_clause(self, entity: str, relation: Relation) -> list[str]:
        """``the <entity> <relation words> <value>``."""
        return ["the", entity, *relation.words, self.facts[(entity, relation.name)]]

    def all_fact_clauses(self) -> list[tuple[str, Relation, list[str]]]:
        """(entity, relation, words) of every fact, in a fixed order."""
        return [
            (e, r, self.fact_clause(e, r)) for r in RELATIONS for e in self.categories[r.subject]
        ]


def _world(world_name: str, /, **sizes: int) -> World:
    return World(world_name, tuple(sizes.items()))


WORLDS: dict[str, World] = {
    w.name: w
    for w in (
        World("v2", tuple(LEXICON_SIZES.items())),
        _world("small-40", animal=8, person=4, object=4, food=4, place=5, color=4,
               adjective=3, verb_t=3, verb_i=3, name=2),
        _world("small-80", animal=16, person=8, object=8, food=8, place=10, color=6,
               adjective=6, verb_t=6, verb_i=6, name=6),
        _world("small-160", animal=32, person=16, object=16, food=16, place=20, color=10,
               adjective=14, verb_t=10, verb_i=12, name=14),
    )
}  # fmt: skip
V2 = WORLDS["v2"]


def get_world(name: str) -> World:
    """The world called ``name`` (a key of :data:`WORLDS`), with a clear error otherwise."""
    if name not in WORLDS:
        raise ValueError(f"unknown world {name!r}; choose from {', '.join(WORLDS)}")
    return WORLDS[name]


def world_of(model_dir) -> World:
    """The world an organism saved in ``model_dir`` was trained on (its ``organism.json``
    config; v2 for models trained before worlds were a setting)."""
    import json
    from pathlib import Path

    info = json.loads((Path(model_dir) / "organism.json").read_text())
    return get_world(info.get("config", {}).get("world", "v2"))


def organism_world(model_id: str) -> World:
    """The world of a model named as the CLI names it (``organism[:variant]`` or a saved
    organism directory); v2 for every other model."""
    from pathlib import Path

    from speech_interp.sources import resolve_source

    try:
        path = Path(resolve_source(model_id))
    except FileNotFoundError:
        return V2
    return world_of(path) if (path / "organism.json").is_file() else V2


def eval_data(world: World):
    """The shipped evaluation set of a world (held-out sentences spoken in every voice)."""
    from speech_interp.shipped import ORGANISM_DIR, SHIPPED_DATA

    return SHIPPED_DATA if world.name == "v2" else ORGANISM_DIR / f"eval-{world.name}.jsonl"


# The v2 world's tables, as module constants (what the shipped v2 organism was trained on).
FACTS: dict[tuple[str, str], str] = V2.facts
TEXT_ONLY_ENTITIES: frozenset[str] = V2.text_only_entities


def relations_of(category: str) -> tuple[Relation, ...]:
    return tuple(r for r in RELATIONS if r.subject == category)


def fact_clause(entity: str, relation: Relation) -> list[str]:
    """``the <entity> <relation words> <value>`` in the v2 world."""
    return V2.fact_clause(entity, relation)


def all_fact_clauses() -> list[tuple[str, Relation, list[str]]]:
    """(entity, relation, words) of every fact of the v2 world, in a fixed order."""
    return V2.all_fact_clauses()
