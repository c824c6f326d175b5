"""The mHuBERT-25Hz + k-means extractor, on a tiny random HuBERT (no downloads)."""

import joblib
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.cluster import KMeans
from transformers import HubertConfig, HubertModel

from speech_interp.speech import MHubertExtractor, extract_units, load_centroids
from speech_interp.speech.mhubert import conv_padding

# mHuBERT-25Hz: HuBERT-base's 7 conv layers plus one extra kernel-2 stride-2 layer.
KERNELS = (10, 3, 3, 3, 3, 2, 2, 2)
STRIDES = (5, 2, 2, 2, 2, 2, 2, 2)


def tiny_model(layers: int = 3) -> HubertModel:
    torch.manual_seed(0)
    config = HubertConfig(
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(8,) * len(KERNELS),
        conv_kernel=KERNELS,
        conv_stride=STRIDES,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
    )
    return HubertModel(config).eval()


def centroids(k: int = 7, dim: int = 32) -> torch.Tensor:
    return torch.randn(k, dim, generator=torch.Generator().manual_seed(1))


def test_frame_rate_from_conv_strides():
    ex = MHubertExtractor(tiny_model(), centroids(), layer=2)
    assert ex.hop == 640
    assert ex.frame_rate == 25.0
    assert ex.n_units == 7


def test_padding_matches_mhubert_25hz():
    # slamkit pads the waveform by 40 samples per side for mhubert-base-25hz.
    assert conv_padding(list(KERNELS), list(STRIDES)) == (40, 40)
    assert conv_padding([10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]) == (40, 40)


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_units_match_independent_computation(layer):
    model = tiny_model()
    cents = centroids()
    wave = torch.randn(16_000 + 300, generator=torch.Generator().manual_seed(2)) * 0.1
    units = MHubertExtractor(model, cents, layer=layer).frame_units(wave)
    with torch.no_grad():
        hidden = model(F.pad(wave, (40, 40))[None], output_hidden_states=True).hidden_states
    expected = torch.cdist(hidden[layer][0].double(), cents.double()).argmin(dim=1)
    assert units.shape == (25,)
    assert torch.equal(units, expected)


def test_extract_units_timing():
    ex = MHubertExtractor(tiny_model(), centroids(), layer=1)
    seq = extract_units(ex, torch.randn(640 * 10) * 0.1, dedup=False)
    assert len(seq) == 10
    assert float(seq.ends[-1]) == pytest.approx(0.4)


def test_layer_out_of_range():
    with pytest.raises(ValueError, match=r"layer 4 is out of range.*3 transformer layers"):
        MHubertExtractor(tiny_model(), centroids(), layer=4)
    with pytest.raises(ValueError, match="layer -1 is out of range"):
        MHubertExtractor(tiny_model(), centroids(), layer=-1)


def test_centroid_dim_mismatch():
    with pytest.raises(ValueError, match=r"shape \(k, 32\).*hidden_size"):
        MHubertExtractor(tiny_model(), centroids(dim=16), layer=2)


def test_audio_too_short():
    ex = MHubertExtractor(tiny_model(), centroids(), layer=2)
    with pytest.raises(ValueError, match="audio too short: 500 samples"):
        ex.frame_units(torch.randn(500))


def test_load_centroids_formats(tmp_path):
    feats = np.random.default_rng(0).normal(size=(50, 4))
    km = KMeans(n_clusters=3, n_init=1, random_state=0).fit(feats)
    expected = torch.from_numpy(km.cluster_centers_).float()

    joblib.dump(km, tmp_path / "km.bin")
    np.save(tmp_path / "km.npy", km.cluster_centers_)
    save_file({"centroids": expected}, str(tmp_path / "km.safetensors"))
    for name in ("km.bin", "km.npy", "km.safetensors"):
        got = load_centroids(tmp_path / name)
        assert got.dtype == torch.float32
        assert torch.allclose(got, expected), name


def test_load_centroids_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="k-means file not found"):
        load_centroids(tmp_path / "absent.bin")
    joblib.dump({"not": "kmeans"}, tmp_path / "bad.bin")
    with pytest.raises(ValueError, match="no cluster_centers_"):
        load_centroids(tmp_path / "bad.bin")
    np.save(tmp_path / "flat.npy", np.zeros(5))
    with pytest.raises(ValueError, match=r"\(k, dim\)"):
        load_centroids(tmp_path / "flat.npy")


def test_from_pretrained_local(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path / "model")
    np.save(tmp_path / "km.npy", centroids().numpy())
    ex = MHubertExtractor.from_pretrained(str(tmp_path / "model"), tmp_path / "km.npy", layer=3)
    wave = torch.randn(640 * 4) * 0.1
    direct = MHubertExtractor(model, centroids(), layer=3)
    assert torch.equal(ex.frame_units(wave), direct.frame_units(wave))
