"""``speech-interp patch | ablate | substitute``: the causal tests on a data file.

Options shared with every command are in :mod:`speech_interp.cli.common`. Where they act:
``patch --blocks a-b`` (one span of blocks, default all); ``ablate`` / ``substitute --streams``
(comma-separated spans of residual streams in the lens numbering, ``1-2,3-4``; default every
stream 1..L-1 as its own band). ``--layers`` is the deprecated old name of both.

Outputs (besides ``run.json``):

- ``patch``: ``patch.csv`` (exact and attribution rows), ``patch_summary.csv`` (means over
  pairs), ``rank_agreement.csv``, ``pairs.csv``, ``patch_heatmap_{metric}.png``,
  ``attribution_scatter.png``; ``patch_cells.log`` is the resumable checkpoint (rerun the same
  command after an interruption).
- ``ablate``: ``ablation.csv``, ``ablation_summary.csv``, ``lens.csv`` (for decodability),
  ``verdict.json``, ``ablation_{metric}.png`` (every band, its verdict on the verdict's metric).
- ``substitute``: ``substitution.csv``, ``substitution_summary.csv``, ``pairs.csv``,
  ``skipped.csv`` (the read-outs it could not build: pair, metric, reason).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from speech_interp.artifacts import write_csv, write_run_json, write_verdicts
from speech_interp.cli.common import (
    Backend,
    Data,
    Layers,
    Model,
    Remote,
    Seed,
    Sentences,
    Split,
    TextTokenizer,
    TrustRemoteCode,
    checked,
    load_for_command,
    remote_mode,
    renamed_option,
    spans,
)

MaxPairs = Annotated[int, typer.Option(help="at most this many pairs (ablate: spoken words)")]
Streams = Annotated[
    str | None, typer.Option(help="stream bands, e.g. 1-2,3-4 (default: each of 1..L-1)")
]


def _stream_bands(streams: str | None, n_layers: int) -> list[str]:
    from speech_interp.core.runs import band_label, stream_band

    if streams is None:
        return [band_label((s, s)) for s in range(1, n_layers)] or [band_label((0, n_layers))]
    return [band_label(checked(stream_band, b, n_layers, flag="--streams")) for b in spans(streams)]


def _band_setup(
    model, data, split, backend, remote, streams, layers, text_tokenizer, sentences, trust
):
    """(remote mode, command input, stream bands) of ``ablate`` / ``substitute``."""
    from speech_interp.core.residuals import n_layers
    from speech_interp.core.runs import parse_span

    rem = remote_mode(remote, backend)
    streams = renamed_option(streams, layers, "--streams")
    for span in spans(streams):  # the form, before the model loads; the range after
        checked(parse_span, span, flag="--streams")
    given = load_for_command(model, data, backend, split, text_tokenizer, sentences, trust)
    return rem, given, _stream_bands(streams, n_layers(given.model))


def _finish(out: Path, model: str, seed: int, data_info: dict, command: str, **extra) -> None:
    """``run.json`` of a causal command: the shared fields, the data selection, the command's."""
    chosen = {k: v for k, v in data_info.items() if k != "data"}
    extra = {"command": command, **chosen, **extra}
    from speech_interp.models import weights_dir_of

    write_run_json(
        out, model, seed, weights_dir=weights_dir_of(model), data=data_info["data"], extra=extra
    )


def _pairs_frame(pairs) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "pair": p.id,
                "clean": p.clean.text,
                "corrupt": p.corrupt.text,
                "word_index": p.word_index,
                "donor": p.donor,
            }
            for p in pairs
        ]
    )


