"""Rollout dumps (``dump_rollouts_every``): every rollout of a generation batch with its teacher prompt and
per-token student and teacher log-probs and entropies, appended to ``<output_dir>/rollouts/rollouts.jsonl``
(the input of ``antisd pmi --rollouts``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from accelerate.utils import gather_object


def rollout_records(step: int, generation: int, stash: dict, contexts, rewards, completion_ids, token_mask,
                    tokenizer, s, t, h, s_ent=None) -> list[dict[str, Any]]:
    """One JSON record per rollout of this process: only its scored completion tokens."""
    records = []
    for i, c in enumerate(contexts):
        keep = token_mask[i]
        ids = completion_ids[i][keep].tolist()
        records.append({
            "step": step, "generation": generation, "prompt": stash["prompts"][i],
            "completion": stash["completions"][i], "teacher_prompt": c.prompt, "source": c.source,
            "correct": c.correct, "reward": float(rewards[i]), "completion_ids": ids,
            "tokens": tokenizer.convert_ids_to_tokens(ids), "student_logps": s[i][keep].tolist(),
            "teacher_logps": t[i][keep].tolist(), "teacher_entropy": h[i][keep].tolist(),
            "student_entropy": None if s_ent is None else s_ent[i][keep].tolist(),
        })
    return records


def append_rollouts(accelerator, output_dir: str, records: list[dict[str, Any]]) -> None:
    """Gather every process's records and append them on the main process."""
    records = gather_object(records) if accelerator.num_processes > 1 else records
    if accelerator.is_main_process:
        out = Path(output_dir) / "rollouts"
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "rollouts.jsonl", "a") as fh:
            for r in records:
                fh.write(json.dumps(r, default=lambda o: None) + "\n")

