"""Family specs: the token layout of a vocab-extended speech-text LM, as data.

A :class:`FamilySpec` says which vocabulary entries are speech units and modality markers, the unit
rate and what a family needs to run. Binding it to a tokenizer gives a :class:`TokenLayout`: the
unit id <-> token id maps and the text-vocabulary mask every analysis uses.

Definitions (also in the README):

- *speech tokens*: tokens matching the family's unit pattern (the units) or one of its extra speech
  patterns (e.g. SpiritLM's pitch and style tokens).
- *markers*: the tokens that switch modality (e.g. ``<speech>`` / ``<text>``), or that begin and
  end a speech span (``speech_begin`` / ``speech_end``, e.g. ``<sosp>`` / ``<eosp>``).
- *multi-level codes*: families whose codec emits ``levels`` codes per frame (Mimi) have unit
  tokens with two indices, code and level; unit id = ``code * levels + level`` and a word's unit
  list holds every token of its frames, frame by frame, levels 0..levels-1 within a frame.
- *text vocab*: every token id of the model that is neither a speech token, a marker, a special
  token of the tokenizer, nor a padding row past the tokenizer's vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a layout is built, so that reading specs stays light
    from jaxtyping import Bool, Int
    from torch import Tensor


class SpecError(ValueError):
    """A model, tokenizer or input does not fit a family's token layout."""


@dataclass(frozen=True)
class FamilySpec:
    """How one family of speech-text LMs lays out its vocabulary.

    ``unit_pattern`` is a regex over token strings whose single group is the unit id (two
    groups, code then level, when ``levels`` > 1).
    """

    name: str
    description: str
    unit_pattern: str
    speech_marker: str | None
    text_marker: str | None
    unit_rate_hz: float | None
    n_units: int | None = None
    extra_speech_patterns: Mapping[str, str] = field(default_factory=dict)
    architectures: tuple[str, ...] = ()
    checkpoints: tuple[str, ...] = ()
    unit_extractor: str = ""
    needs: str = ""
    min_units_to_detect: int = 2
    # "segments": each modality run is tokenized on its own (markers and units as ids);
    # "string": the prompt is one string tokenized whole, as the family's own code does.
    prompt_rule: str = "segments"
    # Unit tokens the family's extractor can emit, when the vocabulary holds more slots.
    emitted_units: int | None = None
    # Which word a unit belongs to (speech_interp.speech.word_unit_spans): "midpoint" | "end".
    unit_word_rule: str = "midpoint"
    # Tokens that begin / end every speech span (instead of, or beside, switch markers).
    speech_begin: str | None = None
    speech_end: str | None = None
    # Codes per frame (multi-codebook codecs); unit_rate_hz counts frames.
    levels: int = 1
    # Whether the family's units are deduplicated (consecutive repeats removed).
    dedup: bool = True
    # The checkpoint's config names code outside transformers (auto_map): loading it needs the
    # user's opt-in (speech_interp.load(..., trust_remote_code=True)).
    remote_code: bool = False
    # A plain text LM: no unit tokens is its layout, not an error (speech_interp.hooks.text).
    text_only: bool = False
    # The unit and marker tokens the family adds to its base text vocabulary, in the order its
    # own tokenizer code adds them (units first); what make-checkpoint and the test fixtures add.
    added_tokens: tuple[str, ...] = ()

    @property
    def wraps_speech(self) -> bool:
        """Whether speech spans are wrapped in begin / end tokens."""
        return self.speech_begin is not None

    @property
    def marker_tokens(self) -> dict[str, str]:
        """Role -> token string of every marker the family defines."""
        roles = {
            "speech": self.speech_marker,
            "text": self.text_marker,
            "speech_begin": self.speech_begin,
            "speech_end": self.speech_end,
        }
        return {role: tok for role, tok in roles.items() if tok is not None}

    def matches(self, vocab: Mapping[str, int]) -> int:
        """Score how well a vocabulary fits this family (0 = not at all)."""
        rx = re.compile(self.unit_pattern)
        n_units = sum(1 for tok in vocab if rx.fullmatch(tok))
        if n_units < self.min_units_to_detect:
            return 0
        for marker in self.marker_tokens.values():
            if marker not in vocab:
                return 0
        extras = 0
        for pattern in self.extra_speech_patterns.values():
            rx_extra = re.compile(pattern)
            n = sum(1 for tok in vocab if rx_extra.fullmatch(tok))
            if n == 0:
                return 0
            extras += n
        # Specs that explain more of the vocabulary (markers, extra streams) win ties.
        return n_units + extras + 10 * len(self.extra_speech_patterns) + len(self.marker_tokens)

    def bind(self, tokenizer, model_vocab_size: int | None = None) -> TokenLayout:
        """Bind the spec to a tokenizer (and the model's vocabulary size)."""
        return TokenLayout.from_tokenizer(self, tokenizer, model_vocab_size)


