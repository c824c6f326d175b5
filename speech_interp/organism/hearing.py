"""Does an organism hear its content words? A recognition gate read from behaviour alone.

Nothing trains for it (no ASR or copy objective). In a held-out sentence a content word that is
named again later ("the otter sleeps and the otter eats the apple") gives a test: speak the
sentence through the word's first occurrence, continue in text up to the second, and ask how
likely the model finds the word's text token there, once after the real speech and once with the
word's speech replaced by a same-category control word's speech in the same voice. A model that
hears the word prefers it after its own speech; one that does not is indifferent (the control
shares the category, so the grammar predicts both alike).

The gate's rule, stated before any v4 model was trained (:data:`GATE_RULE`): the model **hears**
when, over the held-out sentences in training voices, the share of recurrences where the word's
text is more probable after its own speech than after the control's is at least
:data:`GATE_RATE`, with the lower end of its 95% CI (word types resampled) above 0.5 (chance).
Held-out voices are reported apart and do not decide it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch

from speech_interp.data.utterances import Utterance, Word
from speech_interp.stats import bootstrap_ci

from .evaluate import _prompt, next_token_logits, word_token
from .world import World

GATE_RATE = 0.75
GATE_RULE = (
    "hears: share of held-out recurrences (training voices) where the word's later text is more "
    f"probable after its own speech than after a same-category control's speech >= {GATE_RATE}, "
    "with the word-type 95% CI's lower end above 0.5"
)


@dataclass(frozen=True)
class Recurrence:
    """A content word spoken at ``first`` and named again at ``again`` in one utterance."""

    utterance: Utterance
    first: int
    again: int
    control: str  # a same-category word not in the utterance


def recurrences(utterances: list[Utterance], world: World, seed: int = 0) -> list[Recurrence]:
    """Every content word's first occurrence that recurs later in its (non-fact) utterance, with
    a control word drawn per item from the same category, absent from the utterance."""
    rng = np.random.default_rng(seed)
    out = []
    for u in utterances:
        if u.meta.get("kind") == "fact":
            continue
        words = [w.word for w in u.words]
        for i, w in enumerate(u.words):
            if not w.content or w.word in words[:i] or w.word not in words[i + 1 :]:
                continue
            j = words.index(w.word, i + 1)
            pool = [c for c in world.categories[w.category] if c not in words]
            if not pool:
                raise ValueError(f"no control word for {w.word!r} in {u.id}: category exhausted")
            out.append(Recurrence(u, i, j, pool[int(rng.integers(len(pool)))]))
    return out


def _swap(u: Utterance, i: int, word: str, units: dict[str, dict[str, list[int]]]) -> Utterance:
    """``u`` with word ``i``'s speech replaced by ``word``'s units in the same voice."""
    old = u.words[i]
    new = Word(word, "speech", tuple(units[u.voice][word]), old.category, old.content)
    return replace(u, words=u.words[:i] + (new,) + u.words[i + 1 :])


@torch.no_grad()
def recognition_scores(
    model, tok, layout, items: list[Recurrence], units: dict[str, dict[str, list[int]]]
) -> pd.DataFrame:
    """Per recurrence: the log-probability of the word's later text token after its own speech
    and after the control's speech (spoken through the first occurrence, then text)."""
    real, control = [], []
    for r in items:
        mods = ["speech"] * (r.first + 1) + ["text"] * (r.again - r.first - 1)
        real.append(_prompt(layout, tok, r.utterance, r.again, mods))
        swapped = _swap(r.utterance, r.first, r.control, units)
        control.append(_prompt(layout, tok, swapped, r.again, mods))
    targets = torch.tensor([word_token(tok, r.utterance.words[r.again].word) for r in items])
    rows = torch.arange(len(items))
    lp_real = next_token_logits(model, real, tok.pad_token_id).log_softmax(-1)[rows, targets]
    lp_ctrl = next_token_logits(model, control, tok.pad_token_id).log_softmax(-1)[rows, targets]
    return pd.DataFrame(
        {
            "utterance": [r.utterance.id for r in items],
            "split": [r.utterance.split for r in items],
            "voice": [r.utterance.voice for r in items],
            "word": [r.utterance.words[r.first].word for r in items],
            "control": [r.control for r in items],
            "gap": [r.again - r.first for r in items],
            "logp_real": lp_real.numpy(),
            "logp_control": lp_ctrl.numpy(),
        }
    )


def gate_rows(scores: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The gate per split and per voice: the share of recurrences the real speech wins (ties
    count half) and the mean log-probability gain in nats, each with word-type CIs; the
    ``hears`` verdict on the training-voice split (:data:`GATE_RULE`). Without any recurrence
    (a very small data set) the gate cannot be read: one ``eval`` row with n = 0, NaN rates and
    ``hears`` False."""
    if scores.empty:
        nan = float("nan")
        return pd.DataFrame([dict(split="eval", voice="all", n=0, n_types=0, win_rate=nan,
                                  ci_low=nan, ci_high=nan, gain_nats=nan, gain_ci_low=nan,
                                  gain_ci_high=nan, hears=False)])  # fmt: skip
    rows = []
    groups = [("all", s, g) for s, g in scores.groupby("split", sort=False)]
    groups += [(v, s, g) for (s, v), g in scores.groupby(["split", "voice"], sort=False)]
    for voice, split, g in groups:
        gain = (g["logp_real"] - g["logp_control"]).to_numpy()
        win = (gain > 0) + 0.5 * (gain == 0)
        rate, lo, hi = bootstrap_ci(win, seed=seed, clusters=g["word"].to_numpy())
        mean, glo, ghi = bootstrap_ci(gain, seed=seed, clusters=g["word"].to_numpy())
        rows.append(
            dict(split=split, voice=voice, n=len(g), n_types=g["word"].nunique(),
                 win_rate=rate, ci_low=lo, ci_high=hi,
                 gain_nats=mean, gain_ci_low=glo, gain_ci_high=ghi)
        )  # fmt: skip
    out = pd.DataFrame(rows)
    decides = (out["split"] == "eval") & (out["voice"] == "all")
    out["hears"] = decides & (out["win_rate"] >= GATE_RATE) & (out["ci_low"] > 0.5)
    return out


def hears(gate: pd.DataFrame) -> bool:
    """The gate's verdict (:data:`GATE_RULE`) from :func:`gate_rows`."""
    return bool(gate["hears"].any())


def recognition_gate(
    model, tok, layout, utterances: list[Utterance], units, world: World, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-recurrence scores, gate rows) of a model on its held-out utterances."""
    scores = recognition_scores(model, tok, layout, recurrences(utterances, world, seed), units)
    return scores, gate_rows(scores, seed)
