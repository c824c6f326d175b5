"""Layer spans in both numberings (blocks, streams), no model."""

import pytest

from speech_interp.core.runs import band_label, block_list, parse_span, stream_band


def test_stream_band():
    assert stream_band("1-2", 4) == (1, 2) and stream_band("3", 4) == (3, 3)
    assert stream_band((0, 4), 4) == (0, 4)
    with pytest.raises(ValueError, match="stream band 2-9 out of range"):
        stream_band("2-9", 4)
    with pytest.raises(ValueError, match="out of range"):
        stream_band("3-1", 4)
    with pytest.raises(ValueError, match="must look like"):
        stream_band("two", 4)


def test_parse_span_and_block_list():
    assert (
        parse_span("2-4") == (2, 4) and parse_span("3") == (3, 3) and parse_span((1, 2)) == (1, 2)
    )
    assert block_list(None, 3) == [0, 1, 2] and block_list("1-2", 3) == [1, 2]
    assert block_list([0, 2], 3) == [0, 2]
    with pytest.raises(ValueError, match=r"blocks \[3\] out of range for a 3-layer model"):
        block_list("1-3", 3)
    with pytest.raises(ValueError, match="first block exceeds the last"):
        block_list("2-1", 3)
    with pytest.raises(ValueError, match="must look like"):
        block_list("a-b", 3)
    assert band_label((1, 3)) == "1-3"
