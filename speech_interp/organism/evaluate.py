"""Behavioural evaluation of an organism: held-out loss, copying, fact recall, transfer.

All probes use held-out material (:mod:`evalset`) in training voices (the mechanism) and, reported
apart, in held-out voices (acoustic generalisation). A probe prompt ends with a switch to text
(``<text>``) and is scored by the model's top-1 / top-5 next token; every accuracy comes with a
bootstrap 95% CI over items.

- copy: "i saw the N" spoken, then "yes the" in text: is the next token " N"?
- fact: "the A lives in the" spoken (``fact_speech``, then the text marker), "the A" spoken and
  "lives in the" in text (``fact_noun_spoken``), or all text (``fact_text``): is the next token
  the fact's place? Split by facts seen in speech during training vs facts only ever seen in
  text. Copy and fact_noun_spoken switch modality where training's interleaved sequences most
  often do (right after a spoken content word).
- held-out loss: mean token loss on the held-out sentences as text, speech, and interleaved
  (spoken through the first content word, then text).
- transfer: every prefix of a held-out sentence spoken, then text: is the next word in the top 5?
  (``transfer_speech``) vs the same prefix in text (``transfer_text``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from speech_interp.data.prompt import MARKER, Prompt, build_prompt
from speech_interp.data.utterances import SEEN, Utterance, Word
from speech_interp.stats import bootstrap_ci

from .corpus import collate
from .evalset import eval_sentences
from .grammar import NOUN
from .lexicon import FACTS, TEXT_ONLY_FACTS, category_of
from .voices import HELDOUT_VOICES, TRAIN_VOICES

_CATEGORY = category_of()


def word_token(tokenizer, word: str) -> int:
    return tokenizer.convert_tokens_to_ids("Ġ" + word)


@torch.no_grad()
def next_token_logits(model, prompts: list[Prompt], pad_id: int, batch: int = 64) -> torch.Tensor:
    """Logits of the token after each prompt's last position."""
    out = []
    for i in range(0, len(prompts), batch):
        chunk = prompts[i : i + batch]
        enc = collate(chunk, pad_id)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        last = torch.tensor([len(p) - 1 for p in chunk])
        out.append(logits[torch.arange(len(chunk)), last])
    return torch.cat(out)


@torch.no_grad()
def mean_token_loss(model, prompts: list[Prompt], pad_id: int, batch: int = 64) -> float:
    """Mean next-token cross-entropy over every predicted token of the prompts."""
    total, count = 0.0, 0
    for i in range(0, len(prompts), batch):
        enc = collate(prompts[i : i + batch], pad_id)
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
        labels = enc["labels"][:, 1:]
        loss = F.cross_entropy(
            logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
        )
        total += float(loss)
        count += int((labels != -100).sum())
    return total / count


def _prompt(layout, tok, utt: Utterance, n_words: int, mods: list[str], switch=True) -> Prompt:
    """A probe prompt from the first ``n_words`` of an utterance; ends with the ``<text>`` marker
    when ``switch`` and the last word is spoken."""
    words = [w.word for w in utt.words[:n_words]]
    units = [
        list(w.units) if m == "speech" else None for w, m in zip(utt.words, mods, strict=False)
    ]
    p = build_prompt(layout, tok, words, mods, units)
    if switch and mods[-1] == "speech":
        p = Prompt(
            torch.cat([p.input_ids, torch.tensor([layout.text_marker_id])]),
            p.words,
            p.word_modalities,
            p.word_positions,
            torch.cat([p.token_modality, torch.tensor([MARKER])]),
            torch.cat([p.token_word, torch.tensor([-1])]),
        )
    return p


def _accuracy(logits: torch.Tensor, targets: list[int], k: int) -> np.ndarray:
    top = logits.topk(k, dim=-1).indices
    return (top == torch.tensor(targets)[:, None]).any(-1).float().numpy()


def _row(probe: str, voices: str, hits: np.ndarray, k: int, chance: float, seed: int) -> dict:
    mean, lo, hi = bootstrap_ci(hits, seed=seed)
    return dict(probe=probe, voices=voices, k=k, value=mean, ci_low=lo, ci_high=hi,
                n=len(hits), chance=chance)  # fmt: skip


def switch_after_first_content(utt: Utterance) -> list[str]:
    """The interleaving pattern of the held-out loss: speak through the first content word."""
    first = next((i for i, w in enumerate(utt.words) if w.content), 0)
    return ["speech"] * (first + 1) + ["text"] * (len(utt.words) - first - 1)


