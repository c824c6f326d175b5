"""Spoken knowledge scored as the lab's own code scores it (slamkit's cross-modal metric).

**Rule** (slp-rl/slamkit @388b402: ``slamkit/metric/cross_modal_metric.py``,
``slamkit/model/unit_lm.py`` ``log_likelihood``, ``slamkit/utils/calculation_utils.py``
``calc_nll``; docs/research/eval_set_sources.md section 3):

- a sample is the spoken prompt followed by a continuation, the correct completion or the
  same-category counterfactual, in text (a switch to text, then its words) or in speech (the
  prompt's and the completion's audio concatenated and encoded together, as slamkit does for
  speech -> speech);
- its likelihood is the **mean log-probability over the whole sequence**, every position but
  the first, tokens equal to the model's pad id left out (slamkit's mask), not over the
  continuation alone;
- the score of a fact is 1 when the correct sequence is more likely, 0.5 on a tie, 0 otherwise;
  a model's score is the mean over facts (and renderings), with a 95% CI from a bootstrap over
  fact items (the renderings of one fact are not independent).

The forward pass is :func:`speech_interp.core.edits.run_edited` with no edits and a read-out
weighting every position by ``1 / n``, so the score runs alike on TransformerLens, nnsight and
NDIF.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from jaxtyping import Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.edits import Readout, run_edited
from speech_interp.core.runs import run_context
from speech_interp.data.utterances import Utterance, Word
from speech_interp.hooks import TokenLayout
from speech_interp.stats import bootstrap_ci

CONTINUATIONS: tuple[str, ...] = ("text", "speech")
SCORE_COLUMNS = [
    "model", "item", "rendering", "category", "continuation", "ll_correct",
    "ll_counterfactual", "score",
]  # fmt: skip
SKIPPED_COLUMNS = ["item", "rendering", "continuation", "reason"]


def mean_log_likelihood(
    model, ids: Int[Tensor, " pos"], *, pad_id: int | None = None, remote: bool | str = False
) -> float:
    """Mean ``log p(x_t | x_<t)`` over ``t = 1..T-1``, tokens equal to ``pad_id`` left out
    (slamkit's ``UnitLM.log_likelihood(mean_nll=True)``, negated NLL)."""
    if ids.ndim != 1 or len(ids) < 2:
        raise ValueError(
            f"a likelihood needs a 1-D sequence of >= 2 tokens, got {tuple(ids.shape)}"
        )
    targets = ids[1:]
    keep = torch.ones_like(targets, dtype=torch.bool)
    if pad_id is not None:
        keep = targets != pad_id
    if not keep.any():
        raise ValueError("every predicted token equals the pad id: nothing to score")
    weights = keep.float() / keep.sum()
    readout = Readout(torch.arange(len(targets))[None], targets[None], weights[None])
    return float(run_edited(model, ids[None], [], readout, remote=remote)[0])


def continuation_ids(
    utt: Utterance, completion: str, continuation: str, layout: TokenLayout, tokenizer
) -> Int[Tensor, " pos"] | str:
    """The token ids of the spoken prompt ``utt`` + ``completion`` (the meta's name, ``correct``
    or ``counterfactual``) in the ``continuation`` modality; or why it cannot be built."""
    if continuation == "text":
        text = utt.meta.get(completion)
        if not text:
            return f"no {completion} completion text"
        words = utt.words + tuple(Word(w, "text", None, None, True) for w in text.split())
        return Utterance(utt.id, words).to_prompt(layout, tokenizer).input_ids
    if continuation == "speech":
        units = utt.meta.get(f"speech_{completion}_units")
        if not units:
            return f"no {completion} completion audio in the fact set"
        spoken = Utterance(utt.id, (Word(completion, "speech", tuple(units), None, True),))
        return spoken.to_prompt(layout, tokenizer).input_ids
    raise ValueError(f"continuation must be one of {CONTINUATIONS}, got {continuation!r}")


def knowledge_scores(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    *,
    continuations: Sequence[str] = CONTINUATIONS,
    remote: bool | str = False,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per fact utterance and continuation (``SCORE_COLUMNS``; rule in the module
    docstring) and the (utterance, continuation)s that could not be scored, with the reason."""
    bad = [c for c in continuations if c not in CONTINUATIONS]
    if bad or not continuations:
        raise ValueError(f"continuations must be among {CONTINUATIONS}, got {list(continuations)}")
    ctx = run_context(model, remote, tokenizer, model_id)
    pad_id = getattr(ctx.tokenizer, "pad_token_id", None)
    facts = [u for u in utterances if u.meta.get("correct") and u.meta.get("counterfactual")]
    if not facts:
        raise ValueError("no utterance carries a fact's correct and counterfactual completion")
    rows, skipped = [], []
    for utt in tqdm(facts, desc="spoken knowledge", disable=not progress):
        for cont in continuations:
            ids = {c: continuation_ids(utt, c, cont, layout, ctx.tokenizer)
                   for c in ("correct", "counterfactual")}  # fmt: skip
            why = next((v for v in ids.values() if isinstance(v, str)), None)
            if why is not None:
                skipped.append((utt.meta.get("item", utt.id), utt.voice, cont, why))
                continue
            ll = {c: mean_log_likelihood(model, v, pad_id=pad_id, remote=ctx.remote)
                  for c, v in ids.items()}  # fmt: skip
            diff = ll["correct"] - ll["counterfactual"]
            rows.append((
                ctx.model_id, utt.meta.get("item", utt.id), utt.voice, utt.meta.get("category"),
                cont, ll["correct"], ll["counterfactual"], 1.0 if diff > 0 else 0.5 if diff == 0
                else 0.0,
            ))  # fmt: skip
    return (
        pd.DataFrame(rows, columns=SCORE_COLUMNS),
        pd.DataFrame(skipped, columns=SKIPPED_COLUMNS),
    )


def summarize_knowledge(scores: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Mean score per (model, continuation, category) and over all categories (``"all"``),
    with a 95% CI from a bootstrap over fact items; ``chance`` is 0.5 (two completions)."""
    out = []
    for (model, cont), g in scores.groupby(["model", "continuation"], sort=False):
        parts = [("all", g)] + sorted(g.groupby("category", sort=True), key=lambda kv: kv[0])
        for category, sub in parts:
            mean, lo, hi = bootstrap_ci(
                sub["score"].to_numpy(), n_boot=n_boot, seed=seed, clusters=sub["item"].to_numpy()
            )
            out.append({
                "model": model, "continuation": cont, "category": category, "score": mean,
                "ci_low": lo, "ci_high": hi, "n": len(sub), "n_items": sub["item"].nunique(),
                "chance": 0.5,
            })  # fmt: skip
    return pd.DataFrame(out)


__all__ = [
    "CONTINUATIONS",
    "SCORE_COLUMNS",
    "continuation_ids",
    "knowledge_scores",
    "mean_log_likelihood",
    "summarize_knowledge",
]
