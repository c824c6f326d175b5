"""Text substitution: move a spoken word's state toward another word's text state; does the
continuation follow the substituted word?

For a pair (:func:`speech_interp.data.pairs.make_pairs`: spoken word ``w`` in the clean utterance,
another word ``o`` of the same category and voice from a donor utterance):

- **text states**: the clean utterance rendered entirely as text, once with ``w`` and once with
  ``o`` in its place; ``h_l(x)`` is the mean residual of stream ``l`` (lens numbering) over the
  text tokens of ``x`` in its prompt. The context is the same, so ``h_l(o) - h_l(w)`` isolates
  the word.
- **move**: at every stream ``l`` of the band, at every unit position of the spoken ``w``:
  ``h <- h + alpha * (h_l(o) - h_l(w))``.
- **read-out**: the continuations are the next word after ``w`` in the clean utterance (own) and
  the next word after ``o`` in the donor utterance (other). ``speech``: sum of log-probs of that
  word's units; ``text``: log-prob of its text target after a switch to text.
- **shift** = ``(moved_other - moved_own) - (base_other - base_own)``: how far the move turns
  the model toward the substituted word's continuation (> 0 = it follows). Pairs whose two
  continuations are the same word are kept with ``informative=False``. A pair without a
  continuation on one side, or a metric that cannot read one side, is listed (never dropped
  silently): a warning, and ``table.attrs["skipped"]`` (records of pair, metric, reason).
- **control**: ``n_random`` random deltas with the same norm as the text delta at each stream
  (seeded), rows with ``direction="random"``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from speech_interp.causal.band import band_streams, run_band_edits
from speech_interp.causal.readouts import METRICS, check_metrics, read_outs
from speech_interp.causal.tables import SUBSTITUTION_COLUMNS, make_table
from speech_interp.core.edits import Edit
from speech_interp.core.residuals import get_residuals, resid_names
from speech_interp.core.runs import run_context
from speech_interp.data.pairs import Pair, validate_pair
from speech_interp.data.targets import TargetResolver
from speech_interp.data.utterances import Utterance, Word
from speech_interp.hooks import TokenLayout

SUBSTITUTION_SKIPPED_COLUMNS = ["pair", "metric", "reason"]  # table.attrs["skipped"]


def as_text(utt: Utterance, index: int | None = None, word: str | None = None) -> Utterance:
    """``utt`` with every word in text (and word ``index`` replaced by ``word`` if given)."""
    words = [Word(w.word, "text", None, w.category, w.content) for w in utt.words]
    if index is not None:
        words[index] = replace(words[index], word=word)
    return replace(utt, id=f"{utt.id}/text", words=tuple(words))


def text_states(
    model, layout, tokenizer, utt: Utterance, index: int, streams: Sequence[int], remote=False
) -> dict[int, torch.Tensor]:
    """Mean residual of each stream over the text tokens of word ``index`` of ``utt``."""
    prompt = utt.to_prompt(layout, tokenizer)
    names = resid_names(model, "all")
    res = get_residuals(model, prompt.input_ids[None], [names[s] for s in streams], remote=remote)
    pos = prompt.word_positions[index]
    return {s: res[names[s]][0, pos].float().mean(0).cpu() for s in streams}


def substitute(
    model,
    layout: TokenLayout,
    pairs: Sequence[Pair],
    *,
    band: str | Sequence[int],
    alphas: Sequence[float] = (1.0,),
    n_random: int = 5,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    remote: bool | str = False,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> pd.DataFrame:
    """Shift toward the substituted word's continuation (rules in the module docstring).

    Args:
        model: a TransformerLens bridge or an nnsight model (:func:`speech_interp.load`).
        layout: the model's token layout.
        pairs: clean / corrupted pairs (:func:`speech_interp.data.make_pairs`); the corrupted
            word is the substituted one.
        band: residual streams ``"a-b"`` in the lens numbering (:mod:`speech_interp.core.runs`).
        alphas: move strengths (0 changes nothing).
        n_random: random deltas of the text delta's norm per stream (the control).
        metrics: what to read out (:data:`speech_interp.causal.readouts.METRICS`).
        seed: seed of the random deltas.
        remote, model_id, progress, tokenizer: as for every routine
            (:func:`speech_interp.core.runs.run_context`).

    Returns:
        One row per pair, metric, alpha and direction (``SUBSTITUTION_COLUMNS``); the pairs and
        metrics it could not read in ``.attrs["skipped"]``, one record (a dict of
        ``SUBSTITUTION_SKIPPED_COLUMNS``) each.
    """
    ctx = run_context(model, remote, tokenizer, model_id)
    remote, L, tok = ctx.remote, ctx.n_layers, ctx.tokenizer
    metrics = check_metrics(metrics)
    label, streams = band_streams(band, L)
    resolver = TargetResolver(tok, layout)
    gen = torch.Generator().manual_seed(int(seed))
    rows, skipped = [], []
    for pair in tqdm(pairs, desc="substitute", disable=not progress):
        w = validate_pair(pair.clean, pair.corrupt)
        if pair.donor_next is None or w + 1 >= len(pair.clean.words):
            side = "own" if w + 1 >= len(pair.clean.words) else "donor"  # own checked first
            skipped += [(pair.id, m, f"no next word on the {side} side") for m in metrics]
            continue
        other = pair.corrupt_word.word
        own_h = text_states(model, layout, tok, as_text(pair.clean), w, streams, remote)
        oth_h = text_states(model, layout, tok, as_text(pair.clean, w, other), w, streams, remote)
        delta = {s: oth_h[s] - own_h[s] for s in streams}
        rand = [
            {
                s: F.normalize(torch.randn(delta[s].shape, generator=gen), dim=0) * delta[s].norm()
                for s in streams
            }
            for _ in range(n_random)
        ]
        moves = [("text", -1, a, {s: a * delta[s] for s in streams}) for a in alphas]
        moves += [
            ("random", i, a, {s: a * r[s] for s in streams})
            for a in alphas
            for i, r in enumerate(rand)
        ]
        prompt = pair.clean.to_prompt(layout, tok)
        pos = prompt.word_positions[w]
        prefix = prompt.input_ids[: int(pos[-1]) + 1]
        informative = pair.clean.words[w + 1].word.lower() != pair.donor_next.word.lower()
        owns, why_own = read_outs(prefix, pair.clean.words[w + 1], metrics, layout, resolver)
        others, why_oth = read_outs(prefix, pair.donor_next, list(owns), layout, resolver)
        skipped += [(pair.id, m, f"own side: {r}") for m, r in why_own.items()]
        skipped += [(pair.id, m, f"donor side: {r}") for m, r in why_oth.items()]
        for metric, oth in others.items():  # read on both sides
            own = owns[metric]
            m_own, m_oth = (
                run_band_edits(model, *p, pos, [m[3] for m in moves], streams, L, Edit.add,
                               unedited=1, remote=remote)
                for p in (own, oth)
            )  # fmt: skip
            base_own, base_oth = float(m_own[0]), float(m_oth[0])
            for j, (direction, draw, a, _) in enumerate(moves, start=1):
                mo, mt = float(m_own[j]), float(m_oth[j])
                shift = (mt - mo) - (base_oth - base_own)
                rows.append(
                    {
                        "model": ctx.model_id,
                        "backend": ctx.backend,
                        "band": label,
                        "pair": pair.id,
                        "word": pair.clean_word.word,
                        "other": other,
                        "metric": metric,
                        "alpha": float(a),
                        "direction": direction,
                        "draw": draw,
                        "base_own": base_own,
                        "base_other": base_oth,
                        "moved_own": mo,
                        "moved_other": mt,
                        "shift": shift,
                        "informative": informative,
                    }
                )
    skipped = pd.DataFrame(skipped, columns=SUBSTITUTION_SKIPPED_COLUMNS)
    if not rows:
        reasons = "; ".join(sorted(set(skipped["reason"]))) or "no pairs"
        raise ValueError(
            f"no pair has continuations to read out on both sides (own and donor): {reasons}"
        )
    if len(skipped):
        warnings.warn(
            f"substitute: {len(skipped)} (pair, metric) read-out(s) skipped, "
            f"{skipped['pair'].nunique()} of {len(pairs)} pairs "
            f"({'; '.join(sorted(set(skipped['reason'])))}); listed in table.attrs['skipped']",
            stacklevel=2,
        )
    table = make_table(rows, SUBSTITUTION_COLUMNS)
    table.attrs["skipped"] = skipped.to_dict(orient="records")  # records: pd.concat compares them
    return table


def summarize_substitution(table: pd.DataFrame) -> pd.DataFrame:
    """Mean shift per (band, metric, alpha, direction) over informative pairs."""
    keep = table[table["informative"]]
    keys = ["band", "metric", "alpha", "direction"]
    return keep.groupby(keys, sort=False)["shift"].agg(["mean", "std", "count"]).reset_index()


__all__ = [
    "SUBSTITUTION_SKIPPED_COLUMNS",
    "as_text",
    "substitute",
    "summarize_substitution",
    "text_states",
]
