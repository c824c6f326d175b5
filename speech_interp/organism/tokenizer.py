"""Word-level byte-BPE tokenizers: every lexicon word (with its leading space) is one token."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast


def word_bpe_tokenizer(
    words, specials=("<unk>", "<pad>", "<s>", "</s>")
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (Qwen2 / GPT-2 style) trained so each ``" word"`` is one token.

    Byte-level BPE round-trips through ``AutoTokenizer`` for every architecture, unlike a
    word-level model, which transformers 5 replaces by the architecture's own tokenizer class.
    """
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=100_000,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([" " + w for w in words for _ in range(2)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=specials[0],
        pad_token=specials[1],
        bos_token=specials[2],
        eos_token=specials[3],
    )
