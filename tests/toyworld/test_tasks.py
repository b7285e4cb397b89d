"""antisd.toyworld.tasks: seeded problems, unique brute-force answers, the held-out split by hash."""

from __future__ import annotations

import pytest

from antisd.toyworld.tasks import (
    FAMILIES,
    ToyTaskConfig,
    brute_force,
    make_dataset,
    make_problems,
    split_of,
)


def test_generator_is_deterministic_under_seed():
    a = [p.key for p in make_problems(200, seed=3)]
    assert a == [p.key for p in make_problems(200, seed=3)]
    assert a != [p.key for p in make_problems(200, seed=4)]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_every_answer_is_the_unique_brute_force_solution(split):
    problems = make_problems(3000, split=split, seed=1)
    assert {p.family for p in problems} == set(FAMILIES)
    for p in problems:
        assert brute_force(p.prompt) == [p.answer], p.prompt
        assert p.verdict(p.answer) == "yes" and sum(p.verdict(y) == "yes" for y in p.candidates) == 1


def test_heldout_split_is_disjoint_and_by_hash():
    cfg = ToyTaskConfig()
    train = make_problems(4000, split="train", seed=0, config=cfg)
    held = make_problems(1000, split="heldout", seed=0, config=cfg)
    assert not {p.split_key for p in train} & {p.split_key for p in held}
    assert not {p.key for p in train} & {p.key for p in held}
    assert all(split_of(p, cfg.heldout_frac) == "train" for p in train)
    assert all(split_of(p, cfg.heldout_frac) == "heldout" for p in held)
    # the space is large: few repeats among fresh train problems
    assert len({p.key for p in train}) > 0.8 * len(train)
    assert len({p.split_key for p in train}) > 0.4 * len(train)


def test_dataset_columns():
    ds = make_dataset(16, split="heldout", seed=0)
    assert ds.column_names == ["prompt", "answer", "solution", "family"]
    row = ds[0]
    assert row["solution"] == f"x = {row['answer']}" and brute_force(row["prompt"]) == [int(row["answer"])]


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="families"):
        ToyTaskConfig(families=("linear", "nope"), family_weights=(1.0, 1.0))
