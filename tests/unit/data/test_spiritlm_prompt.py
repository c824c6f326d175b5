"""SpiritLM prompts are token for token what SpiritLM's own code gives: ``_build_prompt``'s string
tokenized whole by the slow LlamaTokenizer (each stretch of text between added tokens encoded by
SentencePiece on its own), on a tiny SentencePiece tokenizer with SpiritLM's added tokens."""

import re

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer

from speech_interp.data import build_prompt
from speech_interp.hooks import SpecError, get_family
from speech_interp.testing import save_tiny_spiritlm_tokenizer

CASES = {
    "speech-only": (["the", "cat", "sees"], ["speech"] * 3, [[3, 17], [88, 4, 4], [9]]),
    "text-only": (["the", "cat", "sees", "a", "dog"], ["text"] * 5, [None] * 5),
    "interleaved": (
        ["the", "cat", "sees", "a", "dog", "in", "park"],
        ["speech", "speech", "text", "text", "speech", "text", "text"],
        [[1, 2], [30, 499, 7], None, None, [0, 12], None, None],
    ),
    "text-first": (["a", "big", "fish"], ["text", "speech", "speech"], [None, [5], [6, 7]]),
}


def spiritlm_string(words, modalities, units) -> str:
    """SpiritLM's Spiritlm._build_prompt (prefix where the modality changes, contents joined
    with ""), text runs as the words joined by spaces, speech as [Hu{u}] per unit."""
    out, prev = [], None
    for w, m, u in zip(words, modalities, units, strict=True):
        if m != prev:
            out.append("[Speech]" if m == "speech" else "[Text]")
        elif m == "text":
            out.append(" ")
        out.append("".join(f"[Hu{x}]" for x in u) if m == "speech" else w)
        prev = m
    return "".join(out)


def slow_ids(model_file: str, tok, text: str) -> list[int]:
    """transformers 4's slow, legacy LlamaTokenizer: BOS, then the text cut at added tokens,
    each piece of plain text encoded by SentencePiece alone (with its dummy prefix)."""
    sp = spm.SentencePieceProcessor(model_file=model_file)
    ids = [tok.bos_token_id]
    for part in re.split(r"(\[(?:Text|Speech|Hu\d+|Pi\d+|St\d+)\])", text):
        if not part:
            continue
        if re.fullmatch(r"\[(?:Text|Speech|Hu\d+|Pi\d+|St\d+)\]", part):
            ids.append(tok.get_vocab()[part])
        else:
            ids += sp.encode(part)
    return ids


@pytest.fixture(scope="module", params=[True, None], ids=["legacy", "legacy-unset"])
def spiritlm_tok(request, tmp_path_factory):
    path = save_tiny_spiritlm_tokenizer(tmp_path_factory.mktemp("sp"), legacy=request.param)
    tok = AutoTokenizer.from_pretrained(path)
    return path, tok, get_family("spiritlm").bind(tok)


@pytest.mark.parametrize("case", CASES)
def test_prompt_ids_equal_spiritlm_string_path(spiritlm_tok, case):
    path, tok, layout = spiritlm_tok
    words, mods, units = CASES[case]
    prompt = build_prompt(layout, tok, words, mods, units)
    text = spiritlm_string(words, mods, units)
    assert prompt.input_ids.tolist() == slow_ids(str(path / "tokenizer.model"), tok, text)
    for i, (w, m) in enumerate(zip(words, mods, strict=True)):
        pos = prompt.word_positions[i]
        if m == "speech":
            assert prompt.input_ids[pos].tolist() == layout.units_to_tokens(units[i]).tolist()
        else:
            assert tok.decode(prompt.input_ids[pos]).strip() == w


def test_fast_tokenizer_agrees_only_when_legacy(tmp_path):
    """With legacy=True in the config the fast tokenizer gives the slow ids; with it unset
    (transformers 5 then reads legacy=False) text after an added token loses SentencePiece's
    dummy prefix, so the builder must not use the fast tokenizer (the slow one wins)."""
    for legacy, same in ((True, True), (None, False)):
        path = save_tiny_spiritlm_tokenizer(tmp_path / str(legacy), legacy=legacy)
        tok = AutoTokenizer.from_pretrained(path)
        words, mods, units = CASES["interleaved"]
        text = spiritlm_string(words, mods, units)
        slow = slow_ids(str(path / "tokenizer.model"), tok, text)
        assert (tok(text)["input_ids"] == slow) is same
        layout = get_family("spiritlm").bind(tok)
        assert build_prompt(layout, tok, words, mods, units).input_ids.tolist() == slow


