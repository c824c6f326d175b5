"""Written words in other forms, for validating a current-word lens on text.

- **Split** (:func:`split_words`): a word that is one token, written as 2-4 vocabulary pieces
  (``" kitchen"`` as ``" kit" "che" "n"``), read at its last piece with the word's own target.
  The closest text analogue of a word spread over speech units (Kaplan et al. 2025, "From
  Tokens to Words": words split into sub-tokens are whole at the last sub-token from early-middle
  layers). Every single-token word of a sentence that has such a split is split in the same
  prompt; the pieces are drawn with a seeded generator per word type (the same split for every
  occurrence).
- **Non-word** (:func:`nonword_words`): each content word replaced by a non-word, its letters in
  another order that is no single vocabulary token and no word of the sentences
  (``kitchen`` -> ``tchiken``). Read at the non-word's last token twice: toward the replaced
  word's target (``original``: a lens that reads what the context expects instead of what is
  written scores here) and toward the non-word's own target (``own``: the target rule's first
  sub-token).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from speech_interp.data.targets import TargetResolver
from speech_interp.hooks import TokenLayout
from speech_interp.lens.current import WrittenWords, written_words

PIECES = (2, 3, 4)  # how many pieces a split word is written in (as many as its letters allow)
TRIES = 64  # random cut sets tried per word before it counts as unsplittable
MIN_NONWORD_LETTERS = 3  # shorter words have too few orders to hide the word


def _word_rng(word: str, seed: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(word.encode())])


def split_pieces(token: str, vocab: dict[str, int], seed: int = 0) -> list[int] | None:
    """Ids of 2-4 vocabulary tokens that spell ``token`` (a token string, its leading-space mark
    kept on the first piece), or None when no split of up to :data:`TRIES` random cut sets has
    every piece in ``vocab``."""
    lead = token[0] if token[:1] in ("Ġ", "▁") else ""
    rest = token[len(lead) :]
    rng = _word_rng(token, seed)
    sizes = [n for n in PIECES if n <= len(rest)]
    if not sizes:
        return None
    for _ in range(TRIES):
        n = int(rng.choice(sizes))
        cuts = sorted(rng.choice(np.arange(1, len(rest)), size=n - 1, replace=False).tolist())
        parts = [rest[a:b] for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True)]
        parts[0] = lead + parts[0]
        if all(p in vocab for p in parts):
            return [vocab[p] for p in parts]
    return None


def split_words(tokenizer, written: WrittenWords, seed: int = 0) -> tuple[WrittenWords, list[int]]:
    """(the split words, their indices in ``written``): every word of ``written`` that is one token
    and has a split (:func:`split_pieces`) is written in pieces, all in its own prompt, and read
    at its last piece toward its own target."""
    vocab = tokenizer.get_vocab()
    pieces: dict[int, list[int]] = {}
    for i in range(len(written)):
        if int(written.n_tokens[i]) != 1:
            continue
        prompt = written.prompts[int(written.prompt_of[i])]
        token = tokenizer.convert_ids_to_tokens(int(prompt[int(written.position[i])]))
        got = split_pieces(token, vocab, seed)
        if got is not None:
            pieces[i] = got
    keep = sorted(pieces)
    new_prompts, new_position, index_of = [], {}, {}
    for p, ids in enumerate(written.prompts):
        here = [i for i in keep if int(written.prompt_of[i]) == p]
        if not here:
            continue
        at = {int(written.position[i]): i for i in here}
        out: list[int] = []
        for pos, tok in enumerate(ids.tolist()):
            if pos in at:
                out.extend(pieces[at[pos]])
                new_position[at[pos]] = len(out) - 1
            else:
                out.append(tok)
        index_of[p] = len(new_prompts)
        new_prompts.append(torch.tensor(out, dtype=torch.long))
    pick = torch.tensor(keep, dtype=torch.long)
    split = WrittenWords(
        new_prompts,
        torch.tensor([index_of[int(written.prompt_of[i])] for i in keep], dtype=torch.long),
        torch.tensor([new_position[i] for i in keep], dtype=torch.long),
        written.target[pick], tuple(written.words[i] for i in keep),
        tuple(written.content[i] for i in keep), written.word_index[pick],
        torch.tensor([len(pieces[i]) for i in keep], dtype=torch.long),
        written.previous[pick], written.next[pick],
    )  # fmt: skip
    return split, keep


def subset(written: WrittenWords, keep: Sequence[int]) -> WrittenWords:
    """The words ``keep`` of ``written`` (same prompts)."""
    pick = torch.tensor(list(keep), dtype=torch.long)
    return replace(
        written, prompt_of=written.prompt_of[pick], position=written.position[pick],
        target=written.target[pick], words=tuple(written.words[i] for i in keep),
        content=tuple(written.content[i] for i in keep), word_index=written.word_index[pick],
        n_tokens=written.n_tokens[pick], previous=written.previous[pick],
        next=written.next[pick],
    )  # fmt: skip


def nonword(
    word: str, tokenizer, taken: set[str], seed: int = 0, avoid: int = -1, vocab=None
) -> str | None:
    """``word``'s letters in another order that is neither a single vocabulary token (with or
    without a leading space) nor in ``taken``, and whose first sub-token is not ``avoid`` (the
    word's own target); None when :data:`TRIES` shuffles find none."""
    if len(word) < MIN_NONWORD_LETTERS:
        return None
    vocab = tokenizer.get_vocab() if vocab is None else vocab  # pass it when calling per word
    rng = _word_rng(word, seed)
    for _ in range(TRIES):
        cand = "".join(rng.permutation(list(word)).tolist())
        ids = tokenizer.encode(" " + cand, add_special_tokens=False)
        if cand == word or cand in taken or cand in vocab or len(ids) == 1:
            continue
        if avoid not in ids[:2]:  # the first sub-token, after any lone leading-space token
            return cand
    return None


def nonword_words(
    layout: TokenLayout,
    tokenizer,
    sentences: Sequence[Sequence[str]],
    content: Sequence[Sequence[bool]],
    seed: int = 0,
) -> tuple[WrittenWords, WrittenWords, dict[str, str]]:
    """(toward the replaced word's target, toward the non-word's own target, word -> non-word):
    the sentences with every content word (past the first) replaced by its :func:`nonword`, read
    at each non-word's last token. Both read the same positions; ``words`` are the replaced
    words (the CI's clusters)."""
    taken = {w for s in sentences for w in s}
    resolve = TargetResolver(tokenizer, layout)
    vocab = tokenizer.get_vocab()  # built once, not once per word type
    swap: dict[str, str] = {}
    for s, flags in zip(sentences, content, strict=True):
        for w, (word, c) in enumerate(zip(s, flags, strict=True)):
            if c and w > 0 and word not in swap:
                got = nonword(word, tokenizer, taken, seed, resolve(word).token_id, vocab)
                if got is not None:
                    swap[word] = got
    replaced = [[swap.get(word, word) if c and w > 0 else word
                 for w, (word, c) in enumerate(zip(s, f, strict=True))]
                for s, f in zip(sentences, content, strict=True)]  # fmt: skip
    marks = [[c and w > 0 and word in swap for w, (word, c) in enumerate(zip(s, f, strict=True))]
             for s, f in zip(sentences, content, strict=True)]  # fmt: skip
    own = written_words(layout, tokenizer, replaced, marks)
    keep = [i for i in range(len(own)) if own.content[i]]
    own = subset(own, keep)
    sentence_of = [s for s, words in enumerate(replaced) if words]
    originals = [sentences[sentence_of[int(p)]][int(w)]
                 for p, w in zip(own.prompt_of, own.word_index, strict=True)]  # fmt: skip
    target = torch.tensor([resolve(w).token_id for w in originals], dtype=torch.long)
    found = [i for i in range(len(own)) if int(target[i]) >= 0]  # replaced word with a target
    own, target, originals = subset(own, found), target[found], [originals[i] for i in found]
    own = replace(own, words=tuple(originals))
    original = replace(own, target=target)
    return original, own, swap


__all__ = [
    "MIN_NONWORD_LETTERS", "PIECES", "nonword", "nonword_words", "split_pieces", "split_words",
    "subset",
]  # fmt: skip
