"""Tiny random speech-text LMs with the real vocabulary layouts, for tests and examples.

Nothing is downloaded: a byte-level BPE tokenizer over a small English vocabulary is extended with
a family's unit and marker tokens, and a 2-layer model of the chosen architecture is initialised at
random and saved with ``save_pretrained``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import (
    HeliumConfig,
    HeliumForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from speech_interp.data.utterances import Utterance, Word
from speech_interp.hooks import FAMILIES
from speech_interp.organism.tokenizer import word_bpe_tokenizer

TINY_WORDS = (
    "the a cat dog bird fish lives in house park river tree red blue big small sees eats "
    "and is on under near happy old young garden lake"
).split()


def _units_and_markers(spec) -> tuple[list[str], list[str]]:
    markers = set(spec.marker_tokens.values())
    units = [t for t in spec.added_tokens if t not in markers]
    return units, [t for t in spec.added_tokens if t in markers]


# Each family's unit and marker tokens, as its own tokenizer code adds them (hooks/), and a
# vocabulary with none ("text-only").
FAMILY_TOKENS = {
    name: _units_and_markers(spec) for name, spec in FAMILIES.items() if spec.added_tokens
} | {"text-only": ([], [])}

_ARCHS = {
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "llama": (LlamaConfig, LlamaForCausalLM),
    "helium": (HeliumConfig, HeliumForCausalLM),
}


def tiny_tokenizer(family: str = "sims", words=TINY_WORDS) -> PreTrainedTokenizerFast:
    """A small text tokenizer extended with ``family``'s speech and marker tokens."""
    if family not in FAMILY_TOKENS:
        raise ValueError(f"unknown family {family!r}; known: {', '.join(FAMILY_TOKENS)}")
    tok = word_bpe_tokenizer(words)
    units, markers = FAMILY_TOKENS[family]
    tok.add_tokens(units + markers)
    return tok


