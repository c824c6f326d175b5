"""SpiritLM (Meta): Llama-2 7B extended with HuBERT units, and in the expressive model pitch and
style tokens.

**Prompt rule** (facebookresearch/spiritlm at 52fb2f4, ``spiritlm/model/spiritlm_model.py``
``Spiritlm._build_prompt``): one *string*: each modality run is its prefix (``[Text]`` /
``[Speech]``, only where the modality changes) followed by its content, all joined with ``""``;
text is inserted verbatim (here: the words joined by single spaces), speech is
``units_to_string`` of the units (``[Hu{u}]`` per deduplicated unit); the string is tokenized
whole by the slow ``LlamaTokenizer(add_bos_token=True, add_eos_token=False)`` (transformers 4,
``legacy`` unset: each stretch of text between added tokens is encoded by SentencePiece on its
own, with its dummy prefix). The quantizer emits units 0..499; ``[Hu500]`` is a blank slot.

Vocabulary: ``[Hu0]`` .. ``[Hu500]`` (HuBERT-25Hz layer 11, 500-centroid quantiser, deduplicated),
modality markers ``[Text]`` and ``[Speech]``; the expressive model adds pitch ``[Pi*]`` and style
``[St*]`` tokens. Weights come from Meta's request form as a local Llama directory
(``spirit-lm-base-7b`` / ``spirit-lm-expressive-7b``), loaded with ``LlamaForCausalLM``.
"""

from collections.abc import Sequence

from .spec import FamilySpec

# units_to_string (spiritlm/speech_tokenizer/spiritlm_tokenizer.py): the three streams' rates. A
# token's time is its index in the raw stream / rate; HuBERT and pitch collapse consecutive
# repeats, style does not (expressive_order).
HUBERT_RATE, PITCH_RATE, STYLE_RATE = 24.99, 12.5, 1.0


def expressive_order(
    hubert_frames: Sequence[int],
    pitch: Sequence[int],
    style: Sequence[int],
    *,
    pitch_rate: float = PITCH_RATE,
    style_rate: float = STYLE_RATE,
) -> list[tuple[str, int]]:
    """SpiritLM's merge of the streams of one speech input, as (stream, index) in prompt order.

    ``hubert_frames[j]`` is the raw frame index of deduplicated HuBERT unit ``j`` (its first
    frame); ``pitch`` / ``style`` are the raw streams. Pitch collapses consecutive repeats, style
    does not; times are index / rate (HuBERT at 24.99 Hz, as SpiritLM); a stable sort by time
    with the streams listed style, pitch, HuBERT puts ties in that order.
    """
    for name, rate in (("pitch", pitch_rate), ("style", style_rate)):
        if not rate > 0:
            raise ValueError(f"the {name} rate must be positive, got {rate}")
    if any(f < 0 for f in hubert_frames) or list(hubert_frames) != sorted(hubert_frames):
        raise ValueError("HuBERT frame indices must be non-negative and in time order")
    timed: list[tuple[float, str, int]] = [(k / style_rate, "style", k) for k in range(len(style))]
    timed += [
        (k / pitch_rate, "pitch", k)
        for k in range(len(pitch))
        if k == 0 or pitch[k] != pitch[k - 1]
    ]
    timed += [(f / HUBERT_RATE, "hubert", j) for j, f in enumerate(hubert_frames)]
    return [(stream, index) for _, stream, index in sorted(timed, key=lambda t: t[0])]


_COMMON = dict(
    unit_pattern=r"\[Hu(\d+)\]",
    speech_marker="[Speech]",
    text_marker="[Text]",
    unit_rate_hz=25.0,
    architectures=("LlamaForCausalLM",),
    unit_extractor="HuBERT-25Hz layer 11 + 500-centroid quantiser (spiritlm.speech_tokenizer)",
    needs="a local directory with Meta's released weights (no public hub id)",
    prompt_rule="string",
    emitted_units=500,
)
_HUBERT_TOKENS = tuple(f"[Hu{u}]" for u in range(501))
_MARKERS = ("[Text]", "[Speech]")

SPIRITLM = FamilySpec(
    name="spiritlm",
    description="SpiritLM base: Llama-2 with HuBERT units",
    checkpoints=("spirit-lm-base-7b (local dir)",),
    added_tokens=_HUBERT_TOKENS + _MARKERS,
    **_COMMON,
)

SPIRITLM_EXPRESSIVE = FamilySpec(
    name="spiritlm-expressive",
    description="SpiritLM expressive: HuBERT units plus pitch and style tokens",
    extra_speech_patterns={"pitch": r"\[Pi(\d+)\]", "style": r"\[St(\d+)\]"},
    checkpoints=("spirit-lm-expressive-7b (local dir)",),
    added_tokens=_HUBERT_TOKENS
    + tuple(f"[Pi{u}]" for u in range(64))
    + tuple(f"[St{u}]" for u in range(100))
    + _MARKERS,
    **_COMMON,
)
