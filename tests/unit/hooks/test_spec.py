import pytest
import torch

from speech_interp.hooks import SpecError, detect_family, generic_spec, get_family
from speech_interp.testing import FAMILY_TOKENS, tiny_tokenizer


@pytest.mark.parametrize("family", ["sims", "spiritlm", "spiritlm-expressive", "organism"])
def test_detect_family_from_vocabulary(family):
    assert detect_family(tiny_tokenizer(family)).name == family


def test_text_only_tokenizer_is_rejected():
    with pytest.raises(SpecError, match="no speech-unit tokens"):
        detect_family(tiny_tokenizer("text-only"))


def test_unknown_family_name():
    with pytest.raises(SpecError, match="unknown family 'nope'"):
        get_family("nope")


def test_sims_layout_maps_units_and_masks():
    tok = tiny_tokenizer("sims")
    layout = get_family("sims").bind(tok)
    vocab = tok.get_vocab()
    assert layout.n_units == 500
    assert layout.units_to_tokens([0, 5, 499]).tolist() == [
        vocab["<Un0>"],
        vocab["<Un5>"],
        vocab["<Un499>"],
    ]
    assert layout.tokens_to_units([vocab["<Un7>"], vocab["Ġcat"]]).tolist() == [7, -1]
    assert layout.speech_marker_id == vocab["<speech>"]
    assert layout.text_marker_id == vocab["<text>"]
    text = layout.text_mask
    assert text[vocab["Ġcat"]] and not text[vocab["<Un3>"]] and not text[vocab["<speech>"]]
    assert not text[tok.bos_token_id] and not text[tok.pad_token_id]
    n_text = len(vocab) - 500 - 2 - len(set(tok.all_special_ids))
    assert int(text.sum()) == n_text


def test_expressive_layout_marks_pitch_and_style_as_speech():
    tok = tiny_tokenizer("spiritlm-expressive")
    layout = detect_family(tok).bind(tok)
    vocab = tok.get_vocab()
    assert layout.n_units == 501
    assert len(layout.extra_speech_ids["pitch"]) == 64
    assert len(layout.extra_speech_ids["style"]) == 100
    assert layout.speech_mask[vocab["[Pi3]"]] and layout.speech_mask[vocab["[St99]"]]
    assert not layout.text_mask[vocab["[Pi3]"]]


def test_unit_out_of_range_names_the_unit():
    layout = get_family("sims").bind(tiny_tokenizer("sims"))
    with pytest.raises(SpecError, match="unit id 500 is outside"):
        layout.units_to_tokens([3, 500])
    with pytest.raises(SpecError, match="unit id -1"):
        layout.units_to_tokens(torch.tensor([-1]))


def test_tokenizer_larger_than_model_is_rejected():
    tok = tiny_tokenizer("sims")
    with pytest.raises(SpecError, match="tokenizer does not match the model"):
        get_family("sims").bind(tok, model_vocab_size=len(tok) - 10)


def test_padding_rows_beyond_tokenizer_are_not_text():
    tok = tiny_tokenizer("sims")
    layout = get_family("sims").bind(tok, model_vocab_size=len(tok) + 8)
    assert layout.vocab_size == len(tok) + 8
    assert not layout.text_mask[len(tok) :].any()


def test_generic_spec_with_custom_pattern():
    tok = tiny_tokenizer("text-only")
    tok.add_tokens([f"<a_{i}>" for i in range(10)] + ["<go_speech>"])
    spec = generic_spec(r"<a_(\d+)>", speech_marker="<go_speech>")
    layout = spec.bind(tok)
    assert layout.n_units == 10 and layout.text_marker_id is None
    assert layout.speech_marker_id == tok.get_vocab()["<go_speech>"]


def test_non_contiguous_units_are_rejected():
    tok = tiny_tokenizer("text-only")
    tok.add_tokens(["<Un0>", "<Un2>", "<speech>", "<text>"])
    with pytest.raises(SpecError, match="not contiguous"):
        generic_spec(r"<Un(\d+)>").bind(tok)


def test_family_token_tables_cover_real_layouts():
    units, markers = FAMILY_TOKENS["sims"]
    assert units[0] == "<Un0>" and units[-1] == "<Un499>" and markers == ["<speech>", "<text>"]
