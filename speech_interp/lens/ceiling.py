"""The text ceiling: can a lens read the *written* word at each stream?

A transcription rate at stream ``l`` says the spoken word's text is decodable there; it means
something only where the same lens reads the word when it is written. The ceiling renders the
analysed utterances as text (the same words, the family's own text prompt rule), reads the
current word at each written word's last token with the same lens (top-``k`` over the text
vocabulary) and reports, per stream, the share of words read (``text_ceiling``), with the
word-type bootstrap CI of every rate; words whose type the lens was fitted on are left out of
``text_ceiling_unseen`` (a lens with no fit reports none). :func:`word_ranks` reads written words
with any lens (current, previous and next word, and the floor of the patchscope's);
:func:`rate_rows` turns its ranks into lens.csv rows.

**Blind to words**: a stream whose ceiling on content words is below :data:`CEILING_FLOOR`
(fixed before any ceiling was read) makes no transcription claim: the lens cannot see a
written word there, so a spoken one cannot be expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout, submodule
from speech_interp.lens.current import WrittenWords, stream_states, written_words
from speech_interp.lens.lenses import Lens
from speech_interp.lens.unembed import causal_lm
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
    ranks = word_ranks(model, layout, lens, utterances, reads=("current",), chunk_size=chunk_size)
    fitted = getattr(lens, "fit_word_types", frozenset())
    metrics = {"text_ceiling": "rank_current"}
    if fitted:
        unseen = ~ranks.word.isin(fitted).to_numpy()
        ranks["rank_unseen"] = np.where(unseen, ranks.rank_current, np.nan)
        metrics["text_ceiling_unseen"] = "rank_unseen"
    return rate_rows(ranks, metrics, ks=ks, lens=lens.name, model_id=model_id, backend=backend,
                     seed=seed, n_boot=n_boot)  # fmt: skip


READS = ("current", "previous", "next", "floor")


def _embedding_rows(model, written: WrittenWords) -> Float[Tensor, "n d"]:
    """Each written word's stream-0 state: the input-embedding row of its last token."""
    hf = causal_lm(model)
    pairs = zip(written.prompt_of.tolist(), written.position.tolist(), strict=True)
    ids = torch.stack([written.prompts[p][pos] for p, pos in pairs])
    with torch.no_grad():
        return submodule(hf, "embed")(ids.to(next(hf.parameters()).device)).float().cpu()


def utterance_words(
    layout: TokenLayout, tokenizer, utterances: Sequence[Utterance]
) -> WrittenWords:
    """The utterances' words written as text (:func:`~speech_interp.lens.current.written_words`,
    content flags from the utterances)."""
    sentences = [[w.word for w in u.words] for u in utterances]
    content = [[w.content for w in u.words] for u in utterances]
    return written_words(layout, tokenizer, sentences, content)


def word_ranks(
    model,
    layout: TokenLayout,
    lens: Lens,
    utterances: Sequence[Utterance],
    *,
    reads: Sequence[str] = READS,
    chunk_size: int = 8192,
) -> pd.DataFrame:
    """Per written word (the utterances written as text, :func:`utterance_words`) and stream: the
    ranks of :func:`written_ranks`."""
    written = utterance_words(layout, model.tokenizer, utterances)
    return written_ranks(model, layout, lens, written, reads=reads, chunk_size=chunk_size)


def written_ranks(
    model,
    layout: TokenLayout,
    lens: Lens,
    written: WrittenWords,
    *,
    reads: Sequence[str] = READS,
    chunk_size: int = 8192,
    states: Float[Tensor, "stream n d"] | None = None,
) -> pd.DataFrame:
    """Per written word and stream: the text-vocabulary rank (0 = top-1) of the current word's
    target in the lens's reading of the word's last-token state (``rank_current``, what
    :func:`~speech_interp.lens.ceiling.text_ceiling` counts), of the previous and next word's
    targets in that same reading (``rank_previous``, ``rank_next``; NaN without that word or its
    target), and of the current word's target in the reading of the word's own input-embedding
    row (``rank_floor``). Only the ``reads`` asked for are computed (their columns only);
    ``states`` (:func:`~speech_interp.lens.current.stream_states` of ``written``) saves the
    forward passes when several lenses read the same words. Beside the ranks: the word's
    sentence (``prompt``: non-empty sentences counted), its ``word_index`` there, its number of
    tokens, and the target ids of the word and of its neighbours (-1 where there is none)."""
    unknown = set(reads) - set(READS)
    if unknown:
        raise ValueError(f"reads must be among {READS}, got {sorted(unknown)}")
    n = len(written)
    if not n:
        raise ValueError("no written word with a target token to read")
    rows = torch.arange(n)
    prev, nxt = written.previous, written.next
    has_prev, has_next = prev >= 0, nxt >= 0
    on_states = [r for r in ("current", "previous", "next") if r in reads]
    if on_states and states is None:
        states = stream_states(model, written)
    if not on_states:
        states = None
    floor = _embedding_rows(model, written) if "floor" in reads else None
    n_streams = lens.n_layers + 1
    ranks = {r: np.full((n_streams, n), np.nan) for r in READS}
    with torch.no_grad():
        for layer in range(n_streams):
            if states is not None:
                pos = torch.cat([rows, rows[has_prev], rows[has_next]])
                tok = torch.cat([written.target, prev[has_prev], nxt[has_next]])
                got = lens.score(layer, states[layer], pos, tok, layout, chunk_size)
                got = got.rank_text.cpu().numpy().astype(float)
                cur, before = got[:n], got[n : n + int(has_prev.sum())]
                after = got[n + int(has_prev.sum()) :]
                ranks["current"][layer] = cur
                ranks["previous"][layer, has_prev.numpy()] = before
                ranks["next"][layer, has_next.numpy()] = after
            if floor is not None:
                got = lens.score(layer, floor, rows, written.target, layout, chunk_size)
                ranks["floor"][layer] = got.rank_text.cpu().numpy()
    frame = pd.DataFrame({
        "item": np.tile(np.arange(n), n_streams),
        "layer": np.repeat(np.arange(n_streams), n),
        "word": np.tile(np.array(written.words, dtype=object), n_streams),
        "content": np.tile(np.array(written.content), n_streams),
        "prompt": np.tile(written.prompt_of.numpy(), n_streams),
        "word_index": np.tile(written.word_index.numpy(), n_streams),
        "n_tokens": np.tile(written.n_tokens.numpy(), n_streams),
        "target": np.tile(written.target.numpy(), n_streams),
        "previous_target": np.tile(written.previous.numpy(), n_streams),
        "next_target": np.tile(written.next.numpy(), n_streams),
    })  # fmt: skip
    for r in READS:
        if r in reads:
            frame[f"rank_{r}"] = ranks[r].reshape(-1)
    return frame


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
    "CEILING_FLOOR", "CEILING_RULE", "READS", "blind_streams", "blind_warning", "rate_rows",
    "text_ceiling", "utterance_words", "word_ranks", "written_ranks",
]  # fmt: skip
