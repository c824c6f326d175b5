"""The training pieces of the two controls (:mod:`speech_interp.organism.train`): ``planted``'s
lens targets and ``decodable-only``'s swap of the word's text direction."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import LlamaForCausalLM

from speech_interp.data.prompt import SPEECH
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


__all__ = ["DirectionSwap", "planted_targets", "text_directions"]
