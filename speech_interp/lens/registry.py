"""The one registry of lenses, name -> class: the Python API (``lens="logit"``) and the CLI's
``--lens`` both read it. A new lens is a :class:`~speech_interp.lens.lenses.Lens` subclass added
to :data:`LENSES`; it builds itself for a command with its ``build`` classmethod
(:meth:`speech_interp.lens.lenses.Lens.build`).
"""

from __future__ import annotations

from speech_interp.hooks import TokenLayout
from speech_interp.lens.current import CurrentLens
from speech_interp.lens.lenses import Lens, LogitLens
from speech_interp.lens.patchscope import PatchscopeLens
from speech_interp.lens.tuned import TunedLens

# logit and tuned read the next token (next-token channels); current reads the word being read.
LENSES: dict[str, type[Lens]] = {"logit": LogitLens, "tuned": TunedLens, "current": CurrentLens,
                                  "patchscope": PatchscopeLens}  # fmt: skip


def as_lens(lens: str | Lens, model) -> Lens:
    """A registered lens name -> that lens for ``model``; a lens object is bound to ``model``."""
    if isinstance(lens, Lens):
        return lens.bind(model)
    if lens not in LENSES:
        raise ValueError(f"lens must be one of {', '.join(LENSES)} or a Lens object, got {lens!r}")
    return LENSES[lens].for_model(model)


def build_lens(name: str, model, layout: TokenLayout, **options) -> tuple[Lens, str | None]:
    """(lens, note for run.json) of the registered lens ``name`` for ``model``, built by its
    class's :meth:`~speech_interp.lens.lenses.Lens.build` from ``options`` (a tuned lens:
    ``path``, ``utterances``, ``seed``, ``steps``; a current lens: ``path`` or ``texts``; the
    logit lens reads none); each build ignores the options of the others."""
    if name not in LENSES:
        raise ValueError(f"lens must be one of {', '.join(LENSES)}, got {name!r}")
    return LENSES[name].build(model, layout, **options)


def lenses_reading_path() -> list[str]:
    """The registered lenses whose :meth:`~speech_interp.lens.lenses.Lens.build` reads or writes
    a lens directory (``path``)."""
    return [name for name, cls in LENSES.items() if cls.accepts_path]


__all__ = ["LENSES", "as_lens", "build_lens", "lenses_reading_path"]
