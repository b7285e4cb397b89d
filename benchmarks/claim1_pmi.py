"""Claim 1 (the PMI sign split) on each toy base policy, as records (issue 25; pre-stated in docs/benchmarks.md).

For every base: ``antisd.toyworld.pmi_check`` on 128 held-out problems x 4 rollouts of the base policy
(temperature 1, 96 tokens), mean u on the deliberation words after a failed try and on the correct candidate
(`try <answer>`), with 95% intervals from 2,000 resamples of whole rollouts; written as a PMI record
(``antisd.trainer.records.make_pmi_record``) to ``--results/--study/<base>.json``. One torch thread.

    python benchmarks/claim1_pmi.py --bases S=default A0=a0 search=search
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

logger = logging.getLogger("claim1_pmi")


def main(argv: list[str] | None = None) -> list[Path]:
    import torch

    from antisd.trainer.records import base_identity, make_pmi_record, write_record
    from antisd.toyworld import ensure_base_policy, recipe
    from antisd.toyworld.pmi_check import run_pmi_check

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bases", nargs="+", default=["S=default", "A0=a0", "search=search"], help="NAME=RECIPE")
    ap.add_argument("--study", default="claim1_pmi")
    ap.add_argument("--results", default="results")
    ap.add_argument("--n_problems", type=int, default=128)
    ap.add_argument("--group_size", type=int, default=4)
    ap.add_argument("--n_boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(a.threads)
    written = []
    for spec in a.bases:
        name, _, recipe_name = spec.partition("=")
        if not recipe_name:
            raise SystemExit(f"--bases {spec!r}: expected NAME=RECIPE")
        path = ensure_base_policy(recipe(recipe_name))
        t0 = time.time()
        res = run_pmi_check(path, n_problems=a.n_problems, group_size=a.group_size, forms=("answer",), seed=a.seed,
                            n_boot=a.n_boot)
        res.pop("model", None)  # a path of this machine
        settings = {"n_problems": a.n_problems, "group_size": a.group_size, "form": "answer", "n_boot": a.n_boot,
                    "seed": a.seed, "runner": "benchmarks/claim1_pmi.py"}
        rec = make_pmi_record(study=a.study, run=name, settings=settings, base=base_identity(path), result=res,
                              runtime_s=time.time() - t0)
        rec["base_label"] = name
        out = write_record(Path(a.results) / a.study / f"{name}.json", rec)
        c1 = res["forms"]["answer"]["claim1"]
        logger.info("%s: deliberation after a failed try %s; correct candidate %s -> %s", name,
                    c1["deliberation_after_fail"], c1["correct_candidate"], out)
        written.append(out)
    return written


if __name__ == "__main__":
    main()
