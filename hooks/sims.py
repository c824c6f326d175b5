"""SIMS (slprl): Qwen2 / Llama text LMs extended with 500 mHuBERT-25Hz units.

Vocabulary: ``<Un0>`` .. ``<Un499>`` plus the modality markers ``<speech>`` and ``<text>``. Units
are k-means (500 centroids) of mHuBERT-base-25Hz layer 11 (``slprl/mhubert-base-25hz``),
deduplicated over the utterance, 25 Hz before dedup.

**Published format** (slp-rl/slamkit at 388b402, ``slamkit/model/unit_lm.py``): a ``UnitLM``
wrapper, not a plain HF causal LM. Its ``config.json`` has ``model_type:
"speech_language_model"``, the inner LM's config under ``base_config``, the base model's hub id
under ``base_model_name`` and ``vocab_size`` = text tokenizer length + 500 units + 2 markers; the
inner LM is the attribute ``lm`` (weights ``lm.model.embed_tokens.weight``, ``lm.lm_head.weight``
...), resized to ``vocab_size``. No tokenizer is saved: slamkit rebuilds it at run time
(``slamkit/tokeniser/interleaving_tokeniser.py``) as ``AutoTokenizer.from_pretrained(text
tokenizer)``, ``pad_token_id = 0``, then ``add_tokens(<Un0>..<Un499>, <speech>, <text>)`` in that
order, as ordinary tokens. The text tokenizer of the published checkpoints (``docs/SIMS.md``):
``Qwen/Qwen2.5-0.5B`` for ``slprl/SIMS-7B``, ``meta-llama/Llama-3.2-1B`` for
``slprl/SIMS-Llama3.2-3B``.
"""

from .spec import FamilySpec

SLAMKIT_MODEL_TYPE = "speech_language_model"
SLAMKIT_WEIGHT_PREFIX = "lm."
SLAMKIT_PAD_ID = 0
SLAMKIT_ADDED_TOKENS = tuple(f"<Un{u}>" for u in range(500)) + ("<speech>", "<text>")
SIMS_TEXT_TOKENIZERS = {
    "slprl/SIMS-7B": "Qwen/Qwen2.5-0.5B",
    "slprl/SIMS-Llama3.2-3B": "meta-llama/Llama-3.2-1B",
}

SIMS = FamilySpec(
    name="sims",
    description="SIMS interleaved speech-text LMs (Qwen2.5 / Llama-3.2 bases), slprl",
    unit_pattern=r"<Un(\d+)>",
    speech_marker="<speech>",
    text_marker="<text>",
    unit_rate_hz=25.0,
    n_units=500,
    unit_word_rule="end",
    added_tokens=SLAMKIT_ADDED_TOKENS,
    architectures=("Qwen2ForCausalLM", "LlamaForCausalLM"),
    checkpoints=("slprl/SIMS-7B", "slprl/SIMS-Qwen2.5-*", "slprl/SIMS-Llama3.2-3B"),
    unit_extractor="mhubert: slprl/mhubert-base-25hz layer 11 + 500-centroid k-means",
    needs="weights from the HF hub or a local dir (slamkit UnitLM format or converted), the text "
    "tokenizer (text_tokenizer= / --text-tokenizer, default the config's base_model_name); audio "
    "needs the mHuBERT checkpoint and its k-means file",
)