def patch_command(
    model: Model,
    data: Data = None,
    split: Split = None,
    sentences: Sentences = "heldout",
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory (also the resume checkpoint)")] = Path(
        "out/patch"
    ),
    seed: Seed = 0,
    blocks: Annotated[
        str | None, typer.Option(help="span of blocks, e.g. 2-4 (default: all)")
    ] = None,
    max_pairs: MaxPairs = 20,
    batch_size: Annotated[
        int,
        typer.Option(help="patched cells per forward pass (0: the largest that fits in memory)"),
    ] = 0,
    metrics: Annotated[str, typer.Option(help="comma list of speech, text")] = "speech,text",
    attribution: Annotated[bool, typer.Option(help="also run attribution patching")] = True,
    layers: Layers = None,
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
) -> pd.DataFrame:
    """Exact (and attribution) activation patching over layers x aligned word positions."""
    from speech_interp.causal import attribution_sweep, patch_sweep, rank_agreement
    from speech_interp.causal.patching import summarize_patching
    from speech_interp.causal.readouts import check_metrics
    from speech_interp.core.residuals import n_layers
    from speech_interp.core.runs import block_list, parse_span
    from speech_interp.data import make_pairs
    from speech_interp.plotting import plot_attribution_scatter, plot_patching_heatmap

    rem = remote_mode(remote, backend)
    span = renamed_option(blocks, layers, "--blocks")
    chosen = checked(
        check_metrics, [m.strip() for m in metrics.split(",") if m.strip()], flag="--metrics"
    )
    if span is not None:
        checked(parse_span, span, flag="--blocks")
    utterances, loaded, layout, data_info = load_for_command(
        model, data, backend, split, text_tokenizer, sentences, trust_remote_code
    )
    blocks = None if span is None else checked(block_list, span, n_layers(loaded), flag="--blocks")
    pairs = make_pairs(utterances, seed=seed, max_pairs=max_pairs)
    kw = dict(metrics=chosen, layers=blocks, remote=rem, model_id=model)
    exact = patch_sweep(loaded, layout, pairs, batch_size=batch_size or None, out_dir=out, **kw)
    write_csv(_pairs_frame(pairs), out / "pairs.csv")
    tables = [exact.table]
    if attribution:
        attr = attribution_sweep(loaded, layout, pairs, **kw)
        tables.append(attr.table)
        write_csv(rank_agreement(exact.table, attr.table), out / "rank_agreement.csv")
        plot_attribution_scatter(exact.table, attr.table, out / "attribution_scatter.png")
    table = pd.concat(tables, ignore_index=True)
    write_csv(table, out / "patch.csv")
    write_csv(summarize_patching(table), out / "patch_summary.csv")
    for metric in sorted(set(exact.table["metric"])):
        plot_patching_heatmap(exact.table, out / f"patch_heatmap_{metric}.png", metric=metric)
    _finish(out, model, seed, data_info, "patch", backend=backend, remote=remote,
            blocks=blocks, metrics=chosen, n_pairs=len(pairs), batch_size=exact.batch_size,
            skipped=exact.skipped.to_dict(orient="records"))  # fmt: skip
    typer.echo(f"patch: {len(pairs)} pairs, {len(exact.table)} exact cells -> {out}")
    return table


def ablate_command(
    model: Model,
    data: Data = None,
    split: Split = None,
    sentences: Sentences = "heldout",
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/ablate"),
    seed: Seed = 0,
    streams: Streams = None,
    max_pairs: MaxPairs = 200,
    n_random: Annotated[int, typer.Option(help="random control directions")] = 20,
    probe: Annotated[bool, typer.Option(help="also ablate a word-identity probe direction")] = True,
    k: Annotated[int, typer.Option(help="lens top-k for decodability")] = 5,
    layers: Layers = None,
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
    lens: Annotated[
        str,
        typer.Option(
            help="the lens that reads decodability: auto (of logit and current, the one that "
            "reads written words best, decided on text first) | logit | current (fitted on "
            "text) | tuned (with --tuned-path)"
        ),
    ] = "auto",
    tuned_path: Annotated[
        Path | None, typer.Option(help="lens dir of --lens tuned | current (see lens)")
    ] = None,
) -> dict:
    """Text-direction (and probe) ablation vs random directions, then the verdict per band
    (decodability read by ``--lens``, with its text ceiling in lens.csv; the text direction
    ablated is the one that lens reads)."""
    from speech_interp.causal import ablate_bands, verdicts
    from speech_interp.causal.ablation import summarize_ablation
    from speech_interp.cli.lens import check_lens_options, lens_for_command
    from speech_interp.lens import run_lens
    from speech_interp.lens.metrics import LENS_CSV
    from speech_interp.plotting import plot_ablation_bands

    check_lens_options(lens, tuned_path)  # before the model loads
    rem, given, bands = _band_setup(
        model, data, split, backend, remote, streams, layers, text_tokenizer, sentences,
        trust_remote_code,
    )  # fmt: skip
    utterances, loaded, layout, data_info = given
    from speech_interp.causal.ablation import text_direction_source
    from speech_interp.lens.ceiling import blind_streams, text_ceiling

    lens_obj, lens_note = lens_for_command(
        lens, tuned_path, loaded, utterances, layout, seed, 500, model
    )
    kw = dict(n_random=n_random, probe=probe, seed=seed, max_words=max_pairs, remote=rem)
    table = ablate_bands(loaded, layout, utterances, bands, model_id=model, lens=lens_obj, **kw)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(table, out / "ablation.csv")
    write_csv(summarize_ablation(table), out / "ablation_summary.csv")
    read = run_lens(loaded, layout, utterances, lens=lens_obj, ks=(k,), seed=seed, remote=rem,
                    model_id=model)  # fmt: skip
    ceiling = text_ceiling(loaded, layout, lens_obj, utterances, model_id=model, backend=backend,
                           seed=seed)  # fmt: skip
    write_csv(pd.concat([read.summary, ceiling], ignore_index=True), out / LENS_CSV)
    content = verdicts(read.words, table, bands=bands, k=k, seed=seed)
    write_verdicts(out, {model: content})
    for metric in sorted(set(table["metric"])):
        plot_ablation_bands(table, out / f"ablation_{metric}.png", verdicts=content, metric=metric,
                            title=f"{model}: {metric} metric")  # fmt: skip
    from speech_interp.causal.readouts import word_items

    _, skipped = word_items(utterances, layout, loaded.tokenizer)  # words no metric could read
    _finish(out, model, seed, data_info, "ablate", backend=backend, remote=remote,
            bands=bands, n_random=n_random, probe=probe, k=k, max_words=max_pairs,
            lens=lens_obj.name, lens_option=lens, lens_note=lens_note,
            text_direction=text_direction_source(lens_obj),
            blind_streams=blind_streams(ceiling, k),
            skipped=skipped.to_dict(orient="records"))  # fmt: skip
    summary = ", ".join(f"{e['band']}: {e['verdict']}" for e in content["bands"])
    typer.echo(f"ablate: {summary}; {len(skipped)} (word, metric) skipped (run.json) -> {out}")
    return content


