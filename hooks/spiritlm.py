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

from .spec import FamilySpec

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

SPIRITLM = FamilySpec(
    name="spiritlm",
    description="SpiritLM base: Llama-2 with HuBERT units",
    checkpoints=("spirit-lm-base-7b (local dir)",),
    **_COMMON,
)

SPIRITLM_EXPRESSIVE = FamilySpec(
    name="spiritlm-expressive",
    description="SpiritLM expressive: HuBERT units plus pitch and style tokens",
    extra_speech_patterns={"pitch": r"\[Pi(\d+)\]", "style": r"\[St(\d+)\]"},
    checkpoints=("spirit-lm-expressive-7b (local dir)",),
    **_COMMON,
)