def heldout_losses(model, tok, layout, utterances: list[Utterance]) -> pd.DataFrame:
    """Mean token loss per modality on the non-fact held-out sentences, per voice group."""
    rows = []
    for split in ("eval", "heldout_voice"):
        group = [u for u in utterances if u.split == split and u.meta.get("kind") != "fact"]
        for modality in ("text", "speech", "interleaved"):
            if modality == "text" and split == "heldout_voice":
                continue  # text does not depend on the voice
            prompts = []
            for u in group:
                mods = (
                    switch_after_first_content(u)
                    if modality == "interleaved"
                    else [modality] * len(u.words)
                )
                prompts.append(_prompt(layout, tok, u, len(u.words), mods, switch=False))
            loss = mean_token_loss(model, prompts, tok.pad_token_id)
            rows.append(dict(modality=modality, voices=split, loss=loss, n=len(prompts)))
    return pd.DataFrame(rows)


def probe_accuracies(model, tok, layout, utterances: list[Utterance], seed: int) -> pd.DataFrame:
    """Copy, fact recall and transfer accuracies with bootstrap CIs, per voice group."""
    pad = tok.pad_token_id
    places = sorted(set(FACTS.values()))
    rows = []
    for split in ("eval", "heldout_voice"):
        group = [u for u in utterances if u.split == split]
        copies = [u for u in group if u.meta.get("kind") == "copy"]
        if copies:
            mods = ["speech"] * 4 + ["text"] * 2  # "i saw the N" spoken, "yes the" in text
            prompts = [_prompt(layout, tok, u, 6, mods) for u in copies]
            logits = next_token_logits(model, prompts, pad)
            targets = [word_token(tok, u.words[3].word) for u in copies]
            rows.append(_row("copy", split, _accuracy(logits, targets, 1), 1, 1 / len(NOUN), seed))
        facts = [u for u in group if u.meta.get("kind") == "fact"]
        for probe, mods in (
            ("fact_speech", ["speech"] * 5),
            ("fact_noun_spoken", ["speech", "speech", "text", "text", "text"]),
            ("fact_text", ["text"] * 5),
        ):
            if not facts or (probe == "fact_text" and split == "heldout_voice"):
                continue
            logits = next_token_logits(
                model, [_prompt(layout, tok, u, 5, mods) for u in facts], pad
            )
            hits = _accuracy(logits, [word_token(tok, u.words[5].word) for u in facts], 1)
            only_text = np.array([u.words[1].word in TEXT_ONLY_FACTS for u in facts])
            for name, sel in (("seen_in_speech", ~only_text), ("text_only_fact", only_text)):
                rows.append(_row(f"{probe}/{name}", split, hits[sel], 1, 1 / len(places), seed))
        general = [u for u in group if u.meta.get("kind") not in ("fact", "copy")]
        for probe in ("transfer_speech", "transfer_text"):
            if probe == "transfer_text" and split == "heldout_voice":
                continue
            prompts, targets = [], []
            for u in general:
                for cut in range(1, len(u.words)):
                    mods = ["speech" if probe == "transfer_speech" else "text"] * cut
                    prompts.append(_prompt(layout, tok, u, cut, mods))
                    targets.append(word_token(tok, u.words[cut].word))
            logits = next_token_logits(model, prompts, pad)
            rows.append(_row(probe, split, _accuracy(logits, targets, 5), 5, float("nan"), seed))
    return pd.DataFrame(rows)


def eval_utterances(units, seed: int, n_eval: int) -> list[Utterance]:
    """The held-out evaluation set as fully spoken utterances, training and held-out voices."""
    out = []
    sentences = eval_sentences(n_eval, seed)
    for split, voices in (("eval", TRAIN_VOICES), ("heldout_voice", HELDOUT_VOICES)):
        for i, (kind, words) in enumerate(sentences):
            voice = voices[i % len(voices)].name
            ws = tuple(
                Word(w, "speech", tuple(units[voice][w]), _CATEGORY[w], _CATEGORY[w] != "function")
                for w in words
            )
            meta = {"kind": kind} | ({SEEN: True} if kind == "fact" else {})
            out.append(Utterance(f"{split}-{i:04d}", ws, voice, split, meta))
    return out
