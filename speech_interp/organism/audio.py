"""The organism's utterances as audio for the lens viewer (:mod:`speech_interp.plotting.viewer`)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

from speech_interp.data.utterances import Utterance
from speech_interp.organism.voices import HELDOUT_VOICES, TRAIN_VOICES, speak
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
            spoken = [w.word for w in utt.words if w.modality == "speech"]
            if not spoken:
                continue
            wave, timed = speak(spoken, voices[utt.voice], Path(tmp))
            spans = [timed.pop(0) if w.modality == "speech" else None for w in utt.words]
            out[i] = audio_entry(wave, SAMPLE_RATE, spans)
    return out


__all__ = ["organism_audio"]
