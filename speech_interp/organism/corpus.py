"""Training and evaluation sequences: sentences rendered as text, speech or interleaved prompts.

Sequences go through :func:`speech_interp.speech.build_prompt`, the same code path users run on
SIMS, so markers, word positions and unit tokens are laid out exactly as the analyses expect.

Data mixes (share of sequences), the paper's data knob: ``interleaved`` 30% speech-only, 15%
text-only, 55% interleaved; ``separate`` (speech and text, balanced, never in one sequence) 50%
speech-only, 50% text-only; ``speech-only`` 100% speech; ``text`` (the text stage). Interleaved
sequences switch at word boundaries: 60% speak a prefix through a content word and continue in
text (the switch the fact probes use), 40% alternate random 1-3 word segments. A sentence stating
a fact of a text-only entity (:data:`~speech_interp.organism.world.TEXT_ONLY_ENTITIES`) is always
text-only; the speech-only mix, which has no text, draws another sentence instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from speech_interp.data.prompt import Prompt, build_prompt
from speech_interp.hooks import TokenLayout

from .grammar import Sentence, sample_sentence
from .world import V2

MIXES = {
    "interleaved": {"speech": 0.30, "text": 0.15, "interleaved": 0.55},
    "separate": {"speech": 0.50, "text": 0.50, "interleaved": 0.0},
    "speech-only": {"speech": 1.0, "text": 0.0, "interleaved": 0.0},
    "text": {"speech": 0.0, "text": 1.0, "interleaved": 0.0},
}


def interleave_pattern(words: list[str], rng: np.random.Generator, world=V2) -> list[str]:
    """Per-word modality for an interleaved sequence (see module docstring)."""
    n = len(words)
    content = [i for i, w in enumerate(words[:-1]) if world.is_content(w)]
    if content and rng.random() < 0.6:
        cut = content[rng.integers(len(content))]
        return ["speech"] * (cut + 1) + ["text"] * (n - cut - 1)
    mods, current = [], "speech" if rng.random() < 0.5 else "text"
    while len(mods) < n:
        mods += [current] * int(rng.integers(1, 4))
        current = "text" if current == "speech" else "speech"
    return mods[:n]


@dataclass
class Sequence:
    prompt: Prompt
    kind: str
    words: list[str]


class SequenceSampler:
    """Samples rendered training sequences for one modality mix, reproducibly from a seed."""

    def __init__(
        self,
        layout: TokenLayout,
        tokenizer,
        units: dict[str, dict[str, list[int]]],
        voices: list[str],
        mix: str,
        seed: int,
        exclude: set[str] = frozenset(),
        grammar: dict | None = None,
    ):
        self.layout, self.tok, self.units, self.voices = layout, tokenizer, units, voices
        self.mix = MIXES[mix]
        self.rng = np.random.default_rng(seed)
        self.exclude = exclude
        self.grammar = grammar or {}  # keyword settings of grammar.sample_sentence (its world)
        self.world = self.grammar.get("world", V2)

    def modality(self, sentence: Sentence) -> list[str]:
        words = sentence.words
        if sentence.text_only:
            return ["text"] * len(words)
        names = list(self.mix)
        pick = names[self.rng.choice(len(names), p=[self.mix[k] for k in names])]
        if pick == "interleaved":
            return interleave_pattern(words, self.rng, self.world)
        return [pick] * len(words)

    def sample(self) -> Sequence:
        while True:
            sentence = sample_sentence(self.rng, **self.grammar)
            if sentence.text_only and self.mix["text"] == 0:
                continue  # no text in this mix: a text-only fact cannot be said
            if sentence.kind == "fact" or " ".join(sentence.words) not in self.exclude:
                break
        kind, words = sentence.kind, sentence.words
        mods = self.modality(sentence)
        markers = self.mix is not MIXES["text"]  # text pretraining predates the markers
        prompt = render(self.layout, self.tok, words, mods, self.units, self._voice(), markers)
        return Sequence(prompt, kind, words)

    def _voice(self) -> str:
        return self.voices[self.rng.integers(len(self.voices))]


def render(layout, tokenizer, words, modalities, units, voice, markers=True) -> Prompt:
    """A sentence as a prompt: spoken words take their units in ``voice``."""
    word_units = [
        units[voice][w] if m == "speech" else None for w, m in zip(words, modalities, strict=True)
    ]
    return build_prompt(layout, tokenizer, words, modalities, word_units, markers=markers)


def collate(prompts: list[Prompt], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on padding)."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p)] = p.input_ids
        mask[i, : len(p)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
