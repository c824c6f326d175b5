"""The current-word lens: a per-stream linear read-out of the word being read, fitted on text only.

The logit and tuned lenses are next-token channels: at a written word's last token they show
what comes next, and on this project's models they read the word itself at 0.00-0.09 past
stream 0. This lens asks the other question, *which word is here*:

- inputs: stream ``l``'s residual, standardised per dimension with the fit's mean and standard
  deviation (the massive and rogue dimensions of real LMs weigh as the others);
- map: a ridge regression per stream (scikit-learn ``Ridge``) to the input-embedding row of the
  word's **target token** (the project's target rule, :class:`speech_interp.data.targets.
  TargetResolver`), read at the word's **last** token;
- decoding: cosine between the prediction and every vocabulary row (``Unembedding`` with
  unit-norm rows and no final norm), so the registry's scoring (ranks over the text vocabulary)
  applies unchanged.

It is fitted on **written** words only (``written_words``: word lists rendered as text by the
family's own prompt rule; the first word of each prompt and the BOS position are left out), so
reading spoken words with it asks whether speech reaches the state that written words reach.
Its ``kl_to_final`` is not a quality measure (it is not a next-token lens); its quality is its
**text ceiling** (:mod:`speech_interp.lens.ceiling`). Saved like the tuned lens, ``params.pt`` +
``config.json`` (``lens_type: "current_word_ridge"``, what it predicts, the fit's word types).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from speech_interp.core.residuals import residual_stacks
from speech_interp.data.prompt import build_prompt
from speech_interp.data.targets import TargetResolver
from speech_interp.hooks import TokenLayout
from speech_interp.lens.lenses import Lens, read_lens_dir, save_lens_dir
from speech_interp.lens.unembed import Unembedding, causal_lm

LENS_TYPE = "current_word_ridge"
PREDICTS = (
    "the current word's target token (first sub-token rule, speech_interp.data.targets) at the "
    "word's last token, from that stream's standardised residual; fitted on written words only"
)
# Ridge penalty candidates (scikit-learn's alpha, on standardised inputs), chosen per stream by
# written-word top-5 accuracy on held-out text sentences before any speech is read.
ALPHAS: tuple[float, ...] = (1.0, 10.0, 100.0, 1000.0)
# Validation words scored per alpha (each scores the whole vocabulary: SmolLM2's 49k rows)
MAX_VALIDATION_WORDS = 600


@dataclass(frozen=True)
class WrittenWords:
    """Written words of some prompts: the ids of each prompt and, per read word, its prompt,
    last-token position, target id, spelling, content flag, word index in its sentence, number
    of tokens, and the previous and next word's target ids (-1 where there is none)."""

    prompts: list[Int[Tensor, " pos"]]
    prompt_of: Int[Tensor, " n"]
    position: Int[Tensor, " n"]
    target: Int[Tensor, " n"]
    words: tuple[str, ...]
    content: tuple[bool, ...]
    word_index: Int[Tensor, " n"]
    n_tokens: Int[Tensor, " n"]
    previous: Int[Tensor, " n"]
    next: Int[Tensor, " n"]

    def __len__(self) -> int:
        return int(self.target.numel())


def written_words(
    layout: TokenLayout,
    tokenizer,
    sentences: Sequence[Sequence[str]],
    content: Sequence[Sequence[bool]] | None = None,
    *,
    skip_first: bool = True,
) -> WrittenWords:
    """The words of ``sentences`` (word lists) rendered as text by the family's prompt rule, each
    read at its last token with its target token; words without a target are left out, and with
    ``skip_first`` the first word of each sentence (next to BOS and the marker)."""
    resolver = TargetResolver(tokenizer, layout)
    # a text-only layout (family "text") has no modality markers: its text is the words alone
    markers = layout.speech_marker_id is not None and layout.text_marker_id is not None
    markers = markers or layout.spec.wraps_speech
    prompts, prompt_of, position, target, words, flags = [], [], [], [], [], []
    word_index, n_tokens, previous, following = [], [], [], []
    for s, sentence in enumerate(sentences):
        sentence = list(sentence)
        if not sentence:
            continue
        prompt = build_prompt(layout, tokenizer, sentence, ["text"] * len(sentence),
                              [None] * len(sentence), markers=markers)  # fmt: skip
        index = len(prompts)
        prompts.append(prompt.input_ids)
        for w, word in enumerate(sentence):
            t = resolver(word)
            if (skip_first and w == 0) or not t.found:
                continue
            prompt_of.append(index)
            position.append(prompt.last_position(w))
            target.append(t.token_id)
            words.append(word)
            flags.append(True if content is None else bool(content[s][w]))
            word_index.append(w)
            n_tokens.append(int(prompt.word_positions[w].numel()))
            previous.append(resolver(sentence[w - 1]).token_id if w > 0 else -1)
            following.append(resolver(sentence[w + 1]).token_id if w + 1 < len(sentence) else -1)
    as_long = lambda xs: torch.tensor(xs, dtype=torch.long)  # noqa: E731
    return WrittenWords(prompts, as_long(prompt_of), as_long(position), as_long(target),
                        tuple(words), tuple(flags), as_long(word_index), as_long(n_tokens),
                        as_long(previous), as_long(following))  # fmt: skip


