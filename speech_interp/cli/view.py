"""``speech-interp view``: the lens viewer, one self-contained HTML page (:mod:`viewer`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speech_interp.cli.common import (
    Backend,
    Data,
    Limit,
    Model,
    Seed,
    Sentences,
    Split,
    TextTokenizer,
    TrustRemoteCode,
    limited,
    load_for_command,
)
from speech_interp.cli.lens import LensName, TunedPath, TunedSteps


def view_command(
    model: Model,
    data: Data = None,
    split: Split = None,
    sentences: Sentences = "heldout",
    utterances: Annotated[
        int, typer.Option(help="the first N utterances of the data (at most --limit's)")
    ] = 20,
    lens: LensName = "logit",
    tuned_path: TunedPath = None,
    tuned_steps: TunedSteps = 500,
    k: Annotated[int, typer.Option(help="top-k text tokens in each cell's hover")] = 5,
    backend: Backend = "tl",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/view"),
    seed: Seed = 0,
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
    limit: Limit = None,
) -> Path:
    """Write viewer.html: the layer x token lens grid per utterance, hover for top-k tokens."""
    from speech_interp.artifacts import write_run_json
    from speech_interp.cli.lens import check_lens_options, lens_for_command
    from speech_interp.lens import phase_bands, run_lens
    from speech_interp.lens.ceiling import CEILING_RULE, blind_streams, blind_warning, text_ceiling
    from speech_interp.lens.quality import quality_warning
    from speech_interp.organism.audio import organism_audio
    from speech_interp.plotting.viewer import viewer_data, write_viewer

    check_lens_options(lens, tuned_path)
    if utterances < 1:
        raise typer.BadParameter(f"--utterances must be >= 1, got {utterances}")
    utts, loaded, layout, data_info = load_for_command(
        model, data, backend, split, text_tokenizer, sentences, trust_remote_code
    )
    utts, limit_info = limited(utts[:utterances], loaded, limit)
    data_info = {**data_info, "utterance_limit": limit_info}
    lens_obj, lens_note = lens_for_command(
        lens, tuned_path, loaded, utts, layout, seed, tuned_steps, model
    )
    result = run_lens(
        loaded, layout, utts, lens=lens_obj, seed=seed, model_id=model, progress=False
    )
    ceiling = text_ceiling(loaded, layout, lens_obj, utts, model_id=model, backend=backend,
                           seed=seed)  # fmt: skip
    name = lens_obj.name  # with --lens auto: the lens it chose
    quality = quality_warning(result.quality, name) if lens_obj.reads == "next token" else None
    warning = " ".join(w for w in (quality, blind_warning(ceiling, name)) if w) or None
    data_out = viewer_data(
        {model: (loaded, layout)}, utts, lens=lens_obj, k=k,
        summaries={model: result.summary}, bands={model: phase_bands(result, seed=seed)},
        audio=organism_audio(utts) if layout.spec.name == "organism" else None,
        warnings={model: warning},
    )  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    path = write_viewer(out / "viewer.html", data_out)
    extra = {"command": "view", **{key: v for key, v in data_info.items() if key != "data"}}
    extra.update(n_utterances=len(utts), k=k, lens=name, lens_option=lens, tuned_lens=lens_note,
                 backend=backend)  # fmt: skip
    extra["text_ceiling"] = {"rule": CEILING_RULE, "blind_streams": blind_streams(ceiling)}
    from speech_interp.models import weights_dir_of

    write_run_json(
        out, model, seed, weights_dir=weights_dir_of(model), data=data_info["data"], extra=extra
    )
    typer.echo(f"view: {len(utts)} utterances, {path.stat().st_size / 1e6:.2f} MB -> {path}")
    return path


__all__ = ["view_command"]
