"""The paper's evaluation on one or more checkpoints: fact set -> units -> lens (the paper's
protocol and ours) -> spoken knowledge -> the causal verdict per layer band, one table each.

Every step is a routine of its own (:mod:`speech_interp.data.factset`,
:mod:`speech_interp.data.factset_units`, :func:`speech_interp.lens.run_lens`,
:mod:`speech_interp.evaluation.protocol`, :mod:`speech_interp.evaluation.knowledge`,
:func:`speech_interp.causal.ablate_bands` + :func:`speech_interp.causal.verdicts`); this module
runs them in order for each model and gathers the frames. The bands are fixed before any
result: the intermediate streams 1..L-1 in three near-equal parts
(:func:`speech_interp.causal.band.thirds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from speech_interp.causal import ablate_bands, verdicts
from speech_interp.causal.band import thirds
from speech_interp.core.residuals import n_layers
from speech_interp.data.utterances import Utterance
from speech_interp.evaluation.knowledge import knowledge_scores, summarize_knowledge
from speech_interp.evaluation.protocol import (
    PAPER_KS,
    category_strength,
    protocol_table,
    strength_correlation,
    strength_layer,
)
from speech_interp.lens import run_lens


@dataclass
class Reproduction:
    """Everything one run measured, one frame per table (models stacked)."""

    lens: pd.DataFrame  # lens.csv rows
    protocol: pd.DataFrame  # both readings (PROTOCOL_COLUMNS)
    knowledge: pd.DataFrame  # one row per fact utterance x continuation
    knowledge_summary: pd.DataFrame
    strength: pd.DataFrame  # model, category, transcription strength, its layer
    correlation: dict
    verdicts: dict = field(default_factory=dict)  # model -> verdicts() content
    skipped: pd.DataFrame = field(default_factory=pd.DataFrame)  # unscored continuations


def reproduce_model(
    loaded,
    layout,
    utterances: Sequence[Utterance],
    *,
    model_id: str,
    lens="logit",
    causal: bool = True,
    max_words: int | None = 80,
    n_random: int = 20,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """One model's frames: lens (with the same lens's text ceiling), protocol table, knowledge
    scores, strength and verdict."""
    from speech_interp.lens import as_lens
    from speech_interp.lens.ceiling import text_ceiling

    result = run_lens(loaded, layout, utterances, lens=lens, ks=PAPER_KS, seed=seed,
                      model_id=model_id, progress=progress)  # fmt: skip
    ceiling = text_ceiling(loaded, layout, as_lens(lens, loaded), utterances, ks=PAPER_KS,
                           model_id=model_id, seed=seed)  # fmt: skip
    protocol = protocol_table(result.summary, result.words, seed=seed)
    scores, skipped = knowledge_scores(loaded, layout, utterances, model_id=model_id,
                                       progress=progress)  # fmt: skip
    L = n_layers(loaded)
    layer = strength_layer(result.words, L)
    categories = {u.id: u.meta.get("category") for u in utterances}
    strength = category_strength(result.words, categories, layer)
    strength.insert(0, "model", model_id)
    strength["layer"] = layer
    verdict = None
    if causal:
        bands = thirds(L)
        ablation = ablate_bands(loaded, layout, utterances, bands, probe=False, n_random=n_random,
                                seed=seed, max_words=max_words, model_id=model_id,
                                progress=progress)  # fmt: skip
        verdict = verdicts(result.words, ablation, bands=bands, seed=seed)
    skipped.insert(0, "model", model_id)
    lens_rows = pd.concat([result.summary, ceiling], ignore_index=True)
    return {"lens": lens_rows, "protocol": protocol, "knowledge": scores,
            "strength": strength, "verdict": verdict, "skipped": skipped}  # fmt: skip


def gather(parts: dict[str, dict], *, seed: int = 0) -> Reproduction:
    """The models' frames stacked, the knowledge summary and the strength-knowledge
    correlation over model x category points (speech prompt, text continuation)."""
    cat = {k: pd.concat([p[k] for p in parts.values()], ignore_index=True)
           for k in ("lens", "protocol", "knowledge", "strength", "skipped")}  # fmt: skip
    summary = summarize_knowledge(cat["knowledge"], seed=seed)
    text = summary[(summary["continuation"] == "text") & (summary["category"] != "all")]
    points = text.merge(cat["strength"], on=["model", "category"], how="inner")
    return Reproduction(
        lens=cat["lens"], protocol=cat["protocol"], knowledge=cat["knowledge"],
        knowledge_summary=summary, strength=cat["strength"],
        correlation=strength_correlation(points, seed=seed),
        verdicts={m: p["verdict"] for m, p in parts.items() if p["verdict"] is not None},
        skipped=cat["skipped"],
    )  # fmt: skip


__all__ = ["Reproduction", "gather", "reproduce_model"]