def tiny_model(
    arch: str = "qwen2",
    vocab_size: int = 600,
    *,
    n_layers: int = 2,
    d_model: int = 32,
    seed: int = 0,
    tie_embeddings: bool = False,
) -> torch.nn.Module:
    """A randomly initialised tiny causal LM of an HF architecture, in eval mode."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(_ARCHS)}")
    config_cls, model_cls = _ARCHS[arch]
    config = config_cls(
        vocab_size=vocab_size,
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=d_model // 4,
        max_position_embeddings=512,
        tie_word_embeddings=tie_embeddings,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=1,
    )
    torch.manual_seed(seed)
    return model_cls(config).eval()


def save_tiny_model(
    out_dir: str | Path, family: str = "sims", arch: str = "qwen2", *, seed: int = 0, **kw
) -> Path:
    """Save a tiny random model plus its family tokenizer with ``save_pretrained``."""
    out = Path(out_dir)
    tok = tiny_tokenizer(family)
    model = tiny_model(arch, vocab_size=len(tok), seed=seed, **kw)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def save_tiny_slamkit(
    out_dir: str | Path,
    arch: str = "qwen2",
    *,
    shards: int = 1,
    tie_embeddings: bool = False,
    base_model_name: str = "Qwen/Qwen2.5-0.5B",
    seed: int = 0,
) -> tuple[Path, Path, torch.nn.Module]:
    """A tiny checkpoint in slamkit's ``UnitLM`` save format (facts in speech_interp.hooks.sims).

    Written the way slamkit's ``save_pretrained`` leaves it: ``config.json`` with
    ``model_type: "speech_language_model"``, ``architectures: ["UnitLM"]``, the inner config
    under ``base_config`` (with the *base* vocabulary size, as slamkit's resize leaves it),
    ``base_model_name`` and the resized ``vocab_size``; the inner LM's weights under the prefix
    ``lm.`` (tied output weights left out), in one file or ``shards`` files with an index; no
    tokenizer. The base text tokenizer is saved beside it. Returns (checkpoint dir, base
    tokenizer dir, the inner model with the same weights).
    """
    from speech_interp.checkpoints import save_slamkit, slamkit_tokenizer

    out = Path(out_dir)
    ckpt, base_dir = out / "checkpoint", out / "base_tokenizer"
    base_tok = word_bpe_tokenizer(TINY_WORDS)
    base_tok.save_pretrained(base_dir)
    vocab = len(slamkit_tokenizer(base_tok))
    inner = tiny_model(arch, vocab_size=vocab, seed=seed, tie_embeddings=tie_embeddings)
    save_slamkit(
        inner, ckpt, base_vocab_size=len(base_tok), base_model_name=base_model_name, shards=shards
    )
    return ckpt, base_dir, inner


def save_tiny_spiritlm_tokenizer(
    out_dir: str | Path, *, expressive: bool = False, legacy: bool | None = True
) -> Path:
    """A SpiritLM-layout tokenizer directory: a tiny SentencePiece model trained here (BPE with
    byte fallback, dummy prefix, identity normalisation, as Llama-2's) saved as
    ``tokenizer.model``, and a ``tokenizer_config.json`` adding SpiritLM's tokens in its id order
    (``[Text]``, ``[Speech]``, ``[Hu0]``..``[Hu500]``, then for the expressive model
    ``[Pi0]``..``[Pi63]`` and ``[St0]``..``[St99]``), ``add_bos_token`` true, ``add_eos_token``
    false. ``legacy`` goes into the config as given (None: left out)."""
    import json
    import random

    import sentencepiece as spm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choices(TINY_WORDS, k=8)) for _ in range(300)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(out / "tokenizer"), vocab_size=400, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        add_dummy_prefix=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        split_digits=True, num_threads=1, minloglevel=2,
    )  # fmt: skip
    corpus.unlink()
    (out / "tokenizer.vocab").unlink()
    added = ["[Text]", "[Speech]"] + [f"[Hu{i}]" for i in range(501)]
    if expressive:
        added += [f"[Pi{i}]" for i in range(64)] + [f"[St{i}]" for i in range(100)]

    def entry(content, special):
        return {"content": content, "special": special, "lstrip": False, "rstrip": False,
                "normalized": not special, "single_word": False}  # fmt: skip

    decoder = {str(i): entry(t, True) for i, t in enumerate(["<unk>", "<s>", "</s>"])}
    decoder.update({str(400 + i): entry(t, False) for i, t in enumerate(added)})
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "added_tokens_decoder": decoder,
    }
    if legacy is not None:
        config["legacy"] = legacy
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


def tiny_prompt_ids(layout, tokenizer) -> torch.Tensor:
    """``[1, pos]`` ids of a short prompt that switches speech -> text -> speech."""
    from speech_interp.data.prompt import build_prompt

    return build_prompt(
        layout,
        tokenizer,
        ["the", "cat", "lives", "in", "park"],
        ["speech", "speech", "text", "text", "speech"],
        [[1, 4], [2, 3, 9], None, None, [7, 0]],
    ).input_ids[None]


# --------------------------------------------------------------------------- causal test data

CAUSAL_CATEGORY = {
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
CAUSAL_SENTENCES = [
    ("v1", "the big cat sees the dog", ()),
    ("v1", "a small bird eats the fish", ()),
    ("v1", "the red fish sees a cat", (5,)),
    ("v2", "the red dog sees a bird", ()),
    ("v2", "a big fish eats the cat", (4,)),
    ("v2", "the small cat eats a fish", ()),
]


def word_units(voice: str, word: str) -> tuple[int, ...]:
    """The same word in the same voice always has the same units; longer words have more."""
    rng = random.Random(f"{voice}/{word}")
    return tuple(rng.randrange(500) for _ in range(len(word) // 2 + 1))


def _causal_utterance(i: int, voice: str, text: str, text_words=()) -> Utterance:
    words = []
    for j, w in enumerate(text.split()):
        spoken = j not in text_words
        cat = CAUSAL_CATEGORY[w]
        words.append(
            Word(
                w,
                "speech" if spoken else "text",
                word_units(voice, w) if spoken else None,
                cat,
                cat not in ("det", "prep"),
            )
        )
    return Utterance(f"u{i}", tuple(words), voice)


def causal_utterances() -> list[Utterance]:
    """Six hand-made spoken utterances in two voices with categories (some words in text), for
    the causal tests: every noun, verb and adjective has same-voice, same-category partners."""
    return [_causal_utterance(i, v, t, tw) for i, (v, t, tw) in enumerate(CAUSAL_SENTENCES)]


# ----------------------------------------------------------------- a fact-set replica

REPLICA_LAYOUTS = ("timed", "swag")
REPLICA_VOICES = ("us-140", "gb-175", "us-155-p70")  # three renderings, as the paper's set


def replica_facts(n: int = 6) -> list[dict]:
    """``n`` facts from the organism's evaluation set (distinct fact sentences, the relations
    taken in turn): the prompt is the sentence without its last word, the correct completion
    that word, the counterfactual another value of the same relation (the j-th other one for
    the relation's j-th sentence), the category the relation. Words the organism knows, so its
    lens and its knowledge can be scored."""
    from speech_interp.data import read_utterances
    from speech_interp.organism import SHIPPED_DATA

    _, utterances = read_utterances(SHIPPED_DATA)
    facts, seen = [], set()
    for u in utterances:
        words = tuple(w.word for w in u.words)
        if u.meta.get("kind") == "fact" and words not in seen:
            seen.add(words)
            facts.append((u.meta.get("relation", "fact"), words))
    by_relation: dict[str, list[tuple[str, ...]]] = {}
    for relation, words in facts:
        by_relation.setdefault(relation, []).append(words)
    out, turn = [], 0
    queues = {r: list(enumerate(ws)) for r, ws in by_relation.items()}
    while len(out) < n and any(queues.values()):  # the relations in turn, each in file order
        relation = list(queues)[turn % len(queues)]
        turn += 1
        if not queues[relation]:
            continue
        j, words = queues[relation].pop(0)
        peers = [w[-1] for w in by_relation[relation] if w[-1] != words[-1]]
        if not peers:
            continue
        out.append({"id": f"fact-{len(out):03d}", "category": relation,
                    "prompt": " ".join(words[:-1]), "correct": words[-1],
                    "counterfactual": peers[j % len(peers)]})  # fmt: skip
    return out


def _spoken(words: Sequence[str], voice, workdir: Path, gap: float = 0.06):
    """``words`` in ``voice`` with ``gap`` s of silence between them
    (:func:`speech_interp.organism.voices.speak`) and their timings in sTinyStories' struct."""
    from speech_interp.organism.voices import speak

    wave, spans = speak(words, voice, workdir, gap)
    timed = [
        {"end_time": e, "start_time": s, "word": w} for w, (s, e) in zip(words, spans, strict=True)
    ]
    return wave, timed


def _audio_value(wave, name: str) -> dict:
    """An HF ``Audio`` value as ``datasets`` stores it in Parquet: WAV bytes and a path."""
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, wave.numpy(), 16000, format="WAV", subtype="PCM_16")
    return {"bytes": buf.getvalue(), "path": name}


def write_factset_replica(path: Path, *, n: int = 6, layout: str = "timed") -> Path:
    """A Parquet fact set with real espeak-ng audio in one of the lab's published layouts
    (:mod:`speech_interp.data.factset`): ``timed``, sTinyStories' timing struct (``id``,
    ``category``, ``prompt_text``, ``correct``, ``counterfactual``, one audio column per voice
    with its ``<audio>_aligned_text``); ``swag``, SpokenSwag's (``prompt_text``,
    ``chosen_text``, ``rejected_text``, audio ``prompt`` / ``chosen`` / ``rejected``, the
    prompt's timings in ``aligned_text``)."""
    import tempfile

    import pandas as pd

    from speech_interp.organism.voices import HELDOUT_VOICES, TRAIN_VOICES

    if layout not in REPLICA_LAYOUTS:
        raise ValueError(f"layout must be one of {REPLICA_LAYOUTS}, got {layout!r}")
    voices = {v.name: v for v in TRAIN_VOICES + HELDOUT_VOICES}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for fact in replica_facts(n):
            words = fact["prompt"].split()
            if layout == "timed":
                row = {"id": fact["id"], "category": fact["category"],
                       "prompt_text": fact["prompt"], "correct": fact["correct"],
                       "counterfactual": fact["counterfactual"]}  # fmt: skip
                for name in REPLICA_VOICES:
                    wave, spans = _spoken(words, voices[name], Path(tmp))
                    row[f"audio_{name}"] = _audio_value(wave, f"{fact['id']}_{name}.wav")
                    row[f"audio_{name}_aligned_text"] = spans
            else:
                voice = voices[REPLICA_VOICES[0]]
                wave, spans = _spoken(words, voice, Path(tmp))
                row = {"category": fact["category"], "prompt_text": fact["prompt"],
                       "chosen_text": fact["correct"], "rejected_text": fact["counterfactual"],
                       "prompt": _audio_value(wave, f"{fact['id']}_mutual.wav"),
                       "aligned_text": spans}  # fmt: skip
                for col, word in (
                    ("chosen", fact["correct"]),
                    ("rejected", fact["counterfactual"]),
                ):
                    row[col] = _audio_value(_spoken([word], voice, Path(tmp))[0], f"{col}.wav")
            rows.append(row)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)
    return path
