"""SpiritLM (Meta): Llama-2 7B extended with HuBERT units, and in the expressive model pitch and
style tokens.

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
