"""The lens viewer: one self-contained HTML page (no request leaves it) per set of models.

Per utterance: the tokens with their words, modality and markers, each spoken word's uniqueness
point; the layer x token grid coloured by the probability of the spoken word's own text token
(or, toggled, of the top-1 text token), each cell's hover listing the top-k text tokens with
probabilities and ranks; the phase bands beside the layers. A summary panel draws the phase
curves with CIs (transcription at or after the uniqueness point, its control, its pre-onset
rate) and lists the verdicts when given; with audio (:func:`audio_entry`), a player plays the
utterance and a click on a word plays its span. The page is ``viewer_template.html`` with the
data inlined as JSON; its script is plain JavaScript written for it (no library).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import pandas as pd
import torch

from speech_interp.artifacts import write_text
from speech_interp.data.prompt import MODALITY_NAMES
from speech_interp.data.targets import TargetResolver
from speech_interp.data.uniqueness import uniqueness_points
from speech_interp.data.utterances import Utterance
from speech_interp.lens.grid import lens_grid
from speech_interp.lens.plan import word_unit_positions
from speech_interp.models import tokenizer_of

TEMPLATE = "viewer_template.html"
AUDIO_RATE = 8000  # embedded audio: 8 kHz, 8-bit PCM WAV (small, intelligible)
CURVES = (
    ("transcription", "after_uniqueness", "transcription"),
    ("transcription_control", "after_uniqueness", "control"),
    ("transcription", "pre_onset", "pre-onset"),
)


def _round(x: float, digits: int = 3):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, digits)


def _utterance_frame(utt: Utterance, prompt, layout, points, resolver) -> tuple[dict, torch.Tensor]:
    """Tokens and words of one utterance, and each position's own target (-1: none)."""
    ids = prompt.input_ids.tolist()
    words, own = [], torch.full((len(ids),), -1, dtype=torch.long)
    for w, word in enumerate(utt.words):
        pos = prompt.word_positions[w].tolist()
        entry = {"word": word.word, "modality": word.modality, "positions": pos, "up": None}
        if word.modality == "speech":
            unit_pos = word_unit_positions(prompt, layout, w, len(word.units))
            entry["up"] = unit_pos[points[w].index]
            entry["unique"] = points[w].unique
            target = resolver(word.word)
            entry["target"] = target.token_id
            if target.found:
                own[pos] = target.token_id
        words.append(entry)
    modality = [MODALITY_NAMES[m] for m in prompt.token_modality.tolist()]
    frame = {
        "id": utt.id,
        "text": utt.text,
        "voice": utt.voice,
        "tokens": ids,
        "modality": modality,
        "word_of": prompt.token_word.tolist(),
        "words": words,
    }
    return frame, own


def _summary(summary: pd.DataFrame | None, bands: pd.DataFrame | None, verdicts) -> dict:
    out: dict = {"curves": {}, "bands": {}, "verdicts": []}
    if summary is not None:
        sel = summary[(summary["k"] == 5) & (summary["vocab"] == "text")]
        sel = sel[sel["words"] == "content"]
        for metric, rule, label in CURVES:
            rows = sel[(sel["metric"] == metric) & (sel["position_rule"] == rule)]
            rows = rows.sort_values("layer")
            out["curves"][label] = [
                [int(r.layer), _round(r.value), _round(r.ci_low), _round(r.ci_high)]
                for r in rows.itertuples()
            ]
    if bands is not None:
        for b in bands.itertuples():
            span = None if pd.isna(b.first_layer) else [int(b.first_layer), int(b.last_layer)]
            out["bands"][b.phase] = span
    for entry in (verdicts or {}).get("bands", []):
        dec = entry["decodable_rate"]
        cau = entry["causal_effect"]
        out["verdicts"].append(
            {
                "band": entry["band"],
                "verdict": entry["verdict"],
                "excess": _round(dec.get("excess")),
                "excess_pre_onset": _round(dec.get("excess_pre_onset")),
                "effect": _round(cau.get("effect")),
                "effect_ci": [_round(cau.get("ci_low")), _round(cau.get("ci_high"))],
            }
        )
    return out


def viewer_grids(
    model, layout, utterances: Sequence[Utterance], lens="logit", k: int = 5
) -> list[dict]:
    """One model's part of the viewer: per utterance its lens grid (top-k text tokens with
    probabilities, the own token's probability and rank) as JSON-ready lists."""
    tok = tokenizer_of(model)
    resolver = TargetResolver(tok, layout)
    points = uniqueness_points(utterances)
    grids = []
    for i, utt in enumerate(utterances):
        prompt = utt.to_prompt(layout, tok)
        _, own = _utterance_frame(utt, prompt, layout, points[i], resolver)
        g = lens_grid(model, layout, prompt, own, lens, k=k)
        grids.append({
            "top": g.top_ids.tolist(),
            "p": [[[_round(x) for x in cell] for cell in row] for row in g.top_probs.tolist()],
            "own_p": [[_round(x, 4) for x in row] for row in g.own_prob.tolist()],
            "own_r": [[None if math.isnan(x) else int(x) for x in row]
                      for row in g.own_rank.tolist()],
        })  # fmt: skip
    return grids


