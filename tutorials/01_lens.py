# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
# ---

# %% [markdown]
# # 01 · The lens on a speech-text LM, from TransformerLens
#
# A jupytext "percent" script: open it as a notebook (`jupytext --to notebook 01_lens.py`) or
# run it as is. It walks a TransformerLens user through the lens on the shipped organism v4
# (`organism:v4-full`, a tiny interleaved LM that hears its 40 content words):
# load the model as a `TransformerBridge`, build a spoken prompt with exact word positions, do
# the logit lens by hand with `run_with_cache`, then run speech-interp's memory-bounded lens with
# matched controls and CIs over the evaluation set. `TUTORIAL_QUICK=1` uses a few utterances.

# %%
import os
from pathlib import Path

import torch

import speech_interp as si
from speech_interp.data import select_sentences, select_split
from speech_interp.organism.world import eval_data, organism_world

MODEL = "organism:v4-full"
WORLD = organism_world(MODEL)  # its lexicon, facts and evaluation set

QUICK = os.environ.get("TUTORIAL_QUICK") == "1"
OUT = Path(os.environ.get("TUTORIAL_OUT", "out/tutorial_01"))
OUT.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## Load the organism into TransformerLens
# `si.load` returns TransformerLens's own `TransformerBridge` and the family's token layout.

# %%
model, layout = si.load(MODEL, backend="tl")
print(
    type(model).__name__, layout.spec.name, "units:", layout.n_units, "layers:", si.n_layers(model)
)

# %% [markdown]
# ## A spoken utterance and its word positions

# %%
header, utterances = si.read_utterances(eval_data(WORLD))
# the eval split's held-out sentences (the fact sentences are marked seen_in_training)
utterances = select_sentences(select_split(utterances, "eval"), "heldout")
utt = utterances[0]
prompt = utt.to_prompt(layout, model.tokenizer)
print(utt.text)
print(prompt.to_frame().head(12))

# %% [markdown]
# ## Does it hear its words? The recognition gate
# A transcription claim needs a model that recognises spoken words. Where a content word is named
# again later in a sentence, speak the sentence through its first mention and continue in text:
# is the word's text more probable after its own speech than after a same-category control
# word's speech? Nothing is trained for this; the rule (`GATE_RULE`) was fixed before v4 trained.

# %%
from speech_interp.organism.hearing import GATE_RULE, hears, recognition_gate  # noqa: E402
from speech_interp.organism.train import shipped_units  # noqa: E402

_, gate = recognition_gate(si.hf_model(model), model.tokenizer, layout, utterances,
                           shipped_units(), WORLD)  # fmt: skip
print(GATE_RULE)
print(gate[gate.voice == "all"][["split", "n", "win_rate", "ci_low", "ci_high", "gain_nats"]])
print("hears:", hears(gate))

# %% [markdown]
# ## The logit lens by hand, the TransformerLens way
# Final norm + unembedding applied to every layer's residual stream, at the last unit of the
# second word: which text token is on top?

# %%
_, cache = model.run_with_cache(prompt.input_ids[None])
hf = si.hf_model(model)
word = 1
pos = prompt.last_position(word)
text_ids = torch.nonzero(layout.text_mask).flatten()
for layer, name in enumerate(si.resid_names(model, "all")):
    with torch.no_grad():
        logits = hf.lm_head(hf.model.norm(cache[name][0, pos]))
    top = text_ids[logits[text_ids].argmax()]
    print(layer, name, "->", model.tokenizer.convert_ids_to_tokens(int(top)))
print("spoken word:", prompt.words[word])

# %% [markdown]
# ## The lens over the evaluation set, with controls and CIs
# `run_lens` never materialises layers x positions x vocab; every rate comes with a bootstrap CI
# over word types and a control word matched on category and frequency. Transcription is read
# at or after each word's uniqueness point (`after_uniqueness`); the claim is the excess over the
# control and over what the model predicted before the word began (`pre_onset`).

