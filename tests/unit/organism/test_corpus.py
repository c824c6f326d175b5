"""The organism's text and data mixes: facts fixed, no copy template, the knobs' mixes as stated."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from speech_interp.hooks import ORGANISM
from speech_interp.organism import ORGANISM_DIR
from speech_interp.organism.corpus import SequenceSampler
from speech_interp.organism.grammar import sample_sentence
from speech_interp.organism.lexicon import inventory_words
from speech_interp.organism.train import OrganismConfig, speech_table
from speech_interp.organism.world import (
    FACTS,
    RELATIONS,
    TEXT_ONLY_ENTITIES,
    V2,
    WORLDS,
    fact_clause,
    get_world,
)

CATEGORIES = V2.categories


@pytest.mark.parametrize("name", list(WORLDS))
def test_every_fact_is_fixed_and_in_the_lexicon(name):
    world = WORLDS[name]
    words = set(world.words)
    for rel in RELATIONS:
        for entity in world.categories[rel.subject]:
            clause = world.fact_clause(entity, rel)
            assert set(clause) <= words
            assert world.facts[(entity, rel.name)] in world.categories[rel.value]
    assert set(world.words) <= set(inventory_words())  # the shipped unit table covers them
    cats = world.categories
    assert world.text_only_entities and world.text_only_entities < set(
        cats["animal"] + cats["person"]
    )
    assert all(len(c) >= 2 for c in cats.values())  # every word has a same-category control


def test_worlds_are_sized_as_named_and_nested():
    for name in ("small-40", "small-80", "small-160"):
        assert len(WORLDS[name].content_words) == int(name.split("-")[1])
    small, mid = set(WORLDS["small-40"].words), set(WORLDS["small-80"].words)
    assert small < mid < set(WORLDS["small-160"].words)
    with pytest.raises(ValueError, match="unknown world 'tiny'"):
        get_world("tiny")


def test_a_small_world_samples_only_its_own_words():
    world = WORLDS["small-40"]
    rng = np.random.default_rng(0)
    seen = {w for _ in range(500) for w in sample_sentence(rng, world=world).words}
    assert seen <= set(world.words)
    assert set(world.content_words) <= seen  # every content word is drawn


def test_sentences_recur_words_only_by_mentioning_an_entity_again():
    rng = np.random.default_rng(0)
    sentences = [sample_sentence(rng) for _ in range(3000)]
    repeated = 0
    for s in sentences:
        content = [w for w in s.words if w in {x for c in CATEGORIES.values() for x in c}]
        dup = {w for w in content if content.count(w) > 1}
        repeated += bool(dup)
        for entity, name in s.facts:  # every stated fact is the world's fact
            rel = next(r for r in RELATIONS if r.name == name)
            clause = fact_clause(entity, rel)
            text = " ".join(s.words)
            assert " ".join(clause) in text
    # P_SECOND x P_SAME_ENTITY = 0.48 of sentences name their entity twice (plus chance repeats)
    assert 0.40 < repeated / len(sentences) < 0.60


@pytest.fixture(scope="module")
def sampler_parts():
    tok = AutoTokenizer.from_pretrained(ORGANISM_DIR / "full")
    layout = ORGANISM.bind(tok)
    table = speech_table(OrganismConfig(), 0, ORGANISM_DIR, progress=False)  # the shipped one
    return layout, tok, table.units


@pytest.mark.parametrize("mix", ["interleaved", "separate", "speech-only"])
def test_mixes_keep_text_only_facts_out_of_speech(sampler_parts, mix):
    layout, tok, units = sampler_parts
    sampler = SequenceSampler(layout, tok, units, ["us-140", "gb-175"], mix, seed=0)
    kinds = set()
    for _ in range(400):
        seq = sampler.sample()
        mods = set(seq.prompt.word_modalities)
        kinds.add(frozenset(mods))
        said = {(e, n) for e, n in sample_facts(seq.words)}
        if said & {(e, n) for e, n in FACTS if e in TEXT_ONLY_ENTITIES}:
            assert mods == {"text"}, seq.words
    if mix == "speech-only":
        assert kinds == {frozenset({"speech"})}
    if mix == "separate":
        assert kinds == {frozenset({"speech"}), frozenset({"text"})}
    if mix == "interleaved":
        assert frozenset({"speech", "text"}) in kinds


def sample_facts(words: list[str]):
    """(entity, relation) of every fact clause found in a word list."""
    text = " ".join(words)
    for (entity, name), _ in FACTS.items():
        rel = next(r for r in RELATIONS if r.name == name)
        if " ".join(fact_clause(entity, rel)) in text:
            yield entity, name


def test_recurrence_counts_only_a_spoken_words_own_text(sampler_parts):
    from speech_interp.organism.recurrence import recurrence_rates

    layout, tok, units = sampler_parts
    voices = ["us-140", "gb-175"]

    def rates(mix, **grammar):
        sampler = SequenceSampler(layout, tok, units, voices, mix, seed=0, grammar=grammar)
        return recurrence_rates(sampler, n=300)

    assert rates("separate")["share_of_sequences"] == 0.0  # never both modalities at once
    assert rates("interleaved", p_second=0.0)["share_of_spoken_words"] == 0.0  # one clause
    default = rates("interleaved")
    assert 0.0 < default["share_of_spoken_words"] < 1.0
    assert 0.0 < default["share_of_sequences"] < 1.0
