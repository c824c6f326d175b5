"""Word forms for text validation: split words spell the same text, non-words hide the word."""

import pytest
from transformers import AutoTokenizer

from speech_interp.hooks import ORGANISM
from speech_interp.lens.current import written_words
from speech_interp.lens.word_forms import (
    PIECES,
    nonword,
    nonword_words,
    split_pieces,
    split_words,
)
from speech_interp.organism import ORGANISM_DIR

SENTENCES = [
    ["the", "farmer", "lives", "in", "the", "kitchen"],
    ["a", "teacher", "eats", "the", "apple"],
    ["the", "baker", "saw", "a", "garden"],
]


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(ORGANISM_DIR / "v4-full")


@pytest.fixture(scope="module")
def layout(tok):
    return ORGANISM.bind(tok)


def _content(sentences):
    function = {"the", "a", "in", "saw", "eats", "lives"}
    return [[w not in function for w in s] for s in sentences]


def test_pieces_spell_the_token_and_are_vocabulary_tokens():
    vocab = {"Ġkit": 0, "Ġki": 1, "che": 2, "n": 3, "tchen": 4, "chen": 5, "t": 6, "Ġk": 7, "i": 8}
    got = split_pieces("Ġkitchen", vocab | {"Ġkitchen": 9}, seed=3)
    inverse = {v: k for k, v in vocab.items()}
    assert got is not None and len(got) in PIECES
    assert "".join(inverse[i] for i in got) == "Ġkitchen"
    assert split_pieces("Ġkitchen", vocab | {"Ġkitchen": 9}, seed=3) == got  # seeded
    assert split_pieces("Ġkitchen", {"Ġkitchen": 9}, seed=3) is None  # no pieces: no split


def test_split_words_write_the_same_text(tok, layout):
    written = written_words(layout, tok, SENTENCES, _content(SENTENCES))
    split, keep = split_words(tok, written, seed=0)
    assert len(split) > 0 and len(keep) == len(split)
    for i, orig in enumerate(keep):
        p, q = int(split.prompt_of[i]), int(written.prompt_of[orig])
        assert tok.decode(split.prompts[p]) == tok.decode(written.prompts[q])
        assert len(split.prompts[p]) > len(written.prompts[q])
        assert 2 <= int(split.n_tokens[i]) <= max(PIECES)
        assert int(split.target[i]) == int(written.target[orig])
        # the read position is the word's last piece: the text up to it ends with the word
        upto = tok.decode(split.prompts[p][: int(split.position[i]) + 1])
        assert upto.endswith(" " + split.words[i]) or upto.endswith(split.words[i])


def test_nonwords_are_other_orders_that_are_no_token(tok):
    for word in ("farmer", "kitchen", "garden"):
        got = nonword(word, tok, {"farmer", "kitchen", "garden"}, seed=0)
        assert got is not None and got != word and sorted(got) == sorted(word)
        assert len(tok.encode(" " + got, add_special_tokens=False)) > 1
    assert nonword("an", tok, set()) is None  # too short to hide


def test_nonword_reads_point_at_the_nonword_with_both_targets(tok, layout):
    original, own, swap = nonword_words(layout, tok, SENTENCES, _content(SENTENCES), seed=0)
    assert set(swap) <= {"farmer", "kitchen", "teacher", "apple", "baker", "garden"}
    assert len(original) == len(own) > 0
    for i in range(len(original)):
        word = original.words[i]
        text = tok.decode(original.prompts[int(original.prompt_of[i])])
        assert swap[word] in text and f" {word}" not in text
        # the target rule: the one token of " word", else its first non-whitespace sub-token
        ids = tok.encode(" " + word, add_special_tokens=False)
        first = next(t for t in ids if tok.convert_ids_to_tokens(t).lstrip("Ġ"))
        assert int(original.target[i]) == first
        assert int(own.position[i]) == int(original.position[i])
        assert int(own.target[i]) != int(original.target[i])


def test_a_text_only_layout_writes_words_without_markers(tok):
    """A text LM's layout (family "text", no modality markers) renders the words alone."""
    from speech_interp.hooks import TEXT

    layout = TEXT.bind(tok)
    written = written_words(layout, tok, SENTENCES)
    text = tok.decode(written.prompts[0], skip_special_tokens=True)
    assert text.strip() == " ".join(SENTENCES[0])
    assert len(written) == sum(len(s) - 1 for s in SENTENCES)  # the first word of each left out
