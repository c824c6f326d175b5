"""The SIMS / TWIST speech tokenizer: mHuBERT-25Hz hidden layer 11 + 500-centroid k-means.

Facts this module relies on (checked against public sources, no code copied):

- slamkit (github.com/slp-rl/slamkit), ``config/tokeniser/feature_extractor/mhubert_25.yaml``:
  the SIMS/SLAM tokeniser uses ``pretrained_model: slprl/mhubert-base-25hz``, ``layer: 11``,
  ``num_units: 500`` and the k-means file
  ``https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/
  mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin``. That file is *not* in the
  Hugging Face repo ``slprl/mhubert-base-25hz`` (which holds only config.json,
  model.safetensors and preprocessor_config.json).
- slamkit ``slamkit/feature_extractor/hubert_feature_extractor.py``: the k-means file is a
  joblib-pickled scikit-learn k-means model; the raw (un-normalised) 16 kHz waveform is
  zero-padded by 40 samples on each side, passed to ``HubertModel`` with
  ``output_hidden_states=True``, ``hidden_states[layer]`` is clustered with no feature
  normalisation, and the unit duration is ``prod(config.conv_stride) / 16000``.
- textlesslib ``textless/checkpoint_manager/manager.py`` lists the same file as
  "mhubert-base-25hz-kmeans-500" with sha256
  ``03cc04a9c24fec4285e73e709c485756d8f116aa8e724eac555de6a7cf8d28ad``.
- The model card of ``slprl/mhubert-base-25hz``: a 4th HuBERT iteration added one extra
  stride-2 convolution to the CNN encoder, turning 50 Hz features into 25 Hz ones
  (640 samples per frame).

The 40-sample padding equals ``(receptive_field - hop) / 2`` for that encoder
(720 - 640 = 80 samples), so ``n`` samples give ``n // 640`` frames and frame ``i`` is
centred on the middle of ``[i, i + 1) / 25`` seconds. :func:`conv_padding` derives it from the
config so tiny test models behave the same way.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from speech_interp.shipped import user_cache

from .audio import SAMPLE_RATE, check_frames
from .units import kmeans_assign

if TYPE_CHECKING:
    from transformers import HubertModel

DEFAULT_MODEL_ID = "slprl/mhubert-base-25hz"
DEFAULT_LAYER = 11
DEFAULT_KMEANS_URL = (
    "https://dl.fbaipublicfiles.com/textless_nlp/twist/speech_tokenizer/"
    "mhubert_base_25hz_cp_mls_cv_sp_fisher_L11_km500.bin"
)
DEFAULT_KMEANS_SHA256 = "03cc04a9c24fec4285e73e709c485756d8f116aa8e724eac555de6a7cf8d28ad"


def conv_padding(conv_kernel: list[int], conv_stride: list[int]) -> tuple[int, int]:
    """Left/right zero padding that makes the CNN encoder emit ``n // hop`` frames."""
    receptive, jump = 1, 1
    for kernel, stride in zip(conv_kernel, conv_stride, strict=True):
        receptive += (kernel - 1) * jump
        jump *= stride
    total = max(receptive - jump, 0)
    return total // 2, total - total // 2