def test_unit_500_is_rejected(spiritlm_tok):
    _, tok, layout = spiritlm_tok
    assert layout.n_units == 501
    with pytest.raises(SpecError, match="emits only units 0..499"):
        build_prompt(layout, tok, ["cat"], "speech", [[3, 500]])


def units_to_string(hubert: str, pitch: str, style: str) -> str:
    """SpiritLM's units_to_string for the expressive model (space-separated raw streams):
    style (1 Hz, no dedup), pitch (12.5 Hz, dedup), HuBERT (24.99 Hz, dedup), stable-sorted by
    index / rate."""

    def positions(toks, rate, dedup):
        out, prev = [], None
        for i, tok in enumerate(toks):
            if not dedup or tok != prev:
                out.append((tok, i / rate))
            prev = tok
        return out

    combined = positions([f"[St{i}]" for i in style.split()], 1, False)
    combined += positions([f"[Pi{i}]" for i in pitch.split()], 12.5, True)
    combined += positions([f"[Hu{i}]" for i in hubert.split()], 24.99, True)
    return "".join(tok for tok, _ in sorted(combined, key=lambda x: x[1]))


def test_expressive_prompt_equals_spiritlm(tmp_path):
    from speech_interp.data import ExpressiveStreams

    path = save_tiny_spiritlm_tokenizer(tmp_path, expressive=True)
    tok = AutoTokenizer.from_pretrained(path)
    layout = get_family("spiritlm-expressive").bind(tok)
    # Two spoken words over 30 raw HuBERT frames (1.2 s), then text, then one more spoken word.
    raw = [5, 5, 7, 7, 7, 2] + [9] * 20 + [3, 3, 4, 4]
    run1 = {"hubert": raw, "pitch": [3, 3, 4, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0], "style": [7, 7]}
    run2 = {"hubert": [11, 11, 12], "pitch": [6], "style": [9]}
    words = ["the", "cat", "sees", "a", "dog"]
    mods = ["speech", "speech", "text", "text", "speech"]
    units = [[5, 7], [2, 9, 3, 4], None, None, [11, 12]]
    frames = [[0, 2], [5, 6, 26, 28], None, None, [0, 2]]
    runs = [ExpressiveStreams(run1["pitch"], run1["style"]),
            ExpressiveStreams(run2["pitch"], run2["style"])]  # fmt: skip
    prompt = build_prompt(layout, tok, words, mods, units, unit_frames=frames, expressive=runs)

    def speech(run):
        return units_to_string(*(" ".join(map(str, run[k])) for k in ("hubert", "pitch", "style")))

    text = f"[Speech]{speech(run1)}[Text]sees a[Speech]{speech(run2)}"
    assert prompt.input_ids.tolist() == slow_ids(str(path / "tokenizer.model"), tok, text)
    for i in (0, 1, 4):  # word positions hold exactly the word's HuBERT tokens
        pos = prompt.word_positions[i]
        assert prompt.input_ids[pos].tolist() == layout.units_to_tokens(units[i]).tolist()
    with pytest.raises(ValueError, match="pitch rate must be positive"):
        build_prompt(layout, tok, words, mods, units, unit_frames=frames,
                     expressive=[ExpressiveStreams([1], [1], pitch_rate=0), runs[1]])  # fmt: skip
    with pytest.raises(ValueError, match="non-negative and in time order"):
        build_prompt(layout, tok, words, mods, units, unit_frames=[[0, -2], *frames[1:]],
                     expressive=runs)  # fmt: skip
    with pytest.raises(ValueError, match=r"need unit_frames\[0\]"):
        build_prompt(layout, tok, words, mods, units, expressive=runs)
    with pytest.raises(SpecError, match="pitch unit 64 is outside 0..63"):
        build_prompt(layout, tok, words, mods, units, unit_frames=frames,
                     expressive=[ExpressiveStreams([64], [1]), runs[1]])  # fmt: skip
