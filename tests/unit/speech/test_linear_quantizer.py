"""SpiritLM's linear quantizer: its checkpoint format, the blank rule on hand-made logits, and as
the unit classifier of the mHuBERT extractor on a tiny random HuBERT (no downloads)."""

import pytest
import torch
import torch.nn.functional as F
from transformers import HubertConfig, HubertModel

from speech_interp.speech import LinearQuantizer, MHubertExtractor

BLANK = 5  # vocab_size 5: units 0..4, output 5 is the blank


def logits_for(codes):
    """Hand-made logits whose argmax is ``codes``."""
    return F.one_hot(torch.tensor(codes), BLANK + 1).float() * 3.0


def reference_fill(codes, blank):
    """SpiritLM's loop: each blank takes the (flattened, rolled) code before it, until none."""
    code = torch.tensor(codes)
    while (code == blank).any():
        code[code == blank] = torch.roll(code, 1)[code == blank]
    return code.tolist()


@pytest.mark.parametrize(
    "codes", [[3, 5, 5, 1, 5], [5, 2, 4], [0, 1, 2], [5, 5, 4, 5], [2, 5, 5, 5, 5, 5]]
)
def test_blanks_take_the_unit_before_them(codes):
    q = LinearQuantizer(dim=16, upstream_dim=20, vocab_size=BLANK)
    got = q.units_from_logits(logits_for(codes)).tolist()
    assert got == reference_fill(codes, BLANK)
    assert BLANK not in got


def test_all_blank_is_an_error():
    q = LinearQuantizer(dim=16, upstream_dim=20, vocab_size=BLANK)
    with pytest.raises(ValueError, match="every frame was classified blank"):
        q.units_from_logits(logits_for([5, 5, 5]))


def test_checkpoint_round_trip_and_layer_sizes(tmp_path):
    torch.manual_seed(0)
    q = LinearQuantizer(dim=32, upstream_dim=48, vocab_size=7)  # out 8, mid 40: 32 -> 22 -> 12
    assert [m.out_features for m in q.encoder if isinstance(m, torch.nn.Linear)] == [22, 12, 8]
    path = tmp_path / "L11_quantizer_7.pt"
    torch.save({"model_cfg": {"vocab_size": 7, "dim": 32, "upstream_dim": 48},
                "model_weight": q.encoder.state_dict()}, path)  # fmt: skip
    assert set(torch.load(path, weights_only=True)["model_weight"]) == {
        f"{i}.{p}" for i in (0, 2, 4) for p in ("weight", "bias")
    }
    loaded = LinearQuantizer.load(path)
    x = torch.randn(9, 32)
    assert torch.equal(loaded(x), q(x))
    torch.save({"model_cfg": {"vocab_size": 7, "dim": 32, "upstream_dim": 50},
                "model_weight": q.encoder.state_dict()}, path)  # fmt: skip
    with pytest.raises(ValueError, match="model_weight does not fit model_cfg"):
        LinearQuantizer.load(path)
    with pytest.raises(FileNotFoundError, match="L11_quantizer_500.pt"):
        LinearQuantizer.load(tmp_path / "missing.pt")


def test_extractor_with_the_quantizer():
    torch.manual_seed(0)
    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(8,) * 8,
                          conv_kernel=(10, 3, 3, 3, 3, 2, 2, 2),
                          conv_stride=(5, 2, 2, 2, 2, 2, 2, 2),
                          num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4)  # fmt: skip
    model = HubertModel(config).eval()
    q = LinearQuantizer(dim=32, upstream_dim=48, vocab_size=7)
    ex = MHubertExtractor(model, layer=2, quantizer=q)
    wave = torch.randn(640 * 12, generator=torch.Generator().manual_seed(3)) * 0.1
    with torch.no_grad():
        hidden = model(F.pad(wave, (40, 40))[None], output_hidden_states=True).hidden_states[2][0]
    assert ex.n_units == 7 and torch.equal(ex.frame_units(wave), q(hidden))
    with pytest.raises(ValueError, match="exactly one of centroids"):
        MHubertExtractor(model, torch.randn(7, 32), layer=2, quantizer=q)
    with pytest.raises(ValueError, match="reads 16-dim features"):
        MHubertExtractor(model, layer=2, quantizer=LinearQuantizer(16, 20, 5))
