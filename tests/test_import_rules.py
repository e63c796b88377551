"""The layering the README draws, enforced: which part may import which (PLAN.md, issue 15).

- the core (``lookout/``: contracts, the face pipeline, the gallery contract, small
  infrastructure) imports no part;
- ``device`` and ``relay`` never import ``sync``, ``evaluation``, ``console``, ``cli`` or
  ``demo``, nor each other;
- ``models`` imports only the core;
- only ``cli`` and ``demo`` (the top) import ``cli`` or ``demo``;
- parts import each other without cycles;
- no import inside a function (a lazy import hides a dependency or dodges a cycle),
  except the few heavy optional libraries listed in ``LAZY_ALLOWED``.

Read from the source with ``ast``: nothing is imported to check it.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORE = "core"
# folder at the top of the checkout -> part name (imported as lookout.<part>)
PARTS = ("models", "sync", "device", "relay", "evaluation", "greengrass", "console", "cli", "demo")
TOP = {"cli", "demo"}
FORBIDDEN = {
    "device": {"sync", "evaluation", "console", "cli", "demo", "relay"},
    "relay": {"sync", "evaluation", "console", "cli", "demo", "device"},
}
ONLY_CORE = {"models"}
# The program's entry point (`python -m lookout`) is the one core module that starts the CLI.
ENTRY_POINTS = {"lookout/__main__.py"}

# Libraries that may be imported inside a function, each for a reason a reader can check.
LAZY_ALLOWED = {
    "awsiot": "the Greengrass IPC client: optional extra `greengrass`, only on Greengrass devices",
    "nncf": "INT8 quantisation: optional extra `quantize`, heavy (pulls in torch-like deps), one command uses it",
    "matplotlib": "report plots: dev dependency, absent on devices; imports in ~0.5 s",
    "skimage": "the demo's built-in faces when faces-dev is absent: dev dependency only",
    "boto3": "AWS SNS: heavy import (~0.4 s), only relays configured with an SNS notifier need it",
    "botocore": "comes with boto3 (see boto3)",
    "gi": "GStreamer's RTSP server (lookout/rtsp_gst_server.py): a system library under the system Python only, "
    "absent from the virtualenv that imports the module for its stamp layout",
    # The console's web stack (starlette, jinja2, uvicorn, python-multipart, argon2) is the optional extra `console`:
    # ~20 MB and 0.25 s at import, which every `lookout` command (the device's `lookout run` too) would pay if the
    # CLI imported it. These two console modules are what `lookout console` and `lookout demo --console` start.
    "lookout.console.server": "the console's web server (uvicorn, starlette): optional extra `console`",
    "lookout.console.accounts": "the console's accounts (argon2): optional extra `console`",
}


def lazy_allowed(module: str) -> bool:
    """A module listed in LAZY_ALLOWED, or inside one (``botocore.config`` under ``botocore``)."""
    return any(module == name or module.startswith(name + ".") for name in LAZY_ALLOWED)


@dataclass(frozen=True)
class ImportSite:
    path: str  # relative to the project root
    line: int
    module: str  # the imported module, absolute
    in_function: bool


def part_of_file(rel: Path) -> str:
    return rel.parts[0] if rel.parts[0] in PARTS else CORE


def part_of_module(module: str) -> str | None:
    """The part a ``lookout.*`` module belongs to (CORE for the core); None for third-party modules."""
    names = module.split(".")
    if names[0] != "lookout":
        return None
    return names[1] if len(names) > 1 and names[1] in PARTS else CORE


def source_files() -> Iterator[Path]:
    for folder in ("lookout", *PARTS):
        root = PROJECT_ROOT / folder
        if root.is_dir():
            yield from sorted(p for p in root.rglob("*.py") if ".venv" not in p.parts)


def package_of(rel: Path) -> list[str]:
    """The dotted package a file lives in, as installed (``sync/sources/x.py`` -> lookout.sync.sources)."""
    folders = list(rel.parts[:-1])
    return ["lookout", *folders] if folders and folders[0] in PARTS else folders


def imports(path: Path) -> Iterator[ImportSite]:
    rel = path.relative_to(PROJECT_ROOT)
    tree = ast.parse(path.read_text(encoding="utf-8"), str(rel))
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(sub) for sub in ast.walk(node) if sub is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield ImportSite(str(rel), node.lineno, alias.name, id(node) in in_function)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = package_of(rel)[: len(package_of(rel)) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            targets = [module] if module != "lookout" else [f"lookout.{a.name}" for a in node.names]
            for target in targets:
                yield ImportSite(str(rel), node.lineno, target, id(node) in in_function)


@functools.cache
def all_imports() -> tuple[ImportSite, ...]:
    return tuple(site for path in source_files() for site in imports(path))


def layer_problem(site: ImportSite) -> str | None:
    source = part_of_file(Path(site.path))
    target = part_of_module(site.module)
    if target is None or target in (source, CORE) or site.path in ENTRY_POINTS:
        return None
    if source == CORE:
        return f"the core imports no part, here {target}"
    if source in ONLY_CORE:
        return f"{source} imports only the core, here {target}"
    if target in FORBIDDEN.get(source, ()):
        return f"{source} may not import {target}"
    if target in TOP and source not in TOP:
        return f"only the top (cli, demo) imports {target}"
    return None


def test_parts_import_only_what_the_layering_allows():
    problems = [
        f"{s.path}:{s.line} imports {s.module}: {why}" for s in all_imports() if (why := layer_problem(s)) is not None
    ]
    assert not problems, "\n".join(problems)


def test_parts_do_not_import_each_other_in_a_cycle():
    edges: dict[str, set[str]] = {}
    for site in all_imports():
        source, target = part_of_file(Path(site.path)), part_of_module(site.module)
        if target not in (None, CORE, source) and source != CORE:
            edges.setdefault(source, set()).add(target)  # type: ignore[arg-type]

    def cycle_from(start: str, node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(edges.get(node, ())):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = cycle_from(start, nxt, [*path, nxt])
                if found:
                    return found
        return None

    cycles = [" -> ".join(c) for part in sorted(edges) if (c := cycle_from(part, part, [part]))]
    assert not cycles, "parts import each other in a cycle: " + "; ".join(cycles)


def test_no_imports_inside_functions_but_heavy_optional_libraries():
    problems = [
        f"{s.path}:{s.line} imports {s.module} inside a function: import it at the top of the module"
        for s in all_imports()
        if s.in_function and not lazy_allowed(s.module)
    ]
    assert not problems, "\n".join(problems)


def test_the_checker_sees_what_it_checks():
    """The rules above would pass vacuously if the files were not found or imports not read."""
    sites = all_imports()
    files = {s.path for s in sites}
    assert {"device/runtime.py", "relay/service.py", "lookout/gallery/reader.py", "cli/main.py"} <= files
    assert layer_problem(ImportSite("device/x.py", 1, "lookout.sync.build", False))
    assert layer_problem(ImportSite("lookout/face/x.py", 1, "lookout.models.install", False))
    assert layer_problem(ImportSite("models/x.py", 1, "lookout.evaluation.cli", False))
    assert layer_problem(ImportSite("sync/x.py", 1, "lookout.cli.main", False))
    assert layer_problem(ImportSite("cli/x.py", 1, "lookout.sync.build", False)) is None
    assert part_of_module("lookout.gallery.reader") == CORE and part_of_module("numpy") is None
