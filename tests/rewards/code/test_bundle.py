"""antisd.rewards.code.bundle: the in-sandbox driver package shipped as one program text for ``python -I -S -c``."""

from __future__ import annotations

import ast
import json
import subprocess
import sys

from antisd.rewards.code.bundle import DRIVER_SOURCE, MODULES, PACKAGE, PACKAGE_DIR, driver_source, module_sources


def run_one_shot(request: dict, source: str = DRIVER_SOURCE) -> list[dict]:
    """Run the bundled driver once (no fork server) as the sandbox does: ``-I -S``, records on stdout."""
    config = {"result_fd": 1, "uid": None, "gid": None, "rlimits": {"CORE": 0}}
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", source, json.dumps(config)], input=json.dumps(request),
                          capture_output=True, text=True, timeout=60, cwd=PACKAGE_DIR.root)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def io_request(program: str, inputs: list) -> dict:
    return {"mode": "io", "program": program, "setup": "", "entry_point": "f", "inputs": inputs, "time_limits": None}


def test_every_module_of_the_driver_package_is_shipped():
    on_disk = {path.stem for path in PACKAGE_DIR.glob("*.py")}
    assert on_disk == {"__init__", *MODULES}
    assert [name for name, _ in module_sources()] == [PACKAGE] + [f"{PACKAGE}.{m}" for m in MODULES]


def test_driver_modules_import_only_the_stdlib_and_modules_loaded_before_them():
    for position, name in enumerate(("__init__", *MODULES)):
        tree = ast.parse((PACKAGE_DIR / f"{name}.py").read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"driver/{name}.py: relative import"
                modules = [node.module]
            else:
                continue
            for module in modules:
                if module.startswith(PACKAGE + "."):
                    earlier = MODULES[: max(position - 1, 0)]
                    assert module.removeprefix(PACKAGE + ".") in earlier, f"driver/{name}.py imports {module}"
                else:
                    assert module.split(".")[0] in sys.stdlib_module_names, f"driver/{name}.py imports {module}"


def test_the_bundle_is_ascii_and_rebuilt_the_same():
    assert DRIVER_SOURCE.isascii()
    assert driver_source() == DRIVER_SOURCE


def test_the_bundled_driver_runs_where_antisd_cannot_be_imported():
    records = run_one_shot(io_request("def f(x):\n    return {x: (x, 2**70)}\n", [[1], [2]]))
    assert records[0] == {"ready": True} and records[-1] == {"done": True}
    outs = [(r["i"], r["out"]) for r in records[1:-1]]
    assert outs == [(0, {"d": [[1, {"t": [1, {"i": "400000000000000000"}]}]]}),
                    (1, {"d": [[2, {"t": [2, {"i": "400000000000000000"}]}]]})]
    # the sandboxed interpreter has no antisd: everything the driver needs travelled in the program text
    assert "ModuleNotFoundError" in run_one_shot(io_request("import antisd\n", []))[0]["load_error"]


def test_a_program_sees_the_builtins_module_as_in_a_main_script():
    records = run_one_shot(io_request("def f():\n    return type(__builtins__).__name__\n", [[]]))
    assert records[1]["out"] == "module"
