"""The organism's utterances as audio for the lens viewer (:mod:`speech_interp.plotting.viewer`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

from speech_interp.data.utterances import Utterance
from speech_interp.organism.voices import HELDOUT_VOICES, TRAIN_VOICES, synthesize
from speech_interp.plotting.viewer import audio_entry
from speech_interp.speech.audio import SAMPLE_RATE


def organism_audio(utterances: Sequence[Utterance]) -> dict[int, dict]:
    """Re-synthesised audio of organism utterances (espeak-ng, each spoken word alone, as the
    organism's units were made), as the viewer's audio entries by utterance index; {} when
    espeak-ng is not installed."""
    if shutil.which("espeak-ng") is None:
        return {}
    voices = {v.name: v for v in TRAIN_VOICES + HELDOUT_VOICES}
    out: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, utt in enumerate(utterances):
            if utt.voice not in voices:
                continue
            parts, spans, t = [], [], 0.0
            for w in utt.words:
                if w.modality != "speech":
                    spans.append(None)
                    continue
                x = synthesize(w.word, voices[utt.voice], Path(tmp))
                spans.append((t, t + x.numel() / SAMPLE_RATE))
                t += x.numel() / SAMPLE_RATE
                parts.append(x)
            if parts:
                out[i] = audio_entry(torch.cat(parts), SAMPLE_RATE, spans)
    return out


__all__ = ["organism_audio"]
