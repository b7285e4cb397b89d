"""The maths data shipped with antisd, and a converter for DAPO-Math-17k's hub layout.

Files: ``antisd/resources/data/<name>.jsonl.gz`` (provenance, licences, row counts and checksums
of the uncompressed files, cleaning notes: ``resources/data/SOURCES.md``). Every row has ``id``,
``problem``, ``answer`` (a string) and ``source``; ``solution`` where the source has one.

    aime2024 aime2025 aime2026 hmmt_feb2025 minerva_math math500 gsm8k_test   evaluation
    dapo_math_17k                                                               training (17,290)
    arith_small_train arith_small_test      generated single-digit arithmetic (143 / 64; ``arith_rows``)

These names are built-in dataset names: ``antisd train --dataset_name dapo_math_17k`` (and
``antisd pmi --dataset``, ``antisd eval --benchmarks NAME=math500``) read the packaged file
when no local file of that name exists (``antisd.data.problems.load_raw``); ``antisd eval``'s presets
(``aime24``, ``math500``, ...) read them too. Nothing is downloaded.

``convert_verl(src, dst)``: the hub's ``BytedTsinghua-SIA/DAPO-Math-17k`` is in verl's layout
(``prompt`` = ``[{"role": "user", "content": DAPO prefix + problem + DAPO suffix}]``,
``reward_model.ground_truth``, ``extra_info.index``; every prompt repeated many times). It is
turned into the flat layout of ``dapo_math_17k``: the instruction stripped, rows deduplicated
on the exact problem text (the first occurrence's answer kept, other answers listed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MATH_FILES: dict[str, tuple[int, str]] = {
    "aime2024": (30, "0ef316ff06d7af63b0d844dbbd550ffb88896b1333f4613e7ad6337768c1e206"),
    "aime2025": (30, "f26d4acf6ace65cab83a5627fe200001f24e7b9293f14454b041566c00e3b91c"),
    "aime2026": (30, "8319eaf05c8b9a34f79130e239fdda22e1158b92cf16ac9bb738e0805bcc672b"),
    "hmmt_feb2025": (30, "dd86689e239ed277b20dc203d70afb22ccde94ffa99f9aaec0d95d7e2e400ea7"),
    "minerva_math": (272, "c7da583b518faee3b5fa16b648bcf051378b33f343396a0f0a48fab487174367"),
    "math500": (500, "1e442b710dc86e3513d0a6feb8fc0eb5982de09baadd357d2ca2f669f0e46e05"),
    "gsm8k_test": (1319, "a6b468d86a369be697692bca0493e043e461561f847a1d7fe233cb0a32c9d607"),
    "dapo_math_17k": (17290, "9cf7dd36bd036571e7c4b6020581d6404d8816500642722ecf1e31ea0113673d"),
    "arith_small_train": (143, "7a376de7edd8a5393eab70a4d3a429dd15799aeac26834e667643620b36bbcbf"),
    "arith_small_test": (64, "c9b1cbf5fcf0fa3bdfcd136fe78741c3e6dcb8a40f9fac1cc11aaa085d760171"),
}
"""Row count and sha256 of each uncompressed file (as in SOURCES.md)."""

DAPO_PREFIX = ("Solve the following math problem step by step. The last line of your response should be of the "
               "form Answer: $Answer (without quotes) where $Answer is the answer to the problem.\n\n")
DAPO_SUFFIX = '\n\nRemember to put your answer on its own line after "Answer:".'


def data_dir() -> Path:
    """The folder of the packaged data files (a real folder: the package is installed unzipped)."""
    return Path(str(resources.files("antisd.resources").joinpath("data")))


def data_path(name: str) -> Path:
    """The packaged ``<name>.jsonl.gz``; ValueError for a name that is not shipped."""
    if name not in MATH_FILES:
        raise ValueError(f"no packaged maths data named {name!r}; expected one of {', '.join(MATH_FILES)}")
    return data_dir() / f"{name}.jsonl.gz"


def builtin_dataset(name: str) -> Path | None:
    """The packaged file of a built-in dataset name (``dapo_math_17k``, ``math500``, ...), else None."""
    return data_path(name) if name in MATH_FILES else None


def read_bytes(name: str) -> bytes:
    """The uncompressed JSONL bytes of the packaged file `name`."""
    return gzip.decompress(data_path(name).read_bytes())


def file_digest(name: str) -> tuple[int, str]:
    """(row count, sha256 hex) of the uncompressed file `name`."""
    data = read_bytes(name)
    return data.count(b"\n"), hashlib.sha256(data).hexdigest()


def read_rows(name: str) -> list[dict[str, Any]]:
    """The rows of the packaged file `name`."""
    return [json.loads(line) for line in read_bytes(name).decode("utf-8").splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------- generated arithmetic

ARITH_SPLIT_SEED = 0
ARITH_TEST_ROWS = 64


def arith_rows() -> dict[str, list[dict[str, Any]]]:
    """The generated ``arith_small`` problems, split into ``arith_small_train`` and ``arith_small_test``.

    Every single-digit sum ``a + b``, product ``a * b`` (a, b in 1..9) and difference ``a - b`` with a >= b:
    207 problems, asked as ``What is 7 + 5?`` with the answer as an integer string. A shuffle with
    ``random.Random(ARITH_SPLIT_SEED)`` puts ``ARITH_TEST_ROWS`` of them in the held-out file and the rest in the
    training file (each in generation order). A task a 135M-parameter model solves sometimes (about a third
    of the time at temperature 0.7 for SmolLM2-135M-Instruct, docs/realmodel.md): a real-model RL pilot needs
    groups in which some rollouts are right. No ``solution`` column: the teacher sees the answer line."""
    import random

    problems = []
    for op in ("+", "-", "*"):
        for a in range(1, 10):
            for b in range(1, 10):
                if op == "-" and a < b:
                    continue
                value = a + b if op == "+" else a - b if op == "-" else a * b
                problems.append((f"What is {a} {op} {b}?", str(value)))
    order = list(range(len(problems)))
    random.Random(ARITH_SPLIT_SEED).shuffle(order)
    test = set(order[:ARITH_TEST_ROWS])
    out: dict[str, list[dict[str, Any]]] = {"arith_small_train": [], "arith_small_test": []}
    for i, (problem, answer) in enumerate(problems):
        name = "arith_small_test" if i in test else "arith_small_train"
        out[name].append({"id": f"arith-{i:03d}", "problem": problem, "answer": answer, "source": "arith_small v1"})
    return out


def arith_jsonl(rows: list[dict[str, Any]]) -> bytes:
    """The uncompressed bytes of a generated file (one ``json.dumps`` line per row)."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")


