"""Direction ablation at a spoken word's positions: the word's text direction, a probe's
direction (amnesic style) and random directions of equal norm as the control distribution.

**Layer band**: ``"a-b"`` (or ``"a"``) names residual streams a..b in the lens numbering
(:mod:`speech_interp.core.runs`). An intervention acts on every stream of the band, at the spoken
word's positions only.

**Items**: every spoken content word with a next word, under each metric of
:mod:`speech_interp.causal.readouts` (``speech``: the next word's units; ``text``: its text
target after a switch to text).

**Directions** (all unit norm; projecting out ``u`` maps ``h -> h - (h.u) u``):

- ``text``: the word's text direction as the logit lens sees it, ``W_U[t] * g`` normalised, with
  ``t`` the word's target token (:mod:`speech_interp.data.targets`) and ``g`` the final norm's
  effective gain (read off the norm itself, so Gemma's ``1 + w`` is covered); for a LayerNorm
  (with bias) the direction is also centred, since the norm removes the mean. With ``lens=`` a
  lens that reads the word along its own direction per stream
  (:meth:`~speech_interp.lens.lenses.Lens.text_direction`: the current lens's read-out
  gradient), that direction at each stream of the band: the ablation removes what the lens
  that judged decodability reads.
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

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.causal.band import band_streams, run_band_edits
from speech_interp.causal.readouts import METRICS, word_items
from speech_interp.causal.tables import ABLATION_COLUMNS, make_table
from speech_interp.core.edits import Edit
from speech_interp.core.residuals import get_residuals, resid_names
from speech_interp.core.runs import run_context
from speech_interp.data.targets import TargetResolver
from speech_interp.data.utterances import Utterance
from speech_interp.hooks import TokenLayout
from speech_interp.lens.unembed import Unembedding

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


def fit_probes(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    streams: Sequence[int],
    *,
    seed: int = 0,
    steps: int = 200,
    remote: bool | str = False,
    tokenizer=None,
) -> dict[int, Probe]:
    """One word-identity probe per stream (:func:`fit_probe`), from one pass over the data.

    Fit once and pass to :func:`ablate` (``probes=``) to test several bands of one model without
    reading the residuals again."""
    ctx = run_context(model, remote, tokenizer)
    streams = sorted(set(int(s) for s in streams))
    bad = [s for s in streams if not 0 <= s <= ctx.n_layers]
    if bad or not streams:
        raise ValueError(f"probe streams must lie in 0..{ctx.n_layers}, got {bad or 'none'}")
    feats, labels = probe_data(model, layout, utterances, streams, ctx.tokenizer, ctx.remote)
    return {s: fit_probe(feats[s], labels, s, seed=seed, steps=steps) for s in streams}


# --------------------------------------------------------------------------- ablation


def ablate(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    *,
    band: str | Sequence[int],
    n_random: int = 20,
    probe: bool = True,
    probes: dict[int, Probe] | None = None,
    metrics: Sequence[str] = METRICS,
    seed: int = 0,
    probe_steps: int = 200,
    max_words: int | None = None,
    remote: bool | str = False,
    model_id: str | None = None,
    progress: bool = True,
    tokenizer=None,
    lens=None,
) -> pd.DataFrame:
    """Effects of projecting out text / probe / random directions (rules in the module doc).

    Args:
        model: a TransformerLens bridge or an nnsight model (:func:`speech_interp.load`).
        layout: the model's token layout.
        utterances: the data; every spoken content word with a next word is an item.
        band: residual streams ``"a-b"`` in the lens numbering (:mod:`speech_interp.core.runs`).
        n_random: random control directions (>= 1; the verdict rule expects >= 20).
        probe: also ablate a word-identity probe direction (fit per stream on all the data).
        probes: probes already fit (:func:`fit_probes`) for every stream of the band; used
            instead of fitting them again (``probe`` must be True).
        metrics: what to read out (:data:`speech_interp.causal.readouts.METRICS`).
        seed: seed of the random directions and the probe.
        probe_steps: optimisation steps of each probe.
        max_words: keep the first spoken words (data order); None keeps all.
        remote, model_id, progress, tokenizer: as for every routine
            (:func:`speech_interp.core.runs.run_context`).
        lens: the lens whose read-out direction is the ``text`` direction at each stream (a
            bound lens with :meth:`~speech_interp.lens.lenses.Lens.text_direction`); None or a
            lens without one: the logit lens's.

    Returns:
        One row per word, metric and direction (``ABLATION_COLUMNS``); the (word, metric)s
        whose next word the metric cannot read in ``.attrs["skipped"]``, one record (a dict of
        :data:`~speech_interp.causal.readouts.SKIPPED_COLUMNS`) each.
    """
    ctx = run_context(model, remote, tokenizer, model_id)
    remote, L, tok = ctx.remote, ctx.n_layers, ctx.tokenizer
    label, streams = band_streams(band, L)
    items, skipped = word_items(utterances, layout, tok, metrics)
    if max_words is not None:
        keep = list(dict.fromkeys((i.utterance, i.word_index) for i in items))[:max_words]
        items = [i for i in items if (i.utterance, i.word_index) in set(keep)]
    if not items:
        raise ValueError("no spoken content word with a readable next word in the data")
    resolver = TargetResolver(tok, layout)
    randoms = random_directions(n_random, Unembedding.from_model(model).d_model, seed)
    if probes is not None:
        if not probe:
            raise ValueError("probes given but probe=False: pass one or the other")
        missing = [s for s in streams if s not in probes]
        if missing:
            raise ValueError(f"probes lack stream(s) {missing} of band {label}")
        probes = {s: probes[s] for s in streams}
    elif probe:
        probes = fit_probes(
            model, layout, utterances, streams, seed=seed, steps=probe_steps, remote=remote,
            tokenizer=tok,
        )  # fmt: skip
    else:
        probes = {}
    rows = []
    for item in tqdm(items, desc="ablate", disable=not progress):
        target = resolver(item.word)
        named = [("base", -1, {s: torch.zeros_like(randoms[0]) for s in streams})]
        if target.found:
            own = None if lens is None else lens.text_direction(streams[0], target.token_id)
            if own is None:
                d = text_directions(model, [target.token_id])[0]
                named.append(("text", -1, {s: d for s in streams}))
            else:
                dirs = {s: lens.text_direction(s, target.token_id) for s in streams}
                named.append(("text", -1, dirs))
        probe_dirs = {s: p.direction(item.word) for s, p in probes.items()}
        if probes and all(d is not None for d in probe_dirs.values()):
            named.append(("probe", -1, probe_dirs))
        named += [("random", i, {s: randoms[i] for s in streams}) for i in range(n_random)]
        metric = run_band_edits(
            model, item.ids, item.readout, item.positions, [dirs for *_, dirs in named], streams,
            L, Edit.project, remote=remote,
        )  # fmt: skip
        base = float(metric[0])
        for (direction, draw, _), value in zip(named[1:], metric[1:].tolist(), strict=True):
            rows.append(
                {
                    "model": ctx.model_id,
                    "backend": ctx.backend,
                    "band": label,
                    "utterance": item.utterance,
                    "word_index": item.word_index,
                    "word": item.word,
                    "metric": item.metric,
                    "direction": direction,
                    "draw": draw,
                    "base": base,
                    "ablated": value,
                    "effect": base - value,
                }
            )
    table = make_table(rows, ABLATION_COLUMNS)
    table.attrs["skipped"] = skipped.to_dict(orient="records")
    table.attrs["text_direction"] = text_direction_source(lens)
    return table


def text_direction_source(lens) -> str:
    """Which lens's read-out direction :func:`ablate` removes as ``text`` given ``lens``."""
    if lens is not None and lens.text_direction(0, 0) is not None:
        return lens.name
    return "logit"


