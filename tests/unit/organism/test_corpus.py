"""The organism's text and data mixes: facts fixed, no copy template, the knobs' mixes as stated."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from speech_interp.hooks import ORGANISM
from speech_interp.organism import ORGANISM_DIR
from speech_interp.organism.corpus import SequenceSampler
from speech_interp.organism.grammar import sample_sentence
from speech_interp.organism.lexicon import CATEGORIES, all_words, inventory_words
from speech_interp.organism.train import OrganismConfig, speech_table
from speech_interp.organism.world import FACTS, RELATIONS, TEXT_ONLY_ENTITIES, fact_clause


def test_every_fact_is_fixed_and_in_the_lexicon():
    words = set(all_words())
    for rel in RELATIONS:
        for entity in CATEGORIES[rel.subject]:
            clause = fact_clause(entity, rel)
            assert set(clause) <= words
            assert FACTS[(entity, rel.name)] in CATEGORIES[rel.value]
    assert set(all_words()) <= set(inventory_words())  # the shipped unit table covers them
    assert TEXT_ONLY_ENTITIES and TEXT_ONLY_ENTITIES < set(
        CATEGORIES["animal"] + CATEGORIES["person"]
    )


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