@dataclass(frozen=True, eq=False)
class TokenLayout:
    """A family spec bound to one tokenizer / model vocabulary.

    ``unit_token_ids[u]`` is the token id of unit ``u``.
    """

    spec: FamilySpec
    vocab_size: int
    unit_token_ids: Int[Tensor, " n_units"]
    speech_mask: Bool[Tensor, " vocab"]
    marker_mask: Bool[Tensor, " vocab"]
    special_mask: Bool[Tensor, " vocab"]
    markers: Mapping[str, int]
    extra_speech_ids: Mapping[str, Tensor] = field(default_factory=dict)

    @property
    def n_units(self) -> int:
        return int(self.unit_token_ids.numel())

    @property
    def text_mask(self) -> Bool[Tensor, " vocab"]:
        """Token ids that are text: not speech, not markers, not specials, not padding rows."""
        return ~(self.speech_mask | self.marker_mask | self.special_mask)

    @property
    def speech_marker_id(self) -> int | None:
        return self.markers.get("speech")

    @property
    def text_marker_id(self) -> int | None:
        return self.markers.get("text")

    @property
    def speech_begin_id(self) -> int | None:
        return self.markers.get("speech_begin")

    @property
    def speech_end_id(self) -> int | None:
        return self.markers.get("speech_end")

    def check_frames(self, units: Sequence[int]) -> None:
        """A multi-level family's word holds whole frames, levels 0..levels-1 in order."""
        q = self.spec.levels
        if q == 1:
            return
        if len(units) % q:
            raise SpecError(
                f"{self.spec.name} has {q} codes per frame: a word's units must be whole frames "
                f"(a multiple of {q}), got {len(units)}"
            )
        for i, u in enumerate(units):
            if int(u) % q != i % q:
                raise SpecError(
                    f"{self.spec.name}: unit {i} of the word is level {int(u) % q}, expected "
                    f"level {i % q} (frame by frame, levels 0..{q - 1}; unit id = code * {q} + "
                    "level)"
                )

    def units_to_tokens(self, units: Sequence[int] | Tensor) -> Int[Tensor, " n"]:
        """Map unit ids to token ids; a unit outside the model's range is an error."""
        import torch

        u = torch.as_tensor(units, dtype=torch.long)
        emitted = self.spec.emitted_units
        if emitted is not None and ((u >= emitted) & (u < self.n_units)).any():
            raise SpecError(
                f"unit id {int(u[u >= emitted][0])}: {self.spec.name} has {self.n_units} unit "
                f"tokens but its extractor emits only units 0..{emitted - 1}; the last slot is "
                "never produced, so a unit id there is a mistake in the input"
            )
        bad = (u < 0) | (u >= self.n_units)
        if bad.any():
            first = int(u[bad][0])
            raise SpecError(
                f"unit id {first} is outside this model's range 0..{self.n_units - 1} "
                f"({self.spec.name}: {self.n_units} units)"
            )
        return self.unit_token_ids[u]

    def tokens_to_units(self, token_ids: Sequence[int] | Tensor) -> Int[Tensor, " n"]:
        """Map token ids to unit ids; -1 where a token is not a unit."""
        import torch

        ids = torch.as_tensor(token_ids, dtype=torch.long)
        lookup = torch.full((self.vocab_size,), -1, dtype=torch.long)
        lookup[self.unit_token_ids] = torch.arange(self.n_units)
        return lookup[ids]

    @classmethod
    def from_tokenizer(
        cls, spec: FamilySpec, tokenizer, model_vocab_size: int | None = None
    ) -> TokenLayout:
        import torch

        vocab: dict[str, int] = tokenizer.get_vocab()
        tok_size = max(vocab.values()) + 1
        vocab_size = model_vocab_size if model_vocab_size is not None else tok_size
        if tok_size > vocab_size:
            raise SpecError(
                f"tokenizer does not match the model: the tokenizer has ids up to {tok_size - 1} "
                f"but the model's vocabulary has only {vocab_size} rows"
            )
        rx = re.compile(spec.unit_pattern)
        by_unit: dict[int, int] = {}
        for tok, idx in vocab.items():
            m = rx.fullmatch(tok)
            if m:
                unit = int(m.group(1))
                if spec.levels > 1:
                    level = int(m.group(2))
                    if level >= spec.levels:
                        raise SpecError(
                            f"token {tok!r}: level {level} but {spec.name} has {spec.levels}"
                        )
                    unit = unit * spec.levels + level
                by_unit[unit] = idx
        if not by_unit and not spec.text_only:
            raise SpecError(
                f"the tokenizer has no speech tokens matching {spec.unit_pattern!r} "
                f"(family {spec.name!r}); is this a speech-text model?"
            )
        n_units = max(by_unit) + 1 if by_unit else 0
        missing = sorted(set(range(n_units)) - set(by_unit))
        if missing:
            raise SpecError(
                f"speech units are not contiguous: {len(missing)} unit ids missing "
                f"(first: {missing[:5]}) for pattern {spec.unit_pattern!r}"
            )
        if spec.n_units is not None and n_units != spec.n_units:
            raise SpecError(
                f"family {spec.name!r} expects {spec.n_units} units, the tokenizer has {n_units}"
            )
        unit_ids = torch.tensor([by_unit[u] for u in range(n_units)], dtype=torch.long)
        speech = torch.zeros(vocab_size, dtype=torch.bool)
        speech[unit_ids] = True
        extra: dict[str, Tensor] = {}
        for stream, pattern in spec.extra_speech_patterns.items():
            rx_extra = re.compile(pattern)
            found = sorted(
                (int(m.group(1)), idx)
                for tok, idx in vocab.items()
                if (m := rx_extra.fullmatch(tok))
            )
            ids = torch.tensor([idx for _, idx in found], dtype=torch.long)
            extra[stream] = ids
            speech[ids] = True
        markers: dict[str, int] = {}
        marker_mask = torch.zeros(vocab_size, dtype=torch.bool)
        for role, tok in spec.marker_tokens.items():
            if tok not in vocab:
                raise SpecError(f"the tokenizer lacks the {role} marker {tok!r} of {spec.name!r}")
            markers[role] = vocab[tok]
            marker_mask[vocab[tok]] = True
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[tok_size:] = True  # padding rows the tokenizer never produces
        special_ids = [i for i in getattr(tokenizer, "all_special_ids", []) if i < vocab_size]
        special[torch.tensor(special_ids, dtype=torch.long)] = True
        special &= ~(speech | marker_mask)
        return cls(
            spec=spec,
            vocab_size=vocab_size,
            unit_token_ids=unit_ids,
            speech_mask=speech,
            marker_mask=marker_mask,
            special_mask=special,
            markers=markers,
            extra_speech_ids=extra,
        )
