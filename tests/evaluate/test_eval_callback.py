"""antisd.evaluate.callback: held-out avg@k / pass@k during training, bound and unbound."""

from __future__ import annotations

import pytest

import antisd.evaluate as ev
from antisd.evaluate import EvalCallback


@pytest.mark.slow
def test_eval_callback_logs_through_the_trainer(tiny_model_path, tmp_path):
    import datasets
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    train = datasets.Dataset.from_dict({"input_ids": [[5, 6, 7, 8]] * 4, "labels": [[5, 6, 7, 8]] * 4})
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, logging_steps=1,
                             report_to="none", save_strategy="no", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tok)
    problems = [{"problem_id": "a", "prompt": [{"role": "user", "content": "1+1?"}], "answer": "2"},
                {"problem_id": "b", "prompt": "2+2?", "answer": "4"}]
    callback = ev.attach_eval_callback(trainer, problems, eval_steps=2, k=2, max_new_tokens=4, temperature=1.0)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "eval/avg@2" in h]
    assert [h["step"] for h in logged] == [2] and 0 <= logged[0]["eval/pass@2"] <= 1
    assert logged[0]["eval/mean_tokens"] <= 4 and callback.history[0]["step"] == 2


@pytest.mark.slow
def test_eval_callback_unbound_merges_into_the_next_log(tiny_model, tiny_tokenizer):
    from transformers import TrainerControl, TrainerState

    callback = EvalCallback([{"problem_id": "a", "prompt": "1+1?", "answer": "2"}], eval_steps=3, k=1, max_new_tokens=2)
    state, control = TrainerState(), TrainerControl()
    tiny_model.train()
    state.global_step = 2
    callback.on_step_end(None, state, control, model=tiny_model, processing_class=tiny_tokenizer)
    assert state.log_history == []
    state.global_step = 3
    callback.on_step_end(None, state, control, model=tiny_model, processing_class=tiny_tokenizer)
    assert state.log_history[-1]["step"] == 3 and "eval/avg@1" in state.log_history[-1]
    assert tiny_model.training  # back in train mode after evaluating in eval mode
    logs = {"loss": 1.0}
    callback.on_log(None, state, control, logs=logs)
    assert set(logs) >= {"loss", "eval/avg@1", "eval/pass@1", "eval/truncation_rate"}
    with pytest.raises(ValueError, match="eval_steps"):
        EvalCallback([{"problem_id": "a", "prompt": "x", "answer": "1"}], eval_steps=0)