# %%
subset = utterances[: 8 if QUICK else 300]
result = si.run_lens(model, layout, subset, progress=False, n_boot=200 if QUICK else 2000)
result.summary.to_csv(OUT / "lens.csv", index=False)
excess = si.excess_over_control(result.words, metric="transcription", k=5)
print(excess[["layer", "value", "ci_low", "ci_high", "n"]])
over_pre = si.excess_over_control(result.words, k=5, baseline="pre_onset")
print(over_pre[["layer", "value", "ci_low", "ci_high", "n"]])
print(si.phase_bands(result)[["phase", "first_layer", "last_layer"]])

# %% [markdown]
# ## Can the lens see a written word? The text ceiling
# A transcription rate says the spoken word's text is decodable at a stream. That means
# something only where the same lens reads the word when it is *written*. `text_ceiling`
# writes the same utterances as text and reads the current word at each written word's last
# token. The logit lens is a next-token channel: past stream 0 it reads the *next* word, so its
# ceiling collapses. The `current` lens (a ridge read-out per stream fitted on written sentences
# of the organism's grammar, the analysed ones left out) sees the word. `choose_lens` keeps the
# candidate with the highest ceiling over the intermediate streams, decided on text before any
# speech is read (`CHOICE_RULE`).

# %%
from speech_interp.lens import build_lens  # noqa: E402
from speech_interp.lens.ceiling import blind_streams  # noqa: E402
from speech_interp.lens.choice import CHOICE_RULE, choose_lens  # noqa: E402
from speech_interp.organism.evalset import lens_fit_sentences  # noqa: E402

analysed = {tuple(w.word for w in u.words) for u in subset}
fit, val = lens_fit_sentences(WORLD, analysed, 1200, 300, seed=0)
builders = {
    "logit": lambda: build_lens("logit", model, layout),
    "current": lambda: build_lens("current", model, layout, texts=(fit, val, "grammar")),
}
chosen, lens, _, ceilings, choice = choose_lens(model, layout, subset, builders)
print(CHOICE_RULE)
print(choice)
print("logit lens blind to written words at streams", blind_streams(ceilings["logit"]))
ceiling = ceilings[chosen]
content = ceiling[(ceiling.metric == "text_ceiling") & (ceiling.k == 5)
                  & (ceiling.words == "content")]  # fmt: skip
print(chosen, "lens, text ceiling of content words:")
print(content[["layer", "value", "ci_low", "ci_high"]])

# %% [markdown]
# The after-uniqueness transcription rate of content words read with the chosen lens, beside
# its control word's and as a share of the ceiling: what part of what the lens sees in text it
# also sees in speech.

# %%
read = si.run_lens(model, layout, subset, lens=lens, progress=False, n_boot=200 if QUICK else 2000)
s = read.summary
rows = s[(s.position_rule == "after_uniqueness") & (s.k == 5) & (s.vocab == "text")
         & (s.words == "content")]  # fmt: skip
rates = rows.pivot_table(index="layer", columns="metric", values="value")
rates["text_ceiling"] = content.set_index("layer")["value"]
rates["share_of_ceiling"] = rates["transcription"] / rates["text_ceiling"]
print(rates[["transcription", "transcription_control", "text_ceiling", "share_of_ceiling"]])

# %%
from speech_interp.plotting import plot_phase_curves, plot_token_heatmap  # noqa: E402

plot_phase_curves(result.summary, OUT / "phase_curves.png", title="organism v4 (full)")
plot_token_heatmap(model, layout, prompt, "logit", OUT / "token_heatmap.png")
print("wrote", OUT)

# %% [markdown]
# ## The lens viewer
# One self-contained HTML page: per utterance, the layer x token grid coloured by the spoken
# word's own text token (hover a cell for its top-5 text tokens), the uniqueness points and the
# phase bands. In Jupyter it shows inline below; elsewhere open `viewer.html` in a browser.

# %%
from speech_interp.lens import phase_bands  # noqa: E402
from speech_interp.plotting.viewer import viewer_data, write_viewer  # noqa: E402

viewer = write_viewer(
    OUT / "viewer.html",
    viewer_data(
        {"full": (model, layout)}, subset[:5],
        summaries={"full": result.summary}, bands={"full": phase_bands(result)},
    ),
)  # fmt: skip
try:
    from IPython.display import IFrame

    display(IFrame(os.path.relpath(viewer), width="100%", height=420))  # noqa: F821
except NameError:  # a plain script: no notebook display
    print("viewer:", viewer)
