import pytest
import torch

from speech_interp.hooks import SpecError, detect_family, generic_spec, get_family
from speech_interp.testing import FAMILY_TOKENS, tiny_tokenizer


@pytest.mark.parametrize(
    "family",
    ["sims", "spiritlm", "spiritlm-expressive", "organism", "speechgpt", "llama-mimi",
     "glm-4-voice"],
)  # fmt: skip
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


def test_begin_end_markers_and_multi_level_codes():
    from speech_interp.data import build_prompt

    # SpeechGPT: <sosp> units <eosp> around every speech span, no marker before text
    tok = tiny_tokenizer("speechgpt")
    layout = detect_family(tok).bind(tok)
    vocab = tok.get_vocab()
    assert (layout.n_units, layout.speech_begin_id, layout.speech_end_id) == (
        1000,
        vocab["<sosp>"],
        vocab["<eosp>"],
    )
    assert layout.text_mask[[vocab["<sosp>"], vocab["<eosp>"], vocab["<999>"]]].sum() == 0
    p = build_prompt(layout, tok, ["the", "cat", "sees"], ["text", "speech", "speech"],
                     [None, [5, 661], [987]], bos=False)  # fmt: skip
    assert tok.convert_ids_to_tokens(p.input_ids.tolist()) == [
        "Ġthe", "<sosp>", "<5>", "<661>", "<987>", "<eosp>",
    ]  # fmt: skip
    assert [w.tolist() for w in p.word_positions] == [[0], [2, 3], [4]]
    # Llama-Mimi: <code_level> tokens, unit id = code * 4 + level, whole frames per word
    tok = tiny_tokenizer("llama-mimi")
    layout = detect_family(tok).bind(tok)
    assert layout.n_units == 8192 and layout.spec.levels == 4 and not layout.spec.dedup
    frame = [7 * 4 + level for level in range(4)]  # code 7 at levels 0..3
    assert tok.convert_ids_to_tokens(layout.units_to_tokens(frame).tolist()) == [
        "<7_0>", "<7_1>", "<7_2>", "<7_3>",
    ]  # fmt: skip
    p = build_prompt(layout, tok, ["cat", "dog"], "speech", [frame, frame + frame], bos=False)
    tokens = tok.convert_ids_to_tokens(p.input_ids.tolist())
    assert tokens[0] == "<audio>" and tokens[-1] == "</audio>" and len(tokens) == 2 + 12
    assert [len(w) for w in p.word_positions] == [4, 8]  # a word's positions: all its frames
    with pytest.raises(SpecError, match="whole frames"):
        build_prompt(layout, tok, ["cat"], "speech", [frame[:3]])
    with pytest.raises(SpecError, match="expected level 0"):
        build_prompt(layout, tok, ["cat"], "speech", [frame[1:] + frame[:1]])
    # eight levels where the family has four: a clear error, not a wrong layout
    bad = tiny_tokenizer("text-only")
    bad.add_tokens([f"<{c}_{lv}>" for c in range(200) for lv in range(8)])
    with pytest.raises(SpecError, match=r"level [4-7] but llama-mimi has 4"):
        get_family("llama-mimi").bind(bad)
    # GLM-4-Voice: detected from its audio tokens; remote code is declared
    tok = tiny_tokenizer("glm-4-voice")
    spec = detect_family(tok)
    assert spec.name == "glm-4-voice" and spec.remote_code and spec.n_units == 16384
    from speech_interp.hooks import module_paths

    with pytest.raises(SpecError, match="not mapped yet"):
        module_paths("chatglm")
