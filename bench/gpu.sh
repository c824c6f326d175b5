#!/usr/bin/env bash
# GPU benchmark: patching, attribution and the lens at 7B / 9B shapes in bfloat16 (random weights,
# vocabulary + 502 speech tokens), against TransformerLens measured in the same run.
# Run from the repository root on a CUDA machine with the project installed:
#   bash bench/gpu.sh            (about 10 minutes on one H200)
set -euo pipefail
export TQDM_DISABLE=1
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
for shape in qwen2.5-7b glm-4-9b; do
  echo "== ${shape}: exact patching (TransformerLens on 200 sampled cells), attribution, lens over 30 s"
  python bench/bench_real_size.py --shape "${shape}" --device cuda --dtype bfloat16 \
    --units 250 --words 16 --tl-cells 200 --batch-size 32 --lens-tokens 750
done
