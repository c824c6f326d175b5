"""Direction ablation at a spoken word's positions: the word's text direction, a probe's
direction (amnesic style) and random directions of equal norm as the control distribution.

**Layer band**: ``"a-b"`` (or ``"a"``) names residual streams a..b in the lens numbering: stream
l < L is block l's input (``resid_pre``), stream L the last block's output (``resid_post``). An
intervention acts on every stream of the band, at the spoken word's positions only.

**Items**: every spoken content word with a next word, under each metric kind: ``speech`` (sum of
log-probs of the next word's units; needs a spoken next word) and ``text`` (log-prob of the next
word's text target after cutting the prompt after the word and appending the text marker).

**Directions** (all unit norm; projecting out ``u`` maps ``h -> h - (h.u) u``):

- ``text``: the word's text direction as the logit lens sees it, ``W_U[t] * g`` normalised, with
  ``t`` the word's target token (:mod:`speech_interp.targets`) and ``g`` the final norm's
  effective gain (read off the norm itself, so Gemma's ``1 + w`` is covered); for a LayerNorm
  (with bias) the direction is also centred, since the norm removes the mean.
- ``probe``: per stream, a multinomial logistic probe for word identity fit on that stream's
  residuals at spoken-word positions (:func:`fit_probe`); the row of the word's class, normalised.
- ``random``: ``n_random`` Gaussian directions, normalised, drawn once per run from ``seed``.

**Effect** of a direction on an item: ``base - ablated``, the drop of the metric (positive =
damage). One batch per item: row 0 projects a zero vector (the base run, unchanged), then text,
probe and the random rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.data import Utterance, Word
from speech_interp.edits import Edit, Readout, run_edited
from speech_interp.hooks import TokenLayout
from speech_interp.models import run_context
from speech_interp.residuals import get_residuals, n_layers, resid_names
from speech_interp.targets import TargetResolver
from speech_interp.unembed import Unembedding

KINDS = ("speech", "text")
ABLATION_COLUMNS = [
    "model",
    "backend",
    "band",
    "utterance",
    "word_index",
    "word",
    "metric",
    "direction",
    "draw",
    "base",
    "ablated",
    "effect",
]


def parse_span(band: str | Sequence[int]) -> tuple[int, int]:
    """``"a-b"``, ``"a"`` or ``(a, b)`` -> (a, b), unchecked; a ValueError names the form."""
    try:
        if isinstance(band, str):
            parts = [int(p) for p in band.replace(" ", "").split("-")]
        else:
            parts = [int(p) for p in band]
        if len(parts) == 1:
            parts = parts * 2
        a, b = parts
    except ValueError:
        raise ValueError(f"layer band must look like '2-4' or '3', got {band!r}") from None
    return a, b


def parse_band(band: str | Sequence[int], n_layers: int) -> tuple[int, int]:
    """:func:`parse_span`, checked against streams 0..n_layers."""
    a, b = parse_span(band)
    if not 0 <= a <= b <= n_layers:
        raise ValueError(
            f"layer band {a}-{b} out of range: a {n_layers}-layer model has residual streams "
            f"0..{n_layers} (stream l < {n_layers} is block l's input, {n_layers} the output)"
        )
    return a, b


def band_label(band: tuple[int, int]) -> str:
    return f"{band[0]}-{band[1]}"


class BandRun(NamedTuple):
    """What a run over a band of residual streams needs to know about the model."""

    backend: str
    remote: bool | str
    n_layers: int
    streams: list[int]
    tokenizer: object
    model_id: str


def band_run(model, band, remote: bool | str, tokenizer=None, model_id=None) -> BandRun:
    """Checked backend / remote pair, stream band, tokenizer and model id of an ablation or
    substitution run (the tokenizer and id default to the model's own)."""
    ctx = run_context(model, remote, tokenizer, model_id)
    L = n_layers(model)
    lo, hi = parse_band(band, L)
    return BandRun(ctx.backend, ctx.remote, L, list(range(lo, hi + 1)), ctx.tokenizer, ctx.model_id)


def stream_site(stream: int, L: int) -> tuple[int, str]:
    """The edit site of a residual stream (lens numbering)."""
    return (stream, "resid_pre") if stream < L else (L - 1, "resid_post")


@dataclass
class WordItem:
    """One spoken word under one metric kind: a prompt ending in the read-out and its positions."""

    utterance: str
    word_index: int
    word: str
    kind: str
    ids: Int[Tensor, " pos"]
    readout: Readout
    positions: Int[Tensor, " n"]  # the word's unit positions in ``ids``


def continuation(
    prefix: Int[Tensor, " pos"], nxt: Word, kind: str, layout: TokenLayout, resolver
) -> tuple[Tensor, Readout] | str:
    """``prefix`` (ending with the word) + what ``kind`` reads out of ``nxt``; or why not."""
    n = len(prefix)
    if kind == "speech":
        if nxt.modality != "speech" or not nxt.units:
            return f"the next word {nxt.word!r} is not spoken"
        units = layout.units_to_tokens(list(nxt.units))
        ids = torch.cat([prefix, units])
        return ids, Readout.same(1, torch.arange(n - 1, n - 1 + len(units)), units)
    if kind != "text":
        raise ValueError(f"metric kind must be one of {KINDS}, got {kind!r}")
    if layout.text_marker_id is None:
        return f"family {layout.spec.name!r} has no text marker to switch to text"
    target = resolver(nxt.word)
    if not target.found:
        return f"the next word {nxt.word!r} has no text target token"
    ids = torch.cat([prefix, torch.tensor([layout.text_marker_id])])
    return ids, Readout.same(1, [n], [target.token_id])


def word_items(
    utterances: Sequence[Utterance], layout: TokenLayout, tokenizer, kinds: Sequence[str] = KINDS
) -> tuple[list[WordItem], pd.DataFrame]:
    """Items for every spoken content word with a next word, and the (word, kind)s skipped."""
    resolver = TargetResolver(tokenizer, layout)
    items, skipped = [], []
    for utt in utterances:
        prompt = None
        for w, word in enumerate(utt.words[:-1]):
            if word.modality != "speech" or not word.content:
                continue
            if prompt is None:
                prompt = utt.to_prompt(layout, tokenizer)
            pos = prompt.word_positions[w]
            prefix = prompt.input_ids[: int(pos[-1]) + 1]
            for kind in kinds:
                got = continuation(prefix, utt.words[w + 1], kind, layout, resolver)
                if isinstance(got, str):
                    skipped.append(
                        {"utterance": utt.id, "word_index": w, "metric": kind, "reason": got}
                    )
                    continue
                items.append(WordItem(utt.id, w, word.word, kind, got[0], got[1], pos))
    return items, pd.DataFrame(skipped, columns=["utterance", "word_index", "metric", "reason"])


# --------------------------------------------------------------------------- directions


def effective_gain(model) -> tuple[Float[Tensor, " d"], bool]:
    """The final norm's per-dimension gain and whether it centres (LayerNorm with bias)."""
    unembed = Unembedding.from_model(model)
    d = unembed.d_model
    centres = getattr(unembed.norm, "bias", None) is not None
    if centres:
        return unembed.norm.weight.detach().float().cpu(), True
    return unembed.normed(torch.ones(1, d))[0].detach().cpu(), False


def text_directions(model, token_ids: Sequence[int]) -> Float[Tensor, "n d"]:
    """Unit text directions ``W_U[t] * g`` of the given tokens (rule in the module docstring)."""
    unembed = Unembedding.from_model(model)
    gain, centres = effective_gain(model)
    rows = unembed.weight[torch.as_tensor(list(token_ids)).long()].detach().float().cpu() * gain
    if centres:
        rows = rows - rows.mean(-1, keepdim=True)
    return F.normalize(rows, dim=-1)


def random_directions(n: int, d: int, seed: int) -> Float[Tensor, "n d"]:
    """``n`` seeded Gaussian directions of unit norm."""
    if n < 1:
        raise ValueError(f"n_random must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(int(seed))
    return F.normalize(torch.randn(n, d, generator=gen), dim=-1)


@dataclass
class Probe:
    """A multinomial logistic probe for word identity on one stream."""

    stream: int
    classes: list[str]
    weight: Float[Tensor, "classes d"]
    bias: Float[Tensor, " classes"]
    accuracy: float  # on its own training positions

    def direction(self, word: str) -> Float[Tensor, " d"] | None:
        key = word.lower()
        if key not in self.classes:
            return None
        return F.normalize(self.weight[self.classes.index(key)], dim=-1)


def fit_probe(
    features: Float[Tensor, "n d"],
    labels: Sequence[str],
    stream: int,
    *,
    seed: int = 0,
    steps: int = 200,
    lr: float = 0.05,
    weight_decay: float = 1e-3,
) -> Probe:
    """Fit a multinomial logistic probe (full batch Adam, seeded) on centred, scaled features."""
    classes = sorted({lab.lower() for lab in labels})
    if len(classes) < 2:
        raise ValueError(f"a word-identity probe needs >= 2 words, got {classes}")
    y = torch.tensor([classes.index(lab.lower()) for lab in labels])
    x = features.float()
    mean = x.mean(0, keepdim=True)
    scale = (x - mean).norm(dim=-1).mean().clamp_min(1e-8)
    xs = (x - mean) / scale
    gen = torch.Generator().manual_seed(int(seed))
    w = (0.01 * torch.randn(len(classes), x.shape[1], generator=gen)).requires_grad_(True)
    b = torch.zeros(len(classes), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=lr, weight_decay=weight_decay)
    with torch.enable_grad():
        for _ in range(steps):
            opt.zero_grad()
            F.cross_entropy(xs @ w.T + b, y).backward()
            opt.step()
    with torch.no_grad():
        acc = float(((xs @ w.T + b).argmax(-1) == y).float().mean())
        # back to raw coordinates: logits = (x - mean) W^T / scale + b
        weight = w.detach() / scale
        bias = b.detach() - (mean @ weight.T)[0]
    return Probe(stream, classes, weight, bias, acc)


def probe_data(
    model, layout, utterances, streams, tokenizer, remote=False
) -> tuple[dict[int, Tensor], list[str]]:
    """Residuals of ``streams`` at every spoken word's positions, labelled by the word."""
    names = resid_names(model, "all")
    feats: dict[int, list[Tensor]] = {s: [] for s in streams}
    labels: list[str] = []
    for utt in utterances:
        prompt = utt.to_prompt(layout, tokenizer)
        spoken = [w for w, word in enumerate(utt.words) if word.modality == "speech"]
        if not spoken:
            continue
        res = get_residuals(
            model, prompt.input_ids[None], [names[s] for s in streams], remote=remote
        )
        pos = torch.cat([prompt.word_positions[w] for w in spoken])
        for s in streams:
            feats[s].append(res[names[s]][0, pos].float().cpu())
        for w in spoken:
            labels += [utt.words[w].word] * len(prompt.word_positions[w])
    return {s: torch.cat(v) for s, v in feats.items()}, labels


# --------------------------------------------------------------------------- ablation


def ablate(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    *,
    band: str | Sequence[int],
    n_random: int = 20,
    probe: bool = True,
    kinds: Sequence[str] = KINDS,
    seed: int = 0,
    probe_steps: int = 200,
    max_words: int | None = None,
    remote: bool | str = False,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
) -> pd.DataFrame:
    """Effects of projecting out text / probe / random directions (rules in the module doc).

    ``max_words`` keeps the first spoken words (data order); the probe is fit on all the data.
    """
    backend, remote, L, streams, tok, model_id = band_run(model, band, remote, tokenizer, model_id)
    items, _ = word_items(utterances, layout, tok, kinds)
    if max_words is not None:
        keep = list(dict.fromkeys((i.utterance, i.word_index) for i in items))[:max_words]
        items = [i for i in items if (i.utterance, i.word_index) in set(keep)]
    if not items:
        raise ValueError("no spoken content word with a readable next word in the data")
    resolver = TargetResolver(tok, layout)
    randoms = random_directions(n_random, Unembedding.from_model(model).d_model, seed)
    probes = {}
    if probe:
        feats, labels = probe_data(model, layout, utterances, streams, tok, remote)
        probes = {s: fit_probe(feats[s], labels, s, seed=seed, steps=probe_steps) for s in streams}
    rows = []
    for item in tqdm(items, desc="ablate", disable=not progress):
        target = resolver(item.word)
        named = [("base", -1, {s: torch.zeros_like(randoms[0]) for s in streams})]
        if target.found:
            d = text_directions(model, [target.token_id])[0]
            named.append(("text", -1, {s: d for s in streams}))
        probe_dirs = {s: p.direction(item.word) for s, p in probes.items()}
        if probes and all(d is not None for d in probe_dirs.values()):
            named.append(("probe", -1, probe_dirs))
        named += [("random", i, {s: randoms[i] for s in streams}) for i in range(n_random)]
        metric = _project_batch(model, item, [dirs for *_, dirs in named], streams, L, remote)
        base = float(metric[0])
        for (kind, draw, _), value in zip(named[1:], metric[1:].tolist(), strict=True):
            rows.append(
                [
                    model_id,
                    backend,
                    band_label((streams[0], streams[-1])),
                    item.utterance,
                    item.word_index,
                    item.word,
                    item.kind,
                    kind,
                    draw,
                    base,
                    value,
                    base - value,
                ]
            )
    return pd.DataFrame(rows, columns=ABLATION_COLUMNS)


def _project_batch(model, item: WordItem, directions: list[dict], streams, L, remote) -> Tensor:
    """Row r projects ``directions[r][stream]`` out of the word's positions at every stream."""
    B, P = len(directions), len(item.positions)
    rows = torch.arange(B).repeat_interleave(P)
    pos = item.positions.repeat(B)
    edits = []
    for s in streams:
        u = torch.stack([d[s] for d in directions]).repeat_interleave(P, dim=0)
        edits.append(Edit.project(*stream_site(s, L), rows, pos, u))
    ids = item.ids[None].expand(B, -1).contiguous()
    return run_edited(model, ids, edits, item.readout, remote=remote)


def summarize_ablation(table: pd.DataFrame) -> pd.DataFrame:
    """Per (band, metric): mean effect of text / probe and mean, sd, 95th pct of random."""
    out = []
    for (band, metric), g in table.groupby(["band", "metric"], sort=False):
        rand = g[g["direction"] == "random"].groupby("draw")["effect"].mean()
        n_words = len(g[["utterance", "word_index"]].drop_duplicates())
        row = {"band": band, "metric": metric, "n_words": n_words}
        for kind in ("text", "probe"):
            row[f"{kind}_effect"] = float(g[g["direction"] == kind]["effect"].mean())
        row.update(
            random_mean=float(rand.mean()),
            random_sd=float(rand.std(ddof=1)),
            random_p95=float(np.quantile(rand, 0.95)) if len(rand) else np.nan,
        )
        out.append(row)
    return pd.DataFrame(out)


__all__ = [
    "ABLATION_COLUMNS",
    "Probe",
    "WordItem",
    "ablate",
    "band_label",
    "continuation",
    "effective_gain",
    "fit_probe",
    "parse_band",
    "random_directions",
    "stream_site",
    "summarize_ablation",
    "text_directions",
    "word_items",
]
