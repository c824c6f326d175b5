import pytest
import torch

from speech_interp.data import MARKER, SPECIAL, SPEECH, TEXT, build_prompt
from speech_interp.hooks import SpecError, get_family
from speech_interp.speech import WordSpan, utterance_units
from speech_interp.testing import tiny_tokenizer


@pytest.fixture(scope="module")
def sims():
    tok = tiny_tokenizer("sims")
    return get_family("sims").bind(tok), tok


def test_speech_only_prompt_positions(sims):
    layout, tok = sims
    p = build_prompt(layout, tok, ["the", "cat"], "speech", [[4, 9], [9, 1, 2]])
    v = tok.get_vocab()
    expected = [tok.bos_token_id, v["<speech>"], v["<Un4>"], v["<Un9>"], v["<Un9>"]]
    expected += [v["<Un1>"], v["<Un2>"]]
    assert p.input_ids.tolist() == expected
    assert [x.tolist() for x in p.word_positions] == [[2, 3], [4, 5, 6]]
    assert p.token_modality.tolist() == [SPECIAL, MARKER] + [SPEECH] * 5
    assert p.last_position(1) == 6


def test_interleaved_prompt_positions(sims):
    layout, tok = sims
    v = tok.get_vocab()
    p = build_prompt(
        layout,
        tok,
        ["the", "cat", "lives", "in", "park"],
        ["speech", "speech", "text", "text", "speech"],
        [[1], [2, 3], None, None, [7]],
        bos=False,
    )
    expected = [v["<speech>"], v["<Un1>"], v["<Un2>"], v["<Un3>"], v["<text>"]]
    expected += [v["Ġlives"], v["Ġin"], v["<speech>"], v["<Un7>"]]
    assert p.input_ids.tolist() == expected
    assert [x.tolist() for x in p.word_positions] == [[1], [2, 3], [5], [6], [8]]
    assert p.token_modality.tolist() == [MARKER, SPEECH, SPEECH, SPEECH, MARKER] + [
        TEXT,
        TEXT,
        MARKER,
        SPEECH,
    ]
    frame = p.to_frame()
    assert list(frame.columns) == ["position", "token_id", "modality", "word_index", "word"]
    assert frame.loc[6, "word"] == "in"


def test_text_word_split_into_several_tokens(sims):
    layout, tok = sims
    p = build_prompt(layout, tok, ["catdog"], "text", bos=False, markers=False)
    pieces = tok.convert_ids_to_tokens(p.input_ids.tolist())
    assert "".join(pieces) == "Ġcatdog" and len(pieces) > 1
    assert p.word_positions[0].tolist() == list(range(len(pieces)))


def test_prompt_from_audio_with_dedup_and_gaps(sims):
    layout, tok = sims

    class FixedExtractor:
        n_units = 500
        frame_rate = 25.0

        def frame_units(self, wave):
            # 10 frames of 40 ms: silence(0,0) word1(5,5,7) gap(0) word2(8,8,9,9)
            return torch.tensor([0, 0, 5, 5, 7, 0, 8, 8, 9, 9])

    wave = torch.zeros(6400)
    alignment = [WordSpan("the", 0.08, 0.20), WordSpan("cat", 0.24, 0.40)]
    utt = utterance_units(wave, alignment, FixedExtractor())
    assert utt.word_units == ((5, 7), (8, 9))
    assert utt.gaps == ((0,), (0,), ())
    assert utt.word_unit_frames == ((2, 4), (6, 8))  # first frame of each deduplicated unit
    p = build_prompt(layout, tok, utt.words, "speech", utt.word_units, gaps=utt.gaps, bos=False)
    units = layout.tokens_to_units(p.input_ids).tolist()
    assert units == [-1, 0, 5, 7, 0, 8, 9]
    assert [x.tolist() for x in p.word_positions] == [[2, 3], [5, 6]]
    assert p.token_word.tolist() == [-1, -1, 0, 0, -1, 1, 1]


def test_spoken_word_without_units_is_an_error(sims):
    layout, tok = sims
    with pytest.raises(ValueError, match=r"spoken word 1 \('cat'\) has no units"):
        build_prompt(layout, tok, ["the", "cat"], "speech", [[1], []])
    with pytest.raises(ValueError, match="has no unit list"):
        build_prompt(layout, tok, ["the"], "speech", None)


def test_unit_out_of_range_names_word(sims):
    layout, tok = sims
    with pytest.raises(SpecError, match=r"word 0 \('the'\): unit id 700"):
        build_prompt(layout, tok, ["the"], "speech", [[1, 700]])


def test_bad_prompt_inputs(sims):
    layout, tok = sims
    with pytest.raises(ValueError, match="at least one word"):
        build_prompt(layout, tok, [], "speech", [])
    with pytest.raises(ValueError, match="word 1 is empty"):
        build_prompt(layout, tok, ["the", " "], "text")
    with pytest.raises(ValueError, match="must be 'speech' or 'text'"):
        build_prompt(layout, tok, ["the"], "audio")
    with pytest.raises(ValueError, match="2 words but 1 unit lists"):
        build_prompt(layout, tok, ["the", "cat"], "speech", [[1]])
