"""Target-token rule and matched-control rule on a tiny tokenizer."""

import pytest

from speech_interp.data import Utterance, Word
from speech_interp.data.targets import TargetResolver, draw_controls
from speech_interp.hooks import get_family
from speech_interp.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def resolver():
    tok = tiny_tokenizer("sims")
    return TargetResolver(tok, get_family("sims").bind(tok))


def test_target_rules(resolver):
    tok = resolver.tokenizer
    cat = resolver("cat")
    assert (cat.rule, cat.token_id) == ("single", tok.encode(" cat")[0])
    upper = resolver("Cat")  # " Cat" is three tokens; the vocabulary spells " cat"
    assert (upper.rule, upper.token_id) == ("vocab", cat.token_id)
    zebra = resolver("zebra")  # not a token: first non-whitespace sub-token
    assert zebra.rule == "first" and tok.decode([zebra.token_id]).strip() == "z"
    for word in ("<Un3>", "<speech>", "<s>"):  # unit, marker, special: not text
        assert resolver(word).rule == "missing" and not resolver(word).found


def _utt(uid, *words):
    return Utterance(uid, tuple(Word(w, "speech", (1,), c, content) for w, c, content in words))


def test_controls_same_category_and_seeded(resolver):
    utts = [
        _utt("a", ("the", "det", False), ("cat", "noun", True), ("sees", "verb", True)),
        _utt("b", ("a", "det", False), ("dog", "noun", True), ("eats", "verb", True)),
        _utt("c", ("the", "det", False), ("bird", "noun", True), ("lake", None, True)),
    ]
    controls = draw_controls(utts, resolver, seed=0)
    assert controls == draw_controls(utts, resolver, seed=0)
    nouns = {"cat", "dog", "bird"}
    for utt, row in zip(utts, controls, strict=True):
        for word, ctrl in zip(utt.words, row, strict=True):
            assert ctrl.word is not None and ctrl.word.lower() != word.word.lower()
            if word.category == "noun":
                assert ctrl.rule == "category" and ctrl.word in nouns
            if word.category is None:
                assert ctrl.rule == "frequency"


def test_controls_match_frequency_within_category(resolver):
    # "cat" occurs 4 times, "dog" 4, "bird" 1, "fish" 1: with n_nearest=1 each noun's pool is
    # the noun nearest its own count
    counts = {"cat": 4, "dog": 4, "bird": 1, "fish": 1}
    utts = [_utt(f"{w}{i}", (w, "noun", True)) for w, n in counts.items() for i in range(n)]
    controls = draw_controls(utts, resolver, seed=3, n_nearest=1)
    partner = {"cat": "dog", "dog": "cat", "bird": "fish", "fish": "bird"}
    for utt, (ctrl,) in zip(utts, controls, strict=True):
        word = utt.words[0].word
        assert ctrl.rule == "category" and ctrl.word == partner[word]
        assert [m[0] for m in ctrl.pool] == [partner[word]]
        assert ctrl.pool[0][1] == resolver(partner[word])
    wide = draw_controls(utts, resolver, seed=3)  # n_nearest=5: the whole category
    assert {m[0] for m in wide[0][0].pool} == {"dog", "bird", "fish"}
    assert wide[0][0].word in {"dog", "bird", "fish"}


def test_control_fallbacks(resolver):
    single = [_utt("a", ("cat", "noun", True), ("cat", "noun", True))]
    assert {c.rule for c in draw_controls(single, resolver)[0]} == {"none"}
    lonely = [_utt("a", ("cat", "noun", True), ("sees", "verb", True), ("sees", "verb", True))]
    ctrl = draw_controls(lonely, resolver)[0][0]  # the only noun: frequency-matched fallback
    assert ctrl.rule == "frequency" and ctrl.word == "sees"


def test_sentencepiece_style_tokenizer():
    """Llama-2 / SpiritLM style: a Metaspace ("▁") tokenizer with an unknown token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="always")
    backend.decoder = decoders.Metaspace(prepend_scheme="always")
    trainer = trainers.BpeTrainer(special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    backend.train_from_iterator(["the a cat dog house"] * 3, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    tok.add_tokens([f"[Hu{i}]" for i in range(501)] + ["[Text]", "[Speech]"])
    resolver = TargetResolver(tok, get_family("spiritlm").bind(tok))
    cat = resolver("cat")
    assert cat.rule == "single" and tok.convert_ids_to_tokens(cat.token_id) == "▁cat"
    assert resolver("CAT").token_id == cat.token_id and resolver("CAT").rule == "vocab"
    assert resolver("zebra").rule == "missing"  # " zebra" starts with <unk>
    assert resolver("[Hu3]").rule == "missing"
