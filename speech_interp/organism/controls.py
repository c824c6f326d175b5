"""The training pieces of the controls (:mod:`speech_interp.organism.train`): ``planted``'s
lens targets, ``decodable-only``'s swap of the word's text direction, and ``planted-text``'s
written-word states (:func:`written_state_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from speech_interp.data.prompt import SPEECH, Prompt, build_prompt
from speech_interp.hooks import submodule


def planted_targets(batch_prompts, word_token: dict[str, int], width: int) -> torch.Tensor:
    """Per position: the text token of the spoken word it belongs to, else -100."""
    out = torch.full((len(batch_prompts), width), -100, dtype=torch.long)
    for i, p in enumerate(batch_prompts):
        for pos in torch.nonzero(p.token_modality == SPEECH).flatten().tolist():
            w = int(p.token_word[pos])
            if w >= 0:
                out[i, pos] = word_token[p.words[w]]
    return out


TEMPERATURE = 0.1  # of planted-text's contrastive loss


def written_twin(layout, tokenizer, prompt: Prompt) -> Prompt:
    """The same words all written as text (the text-only mix's rendering, markers included)."""
    words = list(prompt.words)
    return build_prompt(layout, tokenizer, words, ["text"] * len(words))


def written_state_loss(
    model: LlamaForCausalLM,
    hidden: torch.Tensor,
    prompts: list[Prompt],
    layout,
    tokenizer,
    layer: int,
    pad_id: int,
    contrastive: bool = False,
) -> torch.Tensor | None:
    """``planted-text``'s auxiliary loss: at every unit position of a spoken word, the squared
    distance of stream ``layer``'s state (``hidden``, batch x pos x d) to the state the same
    model gives the word *written* (its last token, in the sentence written as text; no
    gradient), relative to that state's squared norm; averaged over positions. None when the
    batch has no spoken word. With ``contrastive``, instead an InfoNCE loss: each spoken
    position's state must be closer (cosine, temperature :data:`TEMPERATURE`) to its own word's
    written state than to the written states of the batch's other words, which plants the word's
    identity rather than what all words' states share; None with fewer than two words."""
    from .corpus import collate

    rows, cols, sources = [], [], []
    twins = [written_twin(layout, tokenizer, p) for p in prompts]
    for i, (p, twin) in enumerate(zip(prompts, twins, strict=True)):
        for pos in torch.nonzero(p.token_modality == SPEECH).flatten().tolist():
            w = int(p.token_word[pos])
            if w >= 0:
                rows.append(i)
                cols.append(pos)
                sources.append((i, twin.last_position(w)))
    if not rows:
        return None
    batch = collate(twins, pad_id)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    output_hidden_states=True)  # fmt: skip
        written = out.hidden_states[layer]
        target = written[[s[0] for s in sources], [s[1] for s in sources]]
    got = hidden[rows, cols]
    if not contrastive:
        return (((got - target) ** 2).sum(-1) / (target**2).sum(-1).clamp_min(1e-6)).mean()
    words = [
        prompts[r].words[int(prompts[r].token_word[c])] for r, c in zip(rows, cols, strict=True)
    ]
    vocab = list(dict.fromkeys(words))
    if len(vocab) < 2:
        return None
    first = [words.index(w) for w in vocab]  # one written state per word type
    bank = F.normalize(target[first], dim=-1)
    sims = F.normalize(got, dim=-1) @ bank.T / TEMPERATURE
    labels = torch.tensor([vocab.index(w) for w in words])
    return F.cross_entropy(sims, labels)


def text_directions(model: LlamaForCausalLM) -> torch.Tensor:
    """Unit text direction of every token as the logit lens sees it: W_U[t] * final-norm weight."""
    dirs = submodule(model, "unembed").weight * submodule(model, "final_norm").weight
    return F.normalize(dirs, dim=-1)


class DirectionSwap:
    """Forward pre-hook moving, at spoken-word positions, the residual's component along the
    word's text direction onto the direction of a random other lexicon word (seeded)."""

    def __init__(self, model: LlamaForCausalLM, layer: int, word_ids: list[int], seed: int):
        self.model, self.word_ids = model, torch.tensor(word_ids)
        self.gen = torch.Generator().manual_seed(seed)
        self.targets: torch.Tensor | None = None
        submodule(model, "blocks")[layer].register_forward_pre_hook(self, with_kwargs=True)

    def __call__(self, module, args, kwargs):
        h = args[0] if args else kwargs["hidden_states"]
        mask = self.targets >= 0
        if not self.model.training or not mask.any():
            return None
        dirs = text_directions(self.model).detach()
        own = dirs[self.targets[mask]]
        other = dirs[
            self.word_ids[torch.randint(len(self.word_ids), (own.shape[0],), generator=self.gen)]
        ]
        coeff = (h[mask] * own).sum(-1, keepdim=True)
        h = h.clone()
        h[mask] = h[mask] + coeff * (other - own)
        if args:
            return (h, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": h}


__all__ = [
    "DirectionSwap", "planted_targets", "text_directions", "written_state_loss", "written_twin",
]  # fmt: skip
