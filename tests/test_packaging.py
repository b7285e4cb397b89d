"""A non-editable install is self-contained: the wheel carries the recipes and the data files, an
install of it finds them from any folder, and no code, doc, recipe or help text points outside
the repository."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from antisd.data.shipped import MATH_FILES

ROOT = Path(__file__).resolve().parents[1]
CODE_FILES = ("humaneval_plus", "mbpp_plus", "mbpp_train")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a clean copy of the sources (no stale build/ folder can leak into it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, capture_output=True, cwd=src)
    (path,) = out.glob("antisd-*.whl")
    return path


@pytest.mark.slow
def test_the_wheel_contains_the_recipes_and_the_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    recipes = {p.relative_to(ROOT / "src").as_posix() for p in (ROOT / "src/antisd/resources/recipes").rglob("*")
               if p.is_file()}
    assert recipes and recipes <= names
    assert {"antisd/resources/recipes/toy/antisd.yaml", "antisd/resources/recipes/models/qwen3-8b.yaml",
            "antisd/resources/recipes/accelerate/zero3_8gpu.yaml"} <= recipes
    data = {f"antisd/resources/data/{name}.jsonl.gz" for name in [*MATH_FILES, *CODE_FILES]}
    assert data | {"antisd/resources/data/SOURCES.md"} <= names


@pytest.mark.slow
def test_an_installed_wheel_finds_recipes_and_data_from_any_folder(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target),
                    str(wheel)], check=True, capture_output=True)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import antisd, antisd.cli.options as c, antisd.toyworld.defaults as b, antisd.data.shipped as m\n"
        "assert antisd.__file__.startswith(sys.argv[1]), antisd.__file__\n"
        "assert str(c.RECIPES_DIR).startswith(sys.argv[1]) and c.list_recipes()[0]\n"
        "assert b.TOY_TRAIN['model_name_or_path'] == 'toyworld'\n"
        "assert c.load_recipe('qwen3-8b', 'antisd')['dataset_name'] == 'dapo_math_17k'\n"
        "assert m.file_digest('aime2024') == m.MATH_FILES['aime2024']\n"
        "print('ok')\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([sys.executable, "-c", script, str(target)], cwd=elsewhere, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


# Paths of this machine or of folders beside the repository must never be named.
FORBIDDEN = re.compile(r"/work/|\.\./shared|shared/data|/root/|/home/\w+|METHOD\.md|PITFALLS\.md")


def test_no_code_doc_or_recipe_points_outside_the_repository():
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "src").rglob("*.py"),
             *(ROOT / "src").rglob("*.yaml"), *(ROOT / "src").rglob("*.md"), *(ROOT / "benchmarks").rglob("*.py")]
    hits = [f"{p.relative_to(ROOT)}:{n}: {line.strip()}" for p in files
            for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if FORBIDDEN.search(line)]
    assert hits == []


def test_help_texts_name_no_path_of_this_machine(capsys):
    from antisd.cli.main import main
    from antisd.evaluate.config import build_parser as eval_parser
    from antisd.pmi.config import build_parser as pmi_parser

    for argv in (["train", "--help-all"], ["train", "--help"], ["--help"], ["recipe", "--list"], ["data", "--help"]):
        try:
            main(argv)
        except SystemExit:  # argparse's own --help
            pass
    print(eval_parser().format_help(), pmi_parser().format_help())
    text = capsys.readouterr().out
    assert "antisd train" in text and "antisd eval" in text and "antisd pmi" in text and "antisd data" in text
    for path in {str(ROOT), str(Path.home()), sys.prefix}:
        assert path not in text
