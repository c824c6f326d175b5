"""SpeechGPT (0nutation/SpeechGPT; ``fnlp/SpeechGPT-7B-cm``): LLaMA-7B with 1,000 mHuBERT units.

Facts, with their sources in 0nutation/SpeechGPT:

- Vocabulary: ``<0>`` .. ``<999>`` then ``<sosp>``, ``<eosp>`` added with ``tokenizer.add_tokens``
  (``speechgpt/src/train/ma_pretrain.py``); stage 2 adds ``[Human]``, ``[SpeechGPT]``,
  ``<eoh>``, ``<eos>`` (``speechgpt/src/train/cm_sft.py``). On LLaMA's 32,000-token vocabulary
  that gives ``vocab_size`` 33,006 (the checkpoint's ``config.json``, ``LlamaForCausalLM``); no
  remote code.
- ``<sosp>`` / ``<eosp>`` begin and end every speech span; there is no marker for text:
  ``"<sosp>" + "".join(f"<{u}>") + "<eosp>"`` (``speechgpt/src/infer/cli_infer.py``).
- Units: mHuBERT (``mhubert_base_vp_en_es_fr_it3``) layer 11, k-means with 1,000 centroids,
  consecutive duplicates merged (``speechgpt/utils/speech2unit/speech2unit.py``,
  ``merged=True``). The frame rate is not stated in the repository; HuBERT's 20 ms stride gives
  50 Hz before dedup (stated here as an inference, not a documented fact).
"""

from .spec import FamilySpec

SPEECHGPT = FamilySpec(
    name="speechgpt",
    description="SpeechGPT (LLaMA-7B + 1,000 mHuBERT units in <sosp> ... <eosp>), fnlp",
    unit_pattern=r"<(\d+)>",
    speech_marker=None,
    text_marker=None,
    speech_begin="<sosp>",
    speech_end="<eosp>",
    unit_rate_hz=50.0,
    n_units=1000,
    added_tokens=tuple(f"<{u}>" for u in range(1000)) + ("<sosp>", "<eosp>"),
    min_units_to_detect=100,
    architectures=("LlamaForCausalLM",),
    checkpoints=("fnlp/SpeechGPT-7B-cm",),
    unit_extractor="mHuBERT (mhubert_base_vp_en_es_fr_it3) layer 11 + 1,000-centroid k-means, "
    "deduplicated (SpeechGPT's speech2unit; not bundled: pass its units)",
    needs="weights (HF hub or a local dir); pre-tokenized units (its audio front end is not "
    "bundled)",
)