# ---------------------------------------------------------------------------------------- verl layout


def _verl_rows(src: Path) -> list[dict[str, Any]]:
    """Rows of a verl-layout file: parquet (the hub's) or JSON lines with the same nested fields."""
    if src.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(src).to_pylist()
    from antisd.cli.validate import read_json_rows

    return read_json_rows(src, what="src")


def _verl_problem(row: dict[str, Any], i: int) -> tuple[str, str]:
    """(bare problem text, ground truth) of one verl row; ValueError naming the row otherwise."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        content = prompt
    elif isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        content = prompt[-1].get("content")
    else:
        content = None
    truth = (row.get("reward_model") or {}).get("ground_truth") if isinstance(row.get("reward_model"), dict) else None
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"row {i}: 'prompt' is {type(prompt).__name__}; expected a list of chat messages "
                         "whose last one has a non-empty 'content' (verl layout)")
    if truth is None or (isinstance(truth, str) and not truth.strip()):
        raise ValueError(f"row {i}: 'reward_model.ground_truth' is missing or empty; expected the final answer")
    problem = content.removeprefix(DAPO_PREFIX).removesuffix(DAPO_SUFFIX)
    return problem, str(truth)


def convert_verl(src: str | Path, dst: str | Path, *, id_prefix: str = "dapo17k",
                 source: str = "dapo_math_17k") -> dict[str, int]:
    """Write the flat layout (id, problem, answer, source, orig_indices, other_answers) of a verl file.

    Rows are deduplicated on the exact problem text in file order; ``id`` is ``<id_prefix>-<first
    row index, 5 digits>``, ``orig_indices`` every row index with that text, ``other_answers`` the
    further distinct answers of repeated texts. Returns counts: rows read, problems written,
    repeated texts, texts with conflicting answers.
    """
    src, dst = Path(src), Path(dst)
    problems: dict[str, dict[str, Any]] = {}
    rows = _verl_rows(src)
    for i, row in enumerate(rows):
        problem, answer = _verl_problem(row, i)
        seen = problems.get(problem)
        if seen is None:
            problems[problem] = {"id": f"{id_prefix}-{i:05d}", "problem": problem, "answer": answer,
                                 "source": source, "orig_indices": [i], "other_answers": []}
            continue
        seen["orig_indices"].append(i)
        if answer != seen["answer"] and answer not in seen["other_answers"]:
            seen["other_answers"].append(answer)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(dst, "w", encoding="utf-8") as fh:
        for row in problems.values():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    counts = {"rows": len(rows), "problems": len(problems),
              "repeated": sum(len(p["orig_indices"]) > 1 for p in problems.values()),
              "conflicting": sum(bool(p["other_answers"]) for p in problems.values())}
    logger.info("Converted %s: %d rows -> %d problems (%d repeated texts, %d with conflicting answers) in %s",
                src, counts["rows"], counts["problems"], counts["repeated"], counts["conflicting"], dst)
    return counts