def substitute_command(
    model: Model,
    data: Data = None,
    split: Split = None,
    sentences: Sentences = "heldout",
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/substitute"),
    seed: Seed = 0,
    streams: Streams = None,
    max_pairs: MaxPairs = 20,
    alpha: Annotated[str, typer.Option(help="comma list of move strengths")] = "1.0",
    n_random: Annotated[int, typer.Option(help="random deltas of equal norm (control)")] = 5,
    layers: Layers = None,
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
) -> pd.DataFrame:
    """Move a spoken word's state toward another word's text state; does speech follow?"""
    from speech_interp.causal import substitute
    from speech_interp.causal.substitution import (
        SUBSTITUTION_SKIPPED_COLUMNS,
        summarize_substitution,
    )
    from speech_interp.data import make_pairs

    rem, given, bands = _band_setup(
        model, data, split, backend, remote, streams, layers, text_tokenizer, sentences,
        trust_remote_code,
    )  # fmt: skip
    utterances, loaded, layout, data_info = given
    alphas = [float(a) for a in alpha.split(",") if a.strip()]
    pairs = make_pairs(utterances, seed=seed, max_pairs=max_pairs)
    kw = dict(alphas=alphas, n_random=n_random, seed=seed, remote=rem)
    with warnings.catch_warnings():  # the skipped read-outs are written and echoed below
        warnings.simplefilter("ignore")
        tables = [substitute(loaded, layout, pairs, band=b, model_id=model, **kw) for b in bands]
    table = pd.concat(tables, ignore_index=True)
    # the same in every band: what a read-out needs does not depend on it
    reads = pd.DataFrame(tables[0].attrs["skipped"], columns=SUBSTITUTION_SKIPPED_COLUMNS)
    used = set(table["pair"])
    skipped = [p.id for p in pairs if p.id not in used]  # no continuation on one side
    out.mkdir(parents=True, exist_ok=True)
    write_csv(table, out / "substitution.csv")
    write_csv(reads, out / "skipped.csv")
    write_csv(summarize_substitution(table), out / "substitution_summary.csv")
    write_csv(_pairs_frame(pairs), out / "pairs.csv")
    _finish(out, model, seed, data_info, "substitute", backend=backend, remote=remote,
            bands=bands, alphas=alphas, n_random=n_random, n_pairs=len(pairs),
            n_pairs_used=len(pairs) - len(skipped), skipped_pairs=skipped)  # fmt: skip
    typer.echo(
        f"substitute: {len(pairs) - len(skipped)} of {len(pairs)} pairs ({len(skipped)} skipped: "
        f"no continuation to read on one side; {len(reads)} skipped read-outs in skipped.csv), "
        f"bands {', '.join(bands)} -> {out}"
    )
    return table


__all__ = ["ablate_command", "patch_command", "substitute_command"]
