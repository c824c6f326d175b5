"""``speech-interp patch | ablate | substitute``: the causal tests on a data file.

Options shared by the three commands: ``--model`` (HF id, local dir or ``organism[:v]``),
``--data`` (utterance file, :mod:`speech_interp.data`), ``--backend tl|nnsight``, ``--remote
off|local|ndif`` (nnsight only: ``local`` is nnsight's simulation of the NDIF server, ``ndif``
needs ``NDIF_API_KEY``), ``--out DIR``, ``--seed``, ``--layers`` and ``--max-pairs``.

``--layers``: for ``patch`` one band of blocks ``a-b`` (default: all blocks); for ``ablate`` and
``substitute`` comma-separated bands of residual streams in the lens numbering (``1-2,3-4``;
default: every stream 1..L-1 as its own band).

Outputs (besides ``run.json``):

- ``patch``: ``patch.csv`` (exact and attribution rows), ``patch_summary.csv`` (means over
  pairs), ``rank_agreement.csv``, ``pairs.csv``, ``patch_heatmap_{metric}.png``,
  ``attribution_scatter.png``; ``patch_cells.csv`` is the resumable checkpoint (rerun the same
  command after an interruption).
- ``ablate``: ``ablation.csv``, ``ablation_summary.csv``, ``lens.csv`` (for decodability),
  ``verdict.json``, ``ablation_{band}_{metric}.png``.
- ``substitute``: ``substitution.csv``, ``substitution_summary.csv``, ``pairs.csv``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from speech_interp.lens_cli import command_run_json, load_for_command

REMOTE = {"off": False, "local": "local", "ndif": True}

Model = Annotated[str, typer.Option(help="HF id, local save_pretrained dir or organism[:v]")]
Data = Annotated[Path, typer.Option(help="utterance file (JSON Lines, speech_interp.data)")]
Split = Annotated[str | None, typer.Option(help="use only utterances of this split (e.g. eval)")]
Backend = Annotated[str, typer.Option(help="tl | nnsight")]
Remote = Annotated[str, typer.Option(help="off | local (simulated NDIF) | ndif (NDIF_API_KEY)")]
Seed = Annotated[int, typer.Option(help="seed of pairs, directions and bootstrap")]
MaxPairs = Annotated[int, typer.Option(help="at most this many pairs (ablate: spoken words)")]


def _remote(remote: str, backend: str):
    if remote not in REMOTE:
        raise typer.BadParameter(f"--remote must be one of {', '.join(REMOTE)}, got {remote!r}")
    if REMOTE[remote] and backend != "nnsight":
        raise typer.BadParameter("--remote local|ndif needs --backend nnsight")
    return REMOTE[remote]


def _stream_bands(layers: str | None, L: int) -> list[str]:
    from speech_interp.interventions import band_label, parse_band

    if layers is None:
        return [f"{s}-{s}" for s in range(1, L)] or [f"0-{L}"]
    return [band_label(parse_band(b, L)) for b in layers.split(",") if b.strip()]


def _block_band(layers: str | None, L: int) -> list[int] | None:
    from speech_interp.interventions import parse_span
    from speech_interp.patching import check_layers

    if layers is None:
        return None
    try:
        lo, hi = parse_span(layers)
    except ValueError:
        raise typer.BadParameter(f"--layers must look like '2-4' or '3', got {layers!r}") from None
    if lo > hi:
        raise typer.BadParameter(f"--layers {layers!r}: the band's first block exceeds its last")
    return check_layers(None, range(lo, hi + 1), n=L)


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
    data: Data,
    split: Split = None,
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory (also the resume checkpoint)")] = Path(
        "out/patch"
    ),
    seed: Seed = 0,
    layers: Annotated[str | None, typer.Option(help="band of blocks, e.g. 2-4")] = None,
    max_pairs: MaxPairs = 20,
    batch_size: Annotated[int, typer.Option(help="patched cells per forward pass")] = 64,
    metrics: Annotated[str, typer.Option(help="comma list of speech, text")] = "speech,text",
    attribution: Annotated[bool, typer.Option(help="also run attribution patching")] = True,
) -> pd.DataFrame:
    """Exact (and attribution) activation patching over layers x aligned word positions."""
    from speech_interp.attribution import attribution_sweep, rank_agreement
    from speech_interp.causal_plots import plot_attribution_scatter, plot_patching_heatmap
    from speech_interp.pairs import make_pairs
    from speech_interp.patching import patch_sweep, summarize_patching
    from speech_interp.residuals import n_layers

    rem = _remote(remote, backend)
    utterances, loaded, layout = load_for_command(model, data, backend, split)
    blocks = _block_band(layers, n_layers(loaded))
    kinds = [k.strip() for k in metrics.split(",") if k.strip()]
    pairs = make_pairs(utterances, seed=seed, max_pairs=max_pairs)
    out.mkdir(parents=True, exist_ok=True)
    _pairs_frame(pairs).to_csv(out / "pairs.csv", index=False)
    kw = dict(kinds=kinds, layers=blocks, remote=rem, model_id=model)
    exact = patch_sweep(loaded, layout, pairs, batch_size=batch_size, out_dir=out, **kw)
    tables = [exact.table]
    if attribution:
        attr = attribution_sweep(loaded, layout, pairs, **kw)
        tables.append(attr.table)
        rank_agreement(exact.table, attr.table).to_csv(out / "rank_agreement.csv", index=False)
        plot_attribution_scatter(exact.table, attr.table, out / "attribution_scatter.png")
    table = pd.concat(tables, ignore_index=True)
    table.to_csv(out / "patch.csv", index=False)
    summarize_patching(table).to_csv(out / "patch_summary.csv", index=False)
    for kind in sorted(set(exact.table["metric"])):
        plot_patching_heatmap(exact.table, out / f"patch_heatmap_{kind}.png", metric=kind)
    extra = {
        "command": "patch",
        "backend": backend,
        "remote": remote,
        "split": split,
        "layers": blocks,
        "metrics": kinds,
        "n_pairs": len(pairs),
        "batch_size": batch_size,
        "skipped": exact.skipped.to_dict(orient="records"),
    }
    command_run_json(out, model, data, seed, extra)
    typer.echo(f"patch: {len(pairs)} pairs, {len(exact.table)} exact cells -> {out}")
    return table


def ablate_command(
    model: Model,
    data: Data,
    split: Split = None,
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/ablate"),
    seed: Seed = 0,
    layers: Annotated[str | None, typer.Option(help="stream bands, e.g. 1-2,3-4")] = None,
    max_pairs: MaxPairs = 200,
    n_random: Annotated[int, typer.Option(help="random control directions")] = 20,
    probe: Annotated[bool, typer.Option(help="also ablate a word-identity probe direction")] = True,
    k: Annotated[int, typer.Option(help="lens top-k for decodability")] = 5,
) -> dict:
    """Text-direction (and probe) ablation vs random directions, then the verdict per band."""
    from speech_interp.causal_plots import plot_ablation_control
    from speech_interp.interventions import ablate, summarize_ablation
    from speech_interp.lens import run_lens
    from speech_interp.residuals import n_layers
    from speech_interp.verdict import verdicts, write_verdict

    rem = _remote(remote, backend)
    utterances, loaded, layout = load_for_command(model, data, backend, split)
    bands = _stream_bands(layers, n_layers(loaded))
    frames = [
        ablate(
            loaded,
            layout,
            utterances,
            band=b,
            n_random=n_random,
            probe=probe,
            seed=seed,
            max_words=max_pairs,
            remote=rem,
            model_id=model,
        )
        for b in bands
    ]
    table = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "ablation.csv", index=False)
    summarize_ablation(table).to_csv(out / "ablation_summary.csv", index=False)
    lens = run_lens(loaded, layout, utterances, ks=(k,), seed=seed, remote=rem, model_id=model)
    lens.summary.to_csv(out / "lens.csv", index=False)
    content = verdicts(lens.words, table, bands=bands, k=k, seed=seed)
    write_verdict(out / "verdict.json", content)
    for band in bands:
        for metric in sorted(set(table[table["band"] == band]["metric"])):
            plot_ablation_control(
                table, out / f"ablation_{band}_{metric}.png", band=band, metric=metric
            )
    extra = {
        "command": "ablate",
        "backend": backend,
        "remote": remote,
        "split": split,
        "bands": bands,
        "n_random": n_random,
        "probe": probe,
        "k": k,
        "max_words": max_pairs,
    }
    command_run_json(out, model, data, seed, extra)
    summary = ", ".join(f"{e['band']}: {e['verdict']}" for e in content["bands"])
    typer.echo(f"ablate: {summary} -> {out}")
    return content


def substitute_command(
    model: Model,
    data: Data,
    split: Split = None,
    backend: Backend = "tl",
    remote: Remote = "off",
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/substitute"),
    seed: Seed = 0,
    layers: Annotated[str | None, typer.Option(help="stream bands, e.g. 1-2,3-4")] = None,
    max_pairs: MaxPairs = 20,
    alpha: Annotated[str, typer.Option(help="comma list of move strengths")] = "1.0",
    n_random: Annotated[int, typer.Option(help="random deltas of equal norm (control)")] = 5,
) -> pd.DataFrame:
    """Move a spoken word's state toward another word's text state; does speech follow?"""
    from speech_interp.pairs import make_pairs
    from speech_interp.residuals import n_layers
    from speech_interp.substitution import substitute, summarize_substitution

    rem = _remote(remote, backend)
    utterances, loaded, layout = load_for_command(model, data, backend, split)
    bands = _stream_bands(layers, n_layers(loaded))
    alphas = [float(a) for a in alpha.split(",") if a.strip()]
    pairs = make_pairs(utterances, seed=seed, max_pairs=max_pairs)
    frames = [
        substitute(
            loaded,
            layout,
            pairs,
            band=b,
            alphas=alphas,
            n_random=n_random,
            seed=seed,
            remote=rem,
            model_id=model,
        )
        for b in bands
    ]
    table = pd.concat(frames, ignore_index=True)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "substitution.csv", index=False)
    summarize_substitution(table).to_csv(out / "substitution_summary.csv", index=False)
    _pairs_frame(pairs).to_csv(out / "pairs.csv", index=False)
    extra = {
        "command": "substitute",
        "backend": backend,
        "remote": remote,
        "split": split,
        "bands": bands,
        "alphas": alphas,
        "n_random": n_random,
        "n_pairs": len(pairs),
    }
    command_run_json(out, model, data, seed, extra)
    typer.echo(f"substitute: {len(pairs)} pairs, bands {', '.join(bands)} -> {out}")
    return table


__all__ = ["ablate_command", "patch_command", "substitute_command"]
