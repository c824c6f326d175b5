"""The text ceiling: can a lens read the *written* word at each stream?

A transcription rate at stream ``l`` says the spoken word's text is decodable there; it means
something only where the same lens reads the word when it is written. The ceiling renders the
analysed utterances as text (the same words, the family's own text prompt rule), reads the
current word at each written word's last token with the same lens (top-``k`` over the text
vocabulary) and reports, per stream, the share of words read (``text_ceiling``), with the
word-type bootstrap CI of every rate; words whose type the lens was fitted on are left out of
``text_ceiling_unseen`` (a lens with no fit reports none).

**Blind to words**: a stream whose ceiling on content words is below :data:`CEILING_FLOOR`
(fixed before any ceiling was read) makes no transcription claim: the lens cannot see a
written word there, so a spoken one cannot be expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.current import stream_states, written_words
from speech_interp.lens.lenses import Lens
from speech_interp.stats import bootstrap_ci

CEILING_FLOOR = 0.2
CEILING_RULE = (
    "text_ceiling: the utterances' words written as text (the family's prompt rule), the current "
    "word's target read at each written word's last token by the same lens, top-k over the text "
    "vocabulary (the first word of each utterance left out); 95% CIs resample word types. A "
    f"stream whose content-word ceiling at k=5 is below {CEILING_FLOOR} is blind to words: no "
    "transcription claim is made there."
)


def text_ceiling(
    model,
    layout: TokenLayout,
    lens: Lens,
    utterances: Sequence[Utterance],
    *,
    ks: Sequence[int] = (1, 5),
    model_id: str = "",
    backend: str = "",
    seed: int = 0,
    n_boot: int = 2000,
    chunk_size: int = 8192,
) -> pd.DataFrame:
    """The ceiling rows (lens.csv's columns) of ``lens`` on ``utterances`` written as text."""
    written = written_words(
        layout, model.tokenizer, [[w.word for w in u.words] for u in utterances],
        [[w.content for w in u.words] for u in utterances],
    )  # fmt: skip
    if not len(written):
        raise ValueError("no written word with a target token to read the text ceiling on")
    states = stream_states(model, written)
    query = torch.arange(len(written))
    fitted = getattr(lens, "fit_word_types", frozenset())
    unseen = np.array([w not in fitted for w in written.words])
    frames = []
    with torch.no_grad():
        for layer in range(states.shape[0]):
            scores = lens.score(layer, states[layer], query, written.target, layout, chunk_size)
            rank = scores.rank_text.cpu().numpy().astype(float)
            frames.append(pd.DataFrame({
                "layer": layer, "item": np.arange(len(written)), "word": written.words,
                "content": written.content, "rank": rank,
                "rank_unseen": np.where(unseen, rank, np.nan),
            }))  # fmt: skip
    metrics = {"text_ceiling": "rank"}
    if fitted:
        metrics["text_ceiling_unseen"] = "rank_unseen"
    return rate_rows(pd.concat(frames, ignore_index=True), metrics, ks=ks, lens=lens.name,
                     model_id=model_id, backend=backend, seed=seed, n_boot=n_boot)  # fmt: skip


def rate_rows(
    ranks: pd.DataFrame,
    metrics: dict[str, str],
    *,
    ks: Sequence[int] = (1, 5),
    lens: str = "",
    model_id: str = "",
    backend: str = "",
    seed: int = 0,
    n_boot: int = 2000,
) -> pd.DataFrame:
    """lens.csv rows (metric -> rank column of :func:`word_ranks`): per stream, words all and
    content, and ``k``, the share of words whose rank is below ``k`` (words with a NaN rank left
    out), with the word-type bootstrap CI (clusters: the words' spelling)."""
    n_streams = int(ranks.layer.max()) + 1
    ranks = ranks.sort_values(["layer", "item"])
    first = ranks[ranks.layer == 0]
    types = first.word.to_numpy()
    content = first.content.to_numpy(dtype=bool)
    out = []
    for metric, column in metrics.items():
        values = ranks[column].to_numpy(dtype=float).reshape(n_streams, -1).T  # (words, streams)
        defined = ~np.isnan(values).any(axis=1)
        for words, mask in (("all", defined), ("content", defined & content)):
            if not mask.any():
                continue
            for k in ks:
                hits = (values[mask] < k).astype(float)
                mean, lo, hi = bootstrap_ci(hits, n_boot=n_boot, seed=seed, clusters=types[mask])
                for layer in range(n_streams):
                    out.append({
                        "model": model_id, "backend": backend, "lens": lens, "layer": layer,
                        "metric": metric, "k": k, "vocab": "text", "position_rule": "last",
                        "words": words, "value": float(mean[layer]), "ci_low": float(lo[layer]),
                        "ci_high": float(hi[layer]), "n": int(mask.sum()),
                    })  # fmt: skip
    return pd.DataFrame(out)


def blind_streams(ceiling: pd.DataFrame, k: int = 5) -> list[int]:
    """Streams whose content-word ``text_ceiling`` at ``k`` is below :data:`CEILING_FLOOR`."""
    rows = ceiling[(ceiling.metric == "text_ceiling") & (ceiling.k == k)
                   & (ceiling.words == "content")]  # fmt: skip
    return sorted(int(r.layer) for r in rows.itertuples() if r.value < CEILING_FLOOR)


def blind_warning(ceiling: pd.DataFrame, lens: str, k: int = 5) -> str | None:
    """A one-line warning naming the streams where ``lens`` is blind to written words."""
    blind = blind_streams(ceiling, k)
    if not blind:
        return None
    n = int(ceiling.layer.max()) + 1
    where = "every stream" if len(blind) == n else "streams " + ", ".join(map(str, blind))
    return (
        f"warning: the {lens} lens is blind to written words at {where} (text ceiling of content "
        f"words < {CEILING_FLOOR} at top-{k}): no transcription claim there; try --lens current"
    )


__all__ = [
    "CEILING_FLOOR", "CEILING_RULE", "blind_streams", "blind_warning", "rate_rows", "text_ceiling",
]  # fmt: skip
