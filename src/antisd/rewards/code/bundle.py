"""The in-sandbox driver (`antisd.rewards.code.driver`) as ONE program text, for ``python -I -S -c``.

Inside bubblewrap the sandbox sees none of the host's files (docs/code.md), and ``-I -S`` keeps antisd
off its import path in any case, so the driver's modules travel as text: the program installs each module of the package in ``sys.modules``
under its own name (package first, then ``MODULES`` in order, each importing only modules before it),
executing its source there, then calls ``main.main()``. The driver's own imports
(``from antisd.rewards.code.driver.wire import ...``) then find those modules, in the sandbox as on the
trusted side. ``DRIVER_SOURCE`` is that text, built once per process from the package's files; the local
executor passes it after ``-c``, and the Sandbox Fusion backend sends it with its config prepended.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = "antisd.rewards.code.driver"
MODULES = ("wire", "program", "server", "main")  # load order: each imports only modules listed before it
PACKAGE_DIR = Path(__file__).with_name("driver")

LOADER = """import sys


def _antisd_install(name, source, package=False):
    module = type(sys)(name)
    if package:
        module.__path__ = []
    module.__package__ = name if package else name.rpartition(".")[0]
    sys.modules[name] = module
    exec(compile(source, "<" + name + ">", "exec"), module.__dict__)

"""


def module_sources(package_dir: Path = PACKAGE_DIR) -> list[tuple[str, str]]:
    """(module name, source) of the package and of each module in ``MODULES``, in load order."""
    files = [("__init__", PACKAGE)] + [(name, f"{PACKAGE}.{name}") for name in MODULES]
    return [(full, (package_dir / f"{stem}.py").read_text(encoding="utf-8")) for stem, full in files]


def driver_source(package_dir: Path = PACKAGE_DIR) -> str:
    """The whole driver as one ASCII program text: ``LOADER``, one install per module, then ``main()``."""
    lines = [LOADER]
    for i, (name, source) in enumerate(module_sources(package_dir)):
        package = ", True" if i == 0 else ""
        lines.append(f"_antisd_install({name!r}, {ascii(source)}{package})\n")
    lines.append(f"sys.modules[{PACKAGE + '.main'!r}].main()\n")
    return "".join(lines)


DRIVER_SOURCE = driver_source()