def ablate_bands(
    model,
    layout: TokenLayout,
    utterances: Sequence[Utterance],
    bands: Sequence[str],
    *,
    probe: bool = True,
    seed: int = 0,
    probe_steps: int = 200,
    remote: bool | str = False,
    tokenizer=None,
    **kw,
) -> pd.DataFrame:
    """:func:`ablate` in every band, one table; with ``probe`` the probes are fit once for all
    the bands' streams (the same probes as fit band by band: each stream's is its own). ``kw``
    are :func:`ablate`'s other arguments."""
    probes = None
    if probe:
        L = run_context(model, remote, tokenizer).n_layers
        streams = sorted({s for b in bands for s in band_streams(b, L)[1]})
        probes = fit_probes(model, layout, utterances, streams, seed=seed, steps=probe_steps,
                            remote=remote, tokenizer=tokenizer)  # fmt: skip
    tables = [
        ablate(model, layout, utterances, band=b, probe=probe, probes=probes, seed=seed,
               probe_steps=probe_steps, remote=remote, tokenizer=tokenizer, **kw)
        for b in bands
    ]  # fmt: skip
    return pd.concat(tables, ignore_index=True)


def summarize_ablation(table: pd.DataFrame) -> pd.DataFrame:
    """Per (band, metric): mean effect of text / probe and mean, sd, 95th pct of random."""
    out = []
    for (band, metric), g in table.groupby(["band", "metric"], sort=False):
        rand = g[g["direction"] == "random"].groupby("draw")["effect"].mean()
        n_words = len(g[["utterance", "word_index"]].drop_duplicates())
        row = {"band": band, "metric": metric, "n_words": n_words}
        for direction in ("text", "probe"):
            row[f"{direction}_effect"] = float(g[g["direction"] == direction]["effect"].mean())
        row.update(
            random_mean=float(rand.mean()),
            random_sd=float(rand.std(ddof=1)),
            random_p95=float(np.quantile(rand, 0.95)) if len(rand) else np.nan,
        )
        out.append(row)
    return pd.DataFrame(out)


__all__ = [
    "Probe",
    "ablate",
    "ablate_bands",
    "effective_gain",
    "fit_probe",
    "fit_probes",
    "probe_data",
    "random_directions",
    "summarize_ablation",
    "text_directions",
]