def viewer_data(
    models: Mapping[str, tuple],
    utterances: Sequence[Utterance],
    *,
    lens="logit",
    k: int = 5,
    summaries: Mapping[str, pd.DataFrame] | None = None,
    bands: Mapping[str, pd.DataFrame] | None = None,
    verdicts: Mapping[str, dict] | None = None,
    audio: Mapping[int, dict] | None = None,
    warnings: Mapping[str, str | None] | None = None,
) -> dict:
    """JSON-ready data of the viewer: ``models`` maps a name to ``(model, layout)``; all models
    must share one tokenizer layout (e.g. the organism's variants). ``lens``: a registered lens
    name or a Lens object (a fitted :class:`~speech_interp.lens.TunedLens`). ``audio``: per
    utterance index, :func:`audio_entry` (e.g. :func:`organism_audio`). ``warnings``: per model,
    a line shown above its curves (:func:`speech_interp.lens.quality.quality_warning`)."""
    if not models:
        raise ValueError("the viewer needs at least one model")
    utterances = list(utterances)
    if not utterances:
        raise ValueError("the viewer needs at least one utterance")
    first_model, layout = next(iter(models.values()))
    grids = {}
    for name, (model, mlayout) in models.items():
        if mlayout.vocab_size != layout.vocab_size:
            raise ValueError(f"model {name!r} has another vocabulary than {next(iter(models))!r}")
        grids[name] = viewer_grids(model, mlayout, utterances, lens, k)
    name = lens if isinstance(lens, str) else getattr(lens, "name", type(lens).__name__)
    return assemble_viewer(
        tokenizer_of(first_model), layout, utterances, grids, lens_name=name, k=k,
        summaries=summaries, bands=bands, verdicts=verdicts, audio=audio, warnings=warnings,
    )  # fmt: skip


def assemble_viewer(
    tokenizer,
    layout,
    utterances: Sequence[Utterance],
    grids: Mapping[str, list[dict]],
    *,
    lens_name: str = "logit",
    k: int = 5,
    summaries: Mapping[str, pd.DataFrame] | None = None,
    bands: Mapping[str, pd.DataFrame] | None = None,
    verdicts: Mapping[str, dict] | None = None,
    audio: Mapping[int, dict] | None = None,
    warnings: Mapping[str, str | None] | None = None,
) -> dict:
    """The viewer's data from each model's :func:`viewer_grids` (computed anywhere, e.g. in
    worker processes): the utterances' tokens and words, the summaries and the vocabulary."""
    utterances = list(utterances)
    resolver = TargetResolver(tokenizer, layout)
    points = uniqueness_points(utterances)
    frames = [
        _utterance_frame(u, u.to_prompt(layout, tokenizer), layout, points[i], resolver)[0]
        for i, u in enumerate(utterances)
    ]
    seen: set[int] = set()
    variants: dict = {}
    for name, model_grids in grids.items():
        for g in model_grids:
            seen.update(i for layer in g["top"] for cell in layer for i in cell)
        variants[name] = {
            "grids": model_grids,
            "summary": _summary(
                (summaries or {}).get(name), (bands or {}).get(name), (verdicts or {}).get(name)
            ),
        }
        if (warnings or {}).get(name):
            variants[name]["summary"]["warning"] = warnings[name]
    for i, frame in enumerate(frames):
        frame["audio"] = (audio or {}).get(i)
        seen.update(frame["tokens"])
        seen.update(w["target"] for w in frame["words"] if w.get("target", -1) >= 0)
    ids = sorted(i for i in seen if i >= 0)
    vocab = dict(zip(map(str, ids), tokenizer.batch_decode([[i] for i in ids]), strict=True))
    return {"lens": lens_name, "k": k, "family": layout.spec.name, "vocab": vocab,
            "utterances": frames, "variants": variants}  # fmt: skip


def audio_entry(wave: torch.Tensor, sample_rate: int, spans) -> dict:
    """An utterance's audio for the viewer: a data URI of 8 kHz 8-bit WAV and each word's
    ``(start, end)`` seconds (None for a word without audio, e.g. a text word)."""
    import base64
    import io
    import wave as wav

    from speech_interp.speech.audio import require_torchaudio

    ta = require_torchaudio()
    x = ta.functional.resample(wave.float()[None], sample_rate, AUDIO_RATE)[0]
    x = x / x.abs().max().clamp_min(1e-8)
    pcm = ((x * 127).round().clamp(-128, 127) + 128).to(torch.uint8).numpy().tobytes()
    buf = io.BytesIO()
    with wav.open(buf, "wb") as fh:
        fh.setnchannels(1)
        fh.setsampwidth(1)
        fh.setframerate(AUDIO_RATE)
        fh.writeframes(pcm)
    uri = "data:audio/wav;base64," + base64.b64encode(buf.getvalue()).decode()
    return {"src": uri, "spans": [None if s is None else [_round(s[0]), _round(s[1])]
                                  for s in spans]}  # fmt: skip


def write_viewer(path: str | Path, data: dict) -> Path:
    """The self-contained page: the template with ``data`` inlined (``</`` escaped)."""
    template = resources.files("speech_interp.plotting").joinpath(TEMPLATE).read_text()
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return write_text(Path(path), template.replace("__VIEWER_DATA__", payload))


__all__ = [
    "assemble_viewer",
    "audio_entry",
    "viewer_data",
    "viewer_grids",
    "write_viewer",
]
