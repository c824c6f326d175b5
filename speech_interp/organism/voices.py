"""espeak-ng speech for every lexicon word in several voices, turned into deduplicated units.

Each word is synthesised alone, trimmed of leading/trailing silence, featurised (MFCC + deltas at
25 Hz), normalised per voice variant (mean/variance over all that variant's frames, a speaker
normalisation), and quantised by k-means fit on the *training* variants only. Held-out variants
are used only for evaluation. A word's unit span inside a sentence is therefore known exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.cluster import KMeans
from tqdm import tqdm

from speech_interp.speech import (
    SAMPLE_RATE,
    MfccKMeansExtractor,
    MfccSettings,
    dedup_units,
    kmeans_assign,
    load_audio,
)


@dataclass(frozen=True)
class Voice:
    """One espeak-ng voice / rate / pitch variant."""

    name: str
    voice: str
    rate: int
    pitch: int

    def args(self) -> list[str]:
        return ["-v", self.voice, "-s", str(self.rate), "-p", str(self.pitch)]


TRAIN_VOICES = (
    Voice("us-140", "en-us", 140, 50),
    Voice("us-175", "en-us", 175, 50),
    Voice("gb-140", "en-gb", 140, 50),
    Voice("gb-175", "en-gb", 175, 50),
)
HELDOUT_VOICES = (
    Voice("us-155-p70", "en-us", 155, 70),  # seen speaker, unseen rate and pitch
    Voice("gb-scotland-155", "en-gb-scotland", 155, 50),  # unseen accent
)
TRIM_PEAK = 0.02  # samples below 2% of the word's peak at either end are silence


def require_espeak() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(
            "espeak-ng is not installed; the organism's speech needs it "
            "(Debian/Ubuntu: apt-get install espeak-ng sox)"
        )
    return path


def synthesize(word: str, voice: Voice, workdir: Path) -> torch.Tensor:
    """16 kHz mono waveform of one word, silence trimmed."""
    out = workdir / f"{voice.name}-{word}.wav"
    subprocess.run(
        [require_espeak(), *voice.args(), "-w", str(out), word], check=True, capture_output=True
    )
    wave = load_audio(out)
    loud = torch.nonzero(wave.abs() >= TRIM_PEAK * wave.abs().max()).flatten()
    return wave[int(loud[0]) : int(loud[-1]) + 1]


def speak(
    words: Sequence[str], voice: Voice, workdir: Path, gap: float = 0.0
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """One waveform at SAMPLE_RATE of ``words``, each synthesised alone (:func:`synthesize`), with
    ``gap`` seconds of silence after it, and each word's ``(start, end)`` in seconds."""
    pieces, spans, t = [], [], 0.0
    silence = torch.zeros(int(gap * SAMPLE_RATE))
    for word in words:
        wave = synthesize(word, voice, workdir)
        spans.append((t, t + wave.numel() / SAMPLE_RATE))
        pieces += [wave, silence] if len(silence) else [wave]
        t += (wave.numel() + len(silence)) / SAMPLE_RATE
    return torch.cat(pieces), spans


@dataclass
class SpeechTable:
    """Unit ids of every (word, voice) pair plus the extractor that made them."""

    units: dict[str, dict[str, list[int]]]  # voice name -> word -> units
    extractor: MfccKMeansExtractor
    voices: dict[str, Voice]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.extractor.save(directory / "units.safetensors")
        meta = {"units": self.units, "voices": {k: asdict(v) for k, v in self.voices.items()}}
        (directory / "speech_table.json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, directory: Path) -> SpeechTable:
        meta = json.loads((directory / "speech_table.json").read_text())
        voices = {k: Voice(**v) for k, v in meta["voices"].items()}
        extractor = MfccKMeansExtractor.load(directory / "units.safetensors")
        return cls(meta["units"], extractor, voices)


def cache_key(words: list[str], n_units: int, seed: int) -> str:
    blob = json.dumps(
        [words, n_units, seed, [asdict(v) for v in TRAIN_VOICES + HELDOUT_VOICES], TRIM_PEAK]
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_speech_table(
    words: list[str], *, n_units: int = 64, seed: int = 0, progress: bool = True
) -> SpeechTable:
    """Synthesise all words in all voices and quantise them into units."""
    settings = MfccSettings(normalize=False)
    featurizer = MfccKMeansExtractor(torch.zeros(1, settings.dim), settings)
    voices = TRAIN_VOICES + HELDOUT_VOICES
    jobs = [(w, v) for v in voices for w in words]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=4) as pool:
        waves = list(
            tqdm(
                pool.map(lambda job: synthesize(job[0], job[1], Path(tmp)), jobs),
                total=len(jobs),
                desc="espeak-ng",
                disable=not progress,
            )
        )
    feats: dict[str, dict[str, torch.Tensor]] = {v.name: {} for v in voices}
    for (word, voice), wave in zip(jobs, waves, strict=True):
        feats[voice.name][word] = featurizer.features(wave)
    for name, per_word in feats.items():  # per-voice mean/variance normalisation
        stacked = torch.cat(list(per_word.values()))
        mean, std = stacked.mean(0), stacked.std(0) + 1e-5
        feats[name] = {w: (f - mean) / std for w, f in per_word.items()}
    train = torch.cat([f for v in TRAIN_VOICES for f in feats[v.name].values()]).numpy()
    km = KMeans(n_clusters=n_units, n_init=4, random_state=seed).fit(train.astype(np.float64))
    centroids = torch.tensor(km.cluster_centers_, dtype=torch.float32)
    extractor = MfccKMeansExtractor(centroids, MfccSettings(normalize=True))
    units = {
        name: {
            w: dedup_units(kmeans_assign(f, centroids), 25.0).units.tolist()
            for w, f in per_word.items()
        }
        for name, per_word in feats.items()
    }
    return SpeechTable(units, extractor, {v.name: v for v in voices})
