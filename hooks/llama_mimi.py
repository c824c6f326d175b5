"""Llama-Mimi (llm-jp/llama-mimi; ``llm-jp/Llama-Mimi-1.3B``, ``-8B``): Llama 3 on Mimi codes.

Facts, with their sources in llm-jp/llama-mimi:

- Vocabulary: ``<{code}_{level}>`` for code 0..2047 and level 0..Q-1 (level varying fastest),
  then ``<audio>``, ``</audio>``, added to the Llama 3 tokenizer
  (``torchtitan/train.py``, ``expand_tokenizer_with_unit_tokens``); ``AutoModelForCausalLM``, no
  remote code (``inference.py``). Q = 4 quantizer levels in every training config
  (``config/llama3_2_1b*.toml``, ``config/llama3_1_8b.toml``) and in
  ``scripts/convert_dcp_to_hf.py``; the released checkpoints' own configs could not be read here.
- A speech span is ``"<audio>" + codes + "</audio>"``; text has no marker (``inference.py``).
- Codes: Mimi (``kyutai/mimi``) at 24 kHz, 12.5 frames per second, Q codes per frame,
  flattened frame by frame with levels 0..Q-1 inside a frame (``audio_codes.transpose(1, 2)
  .reshape(-1)``); no dedup.
- Trained on audio without text interleaving: a text-initialised, non-interleaved comparison for
  the claim that interleaving is needed.

Here a unit id is ``code * 4 + level`` (the order the tokens were added), so a word's unit list
holds every token of its frames in the model's own order.
"""

from .spec import FamilySpec

MIMI_LEVELS = 4
MIMI_CODEBOOK = 2048

LLAMA_MIMI = FamilySpec(
    name="llama-mimi",
    description="Llama-Mimi (Llama 3 on 4-level Mimi codes in <audio> ... </audio>), llm-jp",
    unit_pattern=r"<(\d+)_(\d+)>",
    speech_marker=None,
    text_marker=None,
    speech_begin="<audio>",
    speech_end="</audio>",
    unit_rate_hz=12.5,
    n_units=MIMI_CODEBOOK * MIMI_LEVELS,
    levels=MIMI_LEVELS,
    added_tokens=tuple(f"<{c}_{lv}>" for c in range(MIMI_CODEBOOK) for lv in range(MIMI_LEVELS))
    + ("<audio>", "</audio>"),
    dedup=False,
    min_units_to_detect=100,
    architectures=("LlamaForCausalLM",),
    checkpoints=("llm-jp/Llama-Mimi-1.3B", "llm-jp/Llama-Mimi-8B"),
    unit_extractor="Mimi codec (kyutai/mimi), 4 levels at 12.5 Hz (not bundled: pass its codes, "
    "unit id = code * 4 + level)",
    needs="weights (HF hub or a local dir); pre-tokenized Mimi codes, whole frames per word",
)
