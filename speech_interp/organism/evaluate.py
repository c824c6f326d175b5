"""Behavioural evaluation of an organism: held-out loss, fact recall, transfer.

All probes use held-out material (:mod:`evalset`) in training voices (the mechanism) and, reported
apart, in held-out voices (acoustic generalisation). A probe prompt ends with a switch to text
(``<text>``) and is scored by the model's top-1 / top-5 next token; every accuracy comes with a
bootstrap 95% CI over items.

- fact: every fact clause of :mod:`world` without its value: all spoken (``fact_speech``, then the
  text marker), "the E" spoken and the relation words in text (``fact_noun_spoken``, the spoken
  knowledge probe), or all text (``fact_text``): is the next token the fact's value? Split by
  facts seen in speech during training vs facts of text-only entities (only ever seen in text);
  CIs resample entities (an entity's facts move together).
  fact_noun_spoken switches modality where training's interleaved sequences most often do (right
  after a spoken content word).
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
from .voices import HELDOUT_VOICES, TRAIN_VOICES
from .world import V2, World


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


def _row(
    probe: str, voices: str, hits: np.ndarray, k: int, chance: float, seed: int, clusters=None
) -> dict:
    mean, lo, hi = bootstrap_ci(hits, seed=seed, clusters=clusters)
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


def _chance(u: Utterance, world: World) -> float:
    """1 / the number of values the fact's relation can take."""
    return 1.0 / len(world.categories[u.words[-1].category])


FACT_PROBES = ("fact_speech", "fact_noun_spoken", "fact_text")
# The spoken-knowledge probe: facts only ever seen in text, recalled from a spoken entity.
SPOKEN_KNOWLEDGE = "fact_noun_spoken/text_only_fact"


def fact_recall(
    model, tok, layout, facts: list[Utterance], split: str, seed: int, world: World = V2
) -> list[dict]:
    """Top-1 recall of each fact's value under every fact probe, split by seen in speech vs
    text-only entity; CIs resample entities."""
    rows = []
    for probe in FACT_PROBES:
        if not facts or (probe == "fact_text" and split == "heldout_voice"):
            continue
        prompts = []
        for u in facts:
            n = len(u.words) - 1
            spoken = {"fact_speech": n, "fact_noun_spoken": 2, "fact_text": 0}[probe]
            prompts.append(
                _prompt(layout, tok, u, n, ["speech"] * spoken + ["text"] * (n - spoken))
            )
        logits = next_token_logits(model, prompts, tok.pad_token_id)
        hits = _accuracy(logits, [word_token(tok, u.words[-1].word) for u in facts], 1)
        only_text = np.array([bool(u.meta.get("text_only")) for u in facts])
        chance = np.array([_chance(u, world) for u in facts])
        entity = np.array([u.words[1].word for u in facts])
        for name, sel in (("seen_in_speech", ~only_text), ("text_only_fact", only_text)):
            if sel.any():
                rows.append(_row(f"{probe}/{name}", split, hits[sel], 1,
                                 float(chance[sel].mean()), seed, entity[sel]))  # fmt: skip
    return rows


def probe_accuracies(
    model, tok, layout, utterances: list[Utterance], seed: int, world: World = V2
) -> pd.DataFrame:
    """Fact recall and transfer accuracies with bootstrap CIs, per voice group."""
    pad = tok.pad_token_id
    rows = []
    for split in ("eval", "heldout_voice"):
        group = [u for u in utterances if u.split == split]
        facts = [u for u in group if u.meta.get("kind") == "fact"]
        rows += fact_recall(model, tok, layout, facts, split, seed, world)
        general = [u for u in group if u.meta.get("kind") != "fact"]
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


def eval_utterances(units, n_eval: int, world: World = V2) -> list[Utterance]:
    """The held-out evaluation set as fully spoken utterances, training and held-out voices."""
    out = []
    sentences = eval_sentences(n_eval, world=world)
    cat = world.category_of
    for split, voices in (("eval", TRAIN_VOICES), ("heldout_voice", HELDOUT_VOICES)):
        for i, sentence in enumerate(sentences):
            voice = voices[i % len(voices)].name
            ws = tuple(
                Word(w, "speech", tuple(units[voice][w]), cat[w], cat[w] != "function")
                for w in sentence.words
            )
            meta = {"kind": sentence.kind}
            if sentence.kind == "fact":
                ((entity, relation),) = sentence.facts
                meta |= {SEEN: True, "relation": relation, "text_only": sentence.text_only}
            out.append(Utterance(f"{split}-{i:04d}", ws, voice, split, meta))
    return out
