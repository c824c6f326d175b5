"""``speech-interp reproduce``: the paper's evaluation on real checkpoints, one command.

Reads the fact set (``--data``: a Parquet file or directory in the published layout, a
``datasets`` directory, or ``hf:slprl/common-sense-facts-audio``), turns every rendering into
units with the family's extractor (``--units``; cached, so a second run needs no audio model),
then for every ``--model``: the lens under the paper's protocol and ours, spoken knowledge as
slamkit scores it, and the ablation verdict per layer band (:mod:`speech_interp.evaluation`).

Outputs in ``--out``: ``factset.jsonl`` (the units, reusable as ``--data`` by every command; one
``factset_<family>.jsonl`` per family when the models are of several),
``protocol.csv`` / ``protocol.md`` (both readings), ``lens.csv``, ``knowledge.csv``,
``knowledge_summary.csv``, ``strength.csv``, ``verdict.json``, ``plan.md`` (the GPU time and
memory estimate of this run's size), ``report.md`` and ``run.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from speech_interp.artifacts import write_csv, write_run_json, write_text, write_verdicts
from speech_interp.cli.common import Backend, Seed, TextTokenizer, TrustRemoteCode
from speech_interp.shipped import user_cache

UNITS = ("auto", "organism", "mhubert", "spiritlm")
Models = Annotated[list[str], typer.Option("--model", help="checkpoint(s); repeat for several")]


def extractor_for(units: str, family: str, hubert: str, kmeans: str | None, quantizer):
    """(factory building the unit extractor, its id for the cache) of ``--units``; ``auto``
    takes the family's own (organism: the shipped MFCC k-means; sims: mHuBERT-25Hz layer 11 +
    k-means 500; spiritlm: mHuBERT-25Hz layer 11 + its linear quantizer)."""
    choice = units
    if units == "auto":
        choice = {"organism": "organism", "sims": "mhubert", "spiritlm": "spiritlm"}.get(family)
        if choice is None:
            raise typer.BadParameter(
                f"family {family!r} has no bundled unit extractor: pass --units "
                f"{' | '.join(UNITS[1:])}, or extract units yourself and use `lens --data`"
            )
    if choice == "organism":
        from speech_interp.organism import ORGANISM_DIR
        from speech_interp.organism.train import OrganismConfig, speech_table

        def shipped():  # the shipped unit table's extractor (seed 0)
            return speech_table(OrganismConfig(), 0, ORGANISM_DIR, progress=False).extractor

        return shipped, "organism-shipped-mfcc-kmeans"
    if choice == "mhubert":
        from speech_interp.speech.mhubert import MHubertExtractor

        return (
            lambda: MHubertExtractor.from_pretrained(hubert, kmeans),
            f"mhubert|{hubert}|{kmeans or 'twist-L11-km500'}|L11",
        )
    if choice == "spiritlm":
        if quantizer is None:
            raise typer.BadParameter("--units spiritlm needs --quantizer (L11_quantizer_500.pt)")
        from speech_interp.speech.mhubert import MHubertExtractor

        return (
            lambda: MHubertExtractor.spiritlm(quantizer, hubert),
            f"spiritlm|{hubert}|{Path(quantizer).resolve()}|L11",
        )
    raise typer.BadParameter(f"--units must be one of {', '.join(UNITS)}, got {units!r}")


def reproduce_command(
    model: Models,
    data: Annotated[str, typer.Option(help="fact set: Parquet file/dir, datasets dir, hf:<repo>")],
    out: Annotated[Path, typer.Option(help="output directory")] = Path("out/reproduce"),
    backend: Backend = "nnsight",
    device: Annotated[str, typer.Option(help="torch device of the weights: cpu | cuda")] = "cpu",
    dtype: Annotated[str, typer.Option(help="weights dtype: float32 | bfloat16")] = "float32",
    units: Annotated[str, typer.Option(help="unit extractor: " + " | ".join(UNITS))] = "auto",
    hubert: Annotated[str, typer.Option(help="mHuBERT id or dir")] = "slprl/mhubert-base-25hz",
    kmeans: Annotated[str | None, typer.Option(help="k-means file (default: TWIST L11)")] = None,
    quantizer: Annotated[Path | None, typer.Option(help="SpiritLM's linear quantizer")] = None,
    limit: Annotated[int, typer.Option(help="at most this many facts (0 = all)")] = 0,
    causal: Annotated[bool, typer.Option(help="also run the ablation verdict per band")] = True,
    max_words: Annotated[int, typer.Option(help="spoken words per band, causal test")] = 80,
    strict: Annotated[bool, typer.Option(help="timed words must match the prompt text")] = True,
    seed: Seed = 0,
    text_tokenizer: TextTokenizer = None,
    trust_remote_code: TrustRemoteCode = False,
) -> dict:
    """The paper's evaluation on checkpoints: fact set -> units -> lens (paper + ours) ->
    spoken knowledge -> causal verdict per band."""
    import torch

    from speech_interp.data.factset import read_factset
    from speech_interp.data.factset_units import cached_factset_utterances
    from speech_interp.evaluation.plan import plan_markdown
    from speech_interp.evaluation.protocol import protocol_markdown
    from speech_interp.evaluation.reproduce import gather, reproduce_model
    from speech_interp.models import hf_model, load, weights_dir_of

    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16}
    if dtype not in dtypes:
        raise typer.BadParameter(f"--dtype must be one of {', '.join(dtypes)}, got {dtype!r}")
    if units not in UNITS:
        raise typer.BadParameter(f"--units must be one of {', '.join(UNITS)}, got {units!r}")
    items = read_factset(data, strict=strict)
    items = items[:limit] if limit else items
    parts, data_files, runs = {}, {}, {}
    for name in model:
        loaded, layout = load(
            name,
            backend=backend,
            device=device,
            dtype=dtypes[dtype],
            text_tokenizer=text_tokenizer,
            trust_remote_code=trust_remote_code,
        )
        factory, extractor_id = extractor_for(units, layout.spec.name, hubert, kmeans, quantizer)
        utterances, skipped_units, path, cached = cached_factset_utterances(
            items,
            factory,
            extractor_id,
            user_cache(),
            family=layout.spec.name,
            rule=layout.spec.unit_word_rule,
        )
        data_files[name] = {
            "units": str(path),
            "from_cache": cached,
            "renderings_skipped": skipped_units.to_dict(orient="records"),
        }
        parts[name] = reproduce_model(
            loaded, layout, utterances, model_id=name, causal=causal, max_words=max_words, seed=seed
        )
        runs[name] = (hf_model(loaded).config, utterances, layout, loaded.tokenizer)
    got = gather(parts, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    factsets = _write_factsets(out, runs)
    data_files = {n: f | {"factset": factsets[n].name} for n, f in data_files.items()}
    write_csv(got.lens, out / "lens.csv")
    write_csv(got.protocol, out / "protocol.csv")
    write_text(out / "protocol.md", protocol_markdown(got.protocol, lens_rows=got.lens))
    write_csv(got.knowledge, out / "knowledge.csv")
    write_csv(got.knowledge_summary, out / "knowledge_summary.csv")
    write_csv(got.strength, out / "strength.csv")
    if got.verdicts:
        write_verdicts(out, got.verdicts)
    plans = _plans(runs, max_words)
    write_text(out / "plan.md", "\n\n".join(plan_markdown(p, n) for n, p in plans.items()) + "\n")
    write_text(out / "report.md", _report(got, items, plans))
    write_run_json(
        out,
        ",".join(model),
        seed,
        weights_dir=weights_dir_of(model[0]),
        data=factsets[model[0]],
        extra={
            "command": "reproduce",
            "models": list(model),
            "backend": backend,
            "device": device,
            "dtype": dtype,
            "units": units,
            "n_facts": len(items),
            "unit_files": data_files,
            "correlation": got.correlation,
            "skipped": got.skipped.to_dict(orient="records"),
            "factset": data,
            "plan": plans,
        },
    )
    typer.echo(f"reproduce: {len(items)} facts, {len(model)} model(s) -> {out}")
    return {"items": len(items), "correlation": got.correlation, "out": str(out)}


def _report(got, items, plans) -> str:
    from speech_interp.evaluation.plan import plan_markdown
    from speech_interp.evaluation.protocol import protocol_markdown

    know = got.knowledge_summary
    lines = [
        "# The paper's evaluation, reproduced",
        "",
        f"{len(items)} facts.",
        "",
        "## Lens: the paper's protocol beside ours (k = 5)",
        "",
        protocol_markdown(got.protocol),
        "## Spoken knowledge (slamkit's rule)",
        "",
        "| model | continuation | category | score | 95% CI | n |",
        "|---|---|---|---|---|---|",
    ]
    for r in know.itertuples():
        lines.append(
            f"| {r.model} | {r.continuation} | {r.category} | {r.score:.2f} | "
            f"[{r.ci_low:.2f}, {r.ci_high:.2f}] | {r.n} |"
        )
    c = got.correlation
    corr = (
        "none (" + c["note"] + ")"
        if c["r"] is None
        else f"r = {c['r']:.2f} [{c['ci_low']:.2f}, {c['ci_high']:.2f}] over {c['n_points']} points"
    )
    lines += ["", f"Transcription strength vs spoken knowledge (text continuation): {corr}.", ""]
    for m, v in got.verdicts.items():
        bands = ", ".join(f"{b['band']}: {b['verdict']}" for b in v["bands"])
        lines.append(f"Verdict, {m}: {bands}.")
    lines += ["", "## GPU plan (estimate)", ""]
    lines += [plan_markdown(p, name) + "\n" for name, p in plans.items()]
    return "\n".join(lines)


def _write_factsets(out: Path, runs: dict) -> dict[str, Path]:
    """Each model's units as a data file: ``factset.jsonl`` when every model is of one family
    (one extractor: the same units), else ``factset_<family>.jsonl`` per family."""
    from speech_interp.data.utterances import write_utterances

    families = {layout.spec.name for _, _, layout, _ in runs.values()}
    paths = {}
    for name, (_, utterances, layout, _) in runs.items():
        family = layout.spec.name
        path = out / ("factset.jsonl" if len(families) == 1 else f"factset_{family}.jsonl")
        if path not in paths.values():
            write_utterances(path, utterances, family=family)
        paths[name] = path
    return paths


def _plans(runs: dict, max_words: int) -> dict[str, dict]:
    """The estimate for each model of this run, and for SIMS-7B on the whole published set
    (281 items x 3 renderings), all at the first model's measured prompt and word lengths."""
    from speech_interp.evaluation.plan import QWEN25_7B, reproduce_plan

    plans = {}
    size = None
    for name, (cfg, utterances, layout, tokenizer) in runs.items():
        prompts = [u.to_prompt(layout, tokenizer) for u in utterances]
        mine = {
            "prompt_tokens": round(sum(len(p.input_ids) for p in prompts) / len(prompts)),
            "word_positions": round(
                sum(sum(len(w) for w in p.word_positions) for p in prompts) / len(prompts)
            ),
            "causal_words": 3 * max_words,
        }
        size = size or mine
        key = "this run's model" if len(runs) == 1 else name
        plans[f"{key}, this run's facts"] = reproduce_plan(
            cfg, n_utterances=len(utterances), **mine
        )
    plans["SIMS-7B (Qwen2.5-7B), 281 facts x 3 renderings, one 80 GB GPU"] = reproduce_plan(
        QWEN25_7B, **size
    )
    return plans


__all__ = ["reproduce_command"]
