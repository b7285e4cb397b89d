"""Chat prompts, rollouts and the unpadded full-logits reference shared by the PMI tests."""

from __future__ import annotations

import torch

from antisd.pmi import Rollout

SYSTEM = {"role": "system", "content": "Please reason step by step."}


def chat(text: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": text}]


def naive_completion_logps(model, prompt_ids: list[int], completion_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: one unpadded sequence, the model's full logits, log_softmax. -> logps (T,), entropy (T,)."""
    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt_ids) - 1:-1].double()  # (T, V)
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(1, ids[0, len(prompt_ids):, None]).squeeze(1), -(logp.exp() * logp).sum(-1)


def make_rollouts(tok) -> list[Rollout]:
    g = torch.Generator().manual_seed(0)
    lens = [5, 13, 9, 1]
    comps = [torch.randint(3, len(tok), (n,), generator=g).tolist() for n in lens]
    comps[0][-1] = tok.eos_token_id  # a completion ending with eos, as TRL scores it
    prompts = [chat("What is 1 + 1?"), chat("Compute the sum of the first 10 positive integers, please."),
               chat("What is 1 + 1?"), chat("Find x.")]
    return [
        Rollout(prompt=prompts[0], completion_ids=comps[0], reward=1.0, answer="2", solution="1 + 1 = 2", problem_id="a", rollout_id="r0"),
        Rollout(prompt=prompts[1], completion_ids=comps[1], reward=0.0, answer="55", solution="10 * 11 / 2 = 55", problem_id="b", rollout_id="r1"),
        Rollout(prompt=prompts[2], completion_ids=comps[2], reward=1.0, answer="2", solution=None, problem_id="a", rollout_id="r2"),
        Rollout(prompt=prompts[3], completion_ids=comps[3], reward=0.0, answer="3", solution=None, problem_id="c", rollout_id="r3"),
    ]
