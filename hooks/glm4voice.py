"""GLM-4-Voice (THUDM/GLM-4-Voice; ``THUDM/glm-4-voice-9b``): GLM-4-9B with 16,384 audio tokens.

Facts, with their sources:

- Audio tokens ``<|audio_0|>`` .. ``<|audio_16383|>`` (``web_demo.py`` parses
  ``<\\|audio_(\\d+)\\|>`` and treats every id from ``<|audio_0|>`` on as audio); a speech span
  is ``"<|begin_of_audio|>" + tokens + "<|end_of_audio|>"`` (``web_demo.py``). Chat turns use
  ``<|system|>``, ``<|user|>``, ``<|assistant|>`` and the model answers in interleaved text and
  audio ("13 text token followed by 26 audio tokens", ``web_demo.py``).
- Tokens: a Whisper encoder with a single-codebook VQ bottleneck (``glm-4-voice-tokenizer``,
  ``speech_tokenizer/``), 12.5 tokens per second (``README_en.md``), no dedup.
- Architecture: ``ChatGLMForConditionalGeneration`` (``model_type`` ``chatglm``), code shipped
  with the checkpoint (``auto_map``), loaded with ``trust_remote_code=True``
  (``model_server.py``). TransformerLens has no ChatGLM architecture.
"""

from .spec import FamilySpec

GLM4_VOICE = FamilySpec(
    name="glm-4-voice",
    description="GLM-4-Voice (GLM-4-9B + 16,384 whisper-VQ tokens in <|begin_of_audio|> ... "
    "<|end_of_audio|>), THUDM",
    unit_pattern=r"<\|audio_(\d+)\|>",
    speech_marker=None,
    text_marker=None,
    speech_begin="<|begin_of_audio|>",
    speech_end="<|end_of_audio|>",
    unit_rate_hz=12.5,
    n_units=16384,
    added_tokens=tuple(f"<|audio_{u}|>" for u in range(16384))
    + ("<|begin_of_audio|>", "<|end_of_audio|>"),
    dedup=False,
    remote_code=True,
    min_units_to_detect=100,
    architectures=("ChatGLMForConditionalGeneration (remote code)",),
    checkpoints=("THUDM/glm-4-voice-9b",),
    unit_extractor="whisper-VQ (THUDM/glm-4-voice-tokenizer), 12.5 Hz (not bundled: pass its "
    "tokens)",
    needs="trust_remote_code=True / --trust-remote-code (runs the checkpoint's own code), "
    "backend nnsight (TransformerLens has no ChatGLM); pre-tokenized audio tokens",
)