def stream_states(
    model, written: WrittenWords, *, batch: int = 16, progress: bool = False
) -> Float[Tensor, "stream n d"]:
    """Every stream's residual at each written word's last token (float32, on the CPU)."""
    parts = []
    order = range(0, len(written.prompts), batch)
    for start in tqdm(order, desc="written words", disable=not progress):
        stacks = residual_stacks(model, written.prompts[start : start + batch])
        for i, stack in enumerate(stacks):
            rows = written.position[written.prompt_of == start + i]
            parts.append(stack[:, rows.to(stack.device)].float().cpu())
    return torch.cat(parts, dim=1)


class CurrentLens(Lens):
    """Per-stream ridge read-out of the current word (module docs)."""

    name = "current"
    accepts_path = True  # loaded from a directory when given one, else fitted (and saved there)
    reads = "current word"

    def __init__(self, mean, scale, weight, bias, config: dict):
        self.mean = mean  # (streams, d): the fit's per-dim mean
        self.scale = scale  # (streams, d): the fit's per-dim standard deviation
        self.weight = weight  # (streams, d_in, d_out): the ridge map
        self.bias = bias  # (streams, d_out)
        self.n_layers = int(mean.shape[0]) - 1
        self.config = config
        self.unembed = None

    @classmethod
    def for_model(cls, model) -> CurrentLens:
        raise ValueError(
            "lens='current' needs a CurrentLens object (CurrentLens.load(dir) or .fit(...)); the "
            "CLI fits one on the fly (speech-interp lens --lens current)"
        )

    @classmethod
    def build(
        cls,
        model,
        layout: TokenLayout,
        *,
        path: str | Path | None = None,
        texts: tuple[Sequence[Sequence[str]], Sequence[Sequence[str]], str] | None = None,
        progress: bool = True,
        **_,
    ) -> tuple[CurrentLens, str]:
        """The lens saved in ``path``, or one fitted on ``texts`` (fit sentences, validation
        sentences, where they come from: word lists, written) and saved in ``path`` if given;
        with a note saying which and how long the fit took (``progress``: the fit's bars)."""
        import time

        if path is not None and (Path(path) / "params.pt").exists():
            return cls.load(path, model=model), "loaded"
        if texts is None:
            raise ValueError("a current lens is loaded from path= or fitted on texts=")
        fit_sentences, val_sentences, source = texts
        start = time.perf_counter()
        fit = written_words(layout, model.tokenizer, fit_sentences)
        validation = written_words(layout, model.tokenizer, val_sentences)
        lens = cls.fit(model, fit, validation, layout=layout, source=source, progress=progress)
        seconds = time.perf_counter() - start
        lens.config["fit_seconds"] = round(seconds, 1)
        if path is not None:
            lens.save(path)
        return lens, (f"fitted on {len(fit)} written words ({source}) in {seconds:.0f} s"
                      + (" and saved" if path is not None else ""))  # fmt: skip

    def bind(self, model) -> CurrentLens:
        """Decode by cosine against ``model``'s input-embedding rows (unit norm, no final norm)."""
        hf = causal_lm(model)
        embed = hf.get_input_embeddings().weight.detach().float()
        d, L = int(embed.shape[1]), int(hf.config.num_hidden_layers)
        if (d, L) != (int(self.mean.shape[1]), self.n_layers):
            raise ValueError(
                f"current lens is for d_model={int(self.mean.shape[1])}, {self.n_layers} layers; "
                f"the model has d_model={d}, {L} layers"
            )
        unit = embed / embed.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.unembed = Unembedding(torch.nn.Identity(), unit)
        return self

    def text_direction(self, layer: int, token_id: int) -> Float[Tensor, " d"]:
        """The residual direction that raises the read-out's score of ``token_id`` the most: the
        gradient of ``translate(layer, x) . e_t`` (``e_t`` the unit embedding row), which is
        ``W_layer e_t / scale_layer``, normalised."""
        self.check_layer(layer)
        unit = self._unembed().weight[int(token_id)].float().cpu()
        grad = (self.weight[layer].float().cpu() @ unit) / self.scale[layer].float().cpu()
        return torch.nn.functional.normalize(grad, dim=-1)

    def translate(self, layer: int, resid: Float[Tensor, "... d"]) -> Float[Tensor, "... d"]:
        self.check_layer(layer)
        x = (resid.float() - self.mean[layer].to(resid.device)) / self.scale[layer].to(resid.device)
        return x @ self.weight[layer].to(resid.device) + self.bias[layer].to(resid.device)

    @classmethod
    def fit(
        cls,
        model,
        fit: WrittenWords,
        validation: WrittenWords,
        *,
        alphas: Sequence[float] = ALPHAS,
        k: int = 5,
        layout: TokenLayout | None = None,
        progress: bool = True,
        source: str = "",
    ) -> CurrentLens:
        """Fit on the written words ``fit``; each stream's penalty is the one of ``alphas`` with
        the highest top-``k`` accuracy on the written words ``validation`` (at most
        :data:`MAX_VALIDATION_WORDS` of them, the first; text vocabulary when ``layout`` is
        given)."""
        from sklearn.linear_model import Ridge

        if len(fit) < 2 or len(validation) < 1:
            raise ValueError(
                f"a current lens needs written words to fit and validate on; got {len(fit)} and "
                f"{len(validation)}"
            )
        hf = causal_lm(model)
        embed = hf.get_input_embeddings().weight.detach().float().cpu()
        x_fit = stream_states(model, fit, progress=progress)
        x_val = stream_states(model, validation, progress=progress)[:, :MAX_VALIDATION_WORDS]
        val_target = validation.target[:MAX_VALIDATION_WORDS]
        y_fit = embed[fit.target]
        unit = embed / embed.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        allowed = None if layout is None else layout.text_mask.cpu()
        means, scales, weights, biases, chosen = [], [], [], [], []
        for layer in tqdm(range(x_fit.shape[0]), desc="current lens fit", disable=not progress):
            mean = x_fit[layer].mean(0)
            scale = x_fit[layer].std(0).clamp_min(1e-6)
            xs = ((x_fit[layer] - mean) / scale).double().numpy()
            xv = ((x_val[layer] - mean) / scale).double()
            best = None
            for alpha in alphas:
                ridge = Ridge(alpha=alpha).fit(xs, y_fit.double().numpy())
                w = torch.from_numpy(ridge.coef_.T.copy()).float()
                b = torch.from_numpy(ridge.intercept_.copy()).float()
                hits = _top_k_hits(xv.float() @ w + b, unit, val_target, k, allowed)
                if best is None or hits.mean() > best[0]:
                    best = (float(hits.mean()), alpha, w, b)
            means.append(mean)
            scales.append(scale)
            weights.append(best[2])
            biases.append(best[3])
            chosen.append({"stream": layer, "alpha": best[1], "validation_top_k": best[0]})
        config = {
            "lens_type": LENS_TYPE,
            "predicts": PREDICTS,
            "base_model_name_or_path": str(getattr(hf.config, "name_or_path", "")),
            "d_model": int(embed.shape[1]),
            "num_hidden_layers": int(hf.config.num_hidden_layers),
            "fit_text": source,
            "n_fit_words": len(fit),
            "n_validation_words": int(val_target.numel()),
            "fit_word_types": sorted(set(fit.words)),
            "alpha_rule": f"per stream, the alpha of {list(alphas)} with the highest top-{k} "
            "accuracy on the validation text's written words",
            "alphas": chosen,
        }
        lens = cls(torch.stack(means), torch.stack(scales), torch.stack(weights),
                   torch.stack(biases), config)  # fmt: skip
        return lens.bind(model)

    @property
    def fit_word_types(self) -> frozenset[str]:
        """The word types the lens was fitted on (a ceiling reports the others apart)."""
        return frozenset(self.config.get("fit_word_types", ()))

    def save(self, path: str | Path) -> Path:
        """``params.pt`` (mean, scale, weight, bias per stream) and ``config.json``."""
        state = {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": self.bias}
        return save_lens_dir(path, {k: v.contiguous() for k, v in state.items()}, self.config)

    @classmethod
    def load(cls, path: str | Path, model=None) -> CurrentLens:
        """Read a lens written by :meth:`save`; bind it when ``model`` is given."""
        config, state = read_lens_dir(path, "current")
        if config.get("lens_type") != LENS_TYPE:
            raise ValueError(f"{path}: lens_type {config.get('lens_type')!r} is not {LENS_TYPE!r}")
        lens = cls(state["mean"], state["scale"], state["weight"], state["bias"], config)
        return lens if model is None else lens.bind(model)


def _top_k_hits(pred, unit, target, k: int, allowed) -> Tensor:
    """Whether each row's target is among its ``k`` most cosine-similar rows of ``unit``."""
    scores = pred @ unit.T
    if allowed is not None:
        scores = scores.masked_fill(~allowed[: scores.shape[1]], float("-inf"))
    top = scores.topk(k, dim=-1).indices
    return (top == target[:, None]).any(-1).float()


__all__ = ["ALPHAS", "CurrentLens", "WrittenWords", "stream_states", "written_words"]