class MHubertExtractor:
    """Units of a HuBERT hidden layer: nearest k-means centroid (SIMS / TWIST) or SpiritLM's
    linear quantizer (:class:`~speech_interp.speech.linear_quantizer.LinearQuantizer`)."""

    def __init__(
        self,
        model: HubertModel,
        centroids: Float[Tensor, "k dim"] | None = None,
        layer: int = DEFAULT_LAYER,
        *,
        quantizer=None,
    ):
        config = model.config
        if not 0 <= layer <= config.num_hidden_layers:
            raise ValueError(
                f"layer {layer} is out of range: the model has {config.num_hidden_layers} "
                f"transformer layers, so layer must be in [0, {config.num_hidden_layers}] "
                "(0 = input to the first layer)"
            )
        if (centroids is None) == (quantizer is None):
            raise ValueError("give exactly one of centroids (k-means) and quantizer")
        if quantizer is not None:
            dim = quantizer.encoder[0].in_features
            if dim != config.hidden_size:
                raise ValueError(
                    f"the quantizer reads {dim}-dim features but the model's hidden_size is "
                    f"{config.hidden_size}"
                )
        elif centroids.ndim != 2 or centroids.shape[1] != config.hidden_size:
            raise ValueError(
                f"centroids must have shape (k, {config.hidden_size}) to match the model's "
                f"hidden_size, got {tuple(centroids.shape)}"
            )
        self.model = model.eval()
        self.layer = layer
        self.quantizer = quantizer.eval() if quantizer is not None else None
        self.centroids = None if centroids is None else centroids.detach().to(torch.float32)
        self.hop = math.prod(config.conv_stride)
        self.padding = conv_padding(list(config.conv_kernel), list(config.conv_stride))

    @property
    def n_units(self) -> int:
        if self.quantizer is not None:
            return self.quantizer.vocab_size
        return int(self.centroids.shape[0])

    @property
    def frame_rate(self) -> float:
        return SAMPLE_RATE / self.hop

    @classmethod
    def from_pretrained(
        cls,
        model_id: str = DEFAULT_MODEL_ID,
        kmeans_path: str | Path | None = None,
        layer: int = DEFAULT_LAYER,
        *,
        cache_dir: str | Path | None = None,
    ) -> MHubertExtractor:
        """Load a Hugging Face HuBERT and its k-means centroids.

        ``kmeans_path`` may be a local file (joblib/pickled sklearn k-means, ``.npy`` or
        ``.safetensors``), an ``https://`` URL, or ``hf://<owner>/<repo>/<file>`` for a file
        on the Hugging Face Hub. ``None`` downloads the TWIST/SIMS layer-11 500-unit k-means
        (sha256-checked) into ``cache_dir`` (default :func:`speech_interp.shipped.user_cache`).
        """
        from transformers import HubertModel

        model = HubertModel.from_pretrained(model_id)
        path = resolve_kmeans_path(kmeans_path, cache_dir=cache_dir)
        return cls(model, load_centroids(path), layer=layer)

    @classmethod
    def spiritlm(
        cls,
        quantizer_path: str | Path,
        model_id: str = DEFAULT_MODEL_ID,
        layer: int = DEFAULT_LAYER,
    ) -> MHubertExtractor:
        """SpiritLM's HuBERT tokenizer: mHuBERT-25Hz layer 11 + its linear quantizer
        (``L11_quantizer_500.pt`` from SpiritLM's released speech tokenizer)."""
        from transformers import HubertModel

        from .linear_quantizer import LinearQuantizer

        model = HubertModel.from_pretrained(model_id)
        return cls(model, layer=layer, quantizer=LinearQuantizer.load(quantizer_path))

    def to(self, device: torch.device | str) -> MHubertExtractor:
        """Move the model and its quantizer (centroids) to ``device``."""
        self.model.to(device)
        if self.quantizer is not None:
            self.quantizer.to(device)
        else:
            self.centroids = self.centroids.to(device)
        return self

    @torch.no_grad()
    def features(self, wave: Float[Tensor, " samples"]) -> Float[Tensor, "frames dim"]:
        """``hidden_states[layer]`` for a 16 kHz mono waveform."""
        check_frames(wave, self.hop)
        device = next(self.model.parameters()).device
        padded = F.pad(wave.to(device=device, dtype=torch.float32), self.padding)
        out = self.model(padded.unsqueeze(0), output_hidden_states=True)
        return out.hidden_states[self.layer][0]

    def frame_units(self, wave: Float[Tensor, " samples"]) -> Int[Tensor, " frames"]:
        """Unit id of every 1 / frame_rate frame (nearest centroid, or the quantizer's rule)."""
        if self.quantizer is not None:
            return self.quantizer(self.features(wave)).cpu()
        return kmeans_assign(self.features(wave), self.centroids).cpu()


def resolve_kmeans_path(
    kmeans_path: str | Path | None, *, cache_dir: str | Path | None = None
) -> Path:
    """Turn a local path, URL or ``hf://`` reference into a local file path."""
    if kmeans_path is not None and not str(kmeans_path).startswith(("hf://", "http")):
        path = Path(kmeans_path)
        if not path.is_file():
            raise FileNotFoundError(f"k-means file not found: {path}")
        return path
    ref = str(kmeans_path) if kmeans_path is not None else DEFAULT_KMEANS_URL
    if ref.startswith("hf://"):
        from huggingface_hub import hf_hub_download

        parts = ref.removeprefix("hf://").split("/", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"expected hf://<owner>/<repo>/<filename>, got {ref!r}")
        return Path(hf_hub_download(repo_id=f"{parts[0]}/{parts[1]}", filename=parts[2]))
    cache = Path(cache_dir).expanduser() if cache_dir else user_cache()
    target = cache / ref.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        sha = DEFAULT_KMEANS_SHA256 if ref == DEFAULT_KMEANS_URL else None
        torch.hub.download_url_to_file(ref, str(target), hash_prefix=sha)
    return target


def load_centroids(path: str | Path) -> Float[Tensor, "k dim"]:
    """Centroids from ``.npy``, ``.safetensors`` or a joblib/pickled sklearn k-means.

    Pickled files execute code when loaded: only load k-means files from trusted sources.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-means file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        centroids = torch.from_numpy(np.load(path, allow_pickle=False))
    elif suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if "centroids" in tensors:
            centroids = tensors["centroids"]
        elif len(tensors) == 1:
            centroids = next(iter(tensors.values()))
        else:
            raise ValueError(
                f"{path}: expected a 'centroids' tensor or a single tensor, found {sorted(tensors)}"
            )
    else:
        import joblib

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn version-mismatch warnings on old pickles
            obj = joblib.load(path)
        if not hasattr(obj, "cluster_centers_"):
            raise ValueError(
                f"{path}: loaded a {type(obj).__name__}, which has no cluster_centers_ "
                "(expected a fitted sklearn KMeans / MiniBatchKMeans)"
            )
        centroids = torch.from_numpy(np.asarray(obj.cluster_centers_))
    if centroids.ndim != 2 or centroids.shape[0] == 0:
        raise ValueError(
            f"{path}: centroids must be a non-empty (k, dim) array, got {tuple(centroids.shape)}"
        )
    return centroids.to(torch.float32)
