"""The package's architecture, enforced: which part may import which, sizes, the public surface.

Three parts and two leaves (see docs/api.md, "How the package is laid out"):

- leaves (``_log``, ``_types``, ``_timestamps``) import nothing of the package;
- ``context/`` (what a request knows) imports only ``context/``, the leaves and
  ``sentry.scrubbing``;
- ``store/`` (durable delivery) imports only ``store/`` and the leaves, and
  only ``sentry.init``, ``__main__`` and the package root import it;
- ``sentry/`` (how the library plugs into sentry-sdk) imports ``sentry/``,
  ``context/`` and the leaves (``sentry.init`` the store too);
- adapters import ``adapters.support``, the middleware, the leaves and each
  other; ``adapters.support`` is their one seam into the core;
- nothing inside the package imports the package root, and no import,
  function-level ones included, closes a cycle.

Every import statement counts, wherever it is: at module level, in a
function, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

import asgi_sentry_ctx

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "asgi_sentry_ctx"
LEAVES = frozenset({f"{PACKAGE}._log", f"{PACKAGE}._types", f"{PACKAGE}._timestamps"})
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

Graph = Mapping[str, frozenset[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py"))}


def imported_modules(path: Path, name: str, known: frozenset[str]) -> frozenset[str]:
    """The package's modules that ``path`` (module ``name``) imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, *([base] if base else [])])
            found.add(base)
            # ``from package import module`` imports the module too.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return frozenset(module for module in found if module in known)


def import_graph() -> dict[str, frozenset[str]]:
    modules = package_modules()
    known = frozenset(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def part(module: str) -> str:
    """``leaf``, ``root``, ``context``, ``sentry``, ``store``, ``adapters``,
    ``support`` or the module's own name (``middleware``, ``testing``, ``__main__``)."""
    if module in LEAVES:
        return "leaf"
    if module == PACKAGE:
        return "root"
    if module == f"{PACKAGE}.adapters.support":
        return "support"
    return module.split(".")[1]


ALLOWED: Mapping[str, frozenset[str]] = {
    "leaf": frozenset(),
    "context": frozenset({"context", "leaf"}),
    "store": frozenset({"store", "leaf"}),
    "sentry": frozenset({"sentry", "context", "leaf"}),
    "middleware": frozenset({"context", "sentry", "leaf"}),
    "support": frozenset({"context", "sentry", "leaf"}),
    "adapters": frozenset({"adapters", "support", "middleware", "leaf"}),
    "testing": frozenset({"leaf"}),
    "pytest_plugin": frozenset({"sentry", "testing", "leaf"}),
    "__main__": frozenset(),
    "root": frozenset({"context", "sentry", "middleware", "leaf"}),
}
# Single modules a part may import beyond its parts.
EXCEPTIONS: Mapping[str, frozenset[str]] = {
    # Request data is scrubbed where it is read.
    "context": frozenset({f"{PACKAGE}.sentry.scrubbing"}),
}
# The only modules outside store/ that may import it.
STORE_IMPORTERS = frozenset({f"{PACKAGE}.sentry.init", f"{PACKAGE}.__main__", PACKAGE})


def rule_violations(graph: Graph) -> list[str]:
    """Every import in ``graph`` that breaks a rule, as "importer -> imported: why"."""
    broken = []
    for importer, imported in sorted(graph.items()):
        kind = part(importer)
        for module in sorted(imported):
            target = part(module)
            if module == PACKAGE:
                broken.append(f"{importer} -> {module}: nothing inside imports the root")
            elif target == "store" and kind != "store":
                if importer not in STORE_IMPORTERS:
                    broken.append(
                        f"{importer} -> {module}: only init_sentry and the CLI use the store"
                    )
            elif target not in ALLOWED[kind] and module not in EXCEPTIONS.get(kind, ()):
                broken.append(f"{importer} -> {module}: {kind} may not import {target}")
    return broken


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each module that is on one (depth-first search)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for nxt in sorted(graph.get(module, ())):
            if state.get(nxt) == 1:
                found.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return found


def code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """A function's length without its docstring."""
    body = node.body
    first = body[0]
    if (
        len(body) > 1
        and isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        first = body[1]
    end = node.end_lineno or node.lineno
    return end - first.lineno + 1


def test_every_import_follows_the_layout_rules() -> None:
    assert rule_violations(import_graph()) == []


def test_no_import_closes_a_cycle() -> None:
    assert cycles(import_graph()) == []


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    # Both are imported only inside functions or under TYPE_CHECKING.
    assert f"{PACKAGE}._types" in graph[f"{PACKAGE}.context.state"]
    assert f"{PACKAGE}.store.cli" in graph[f"{PACKAGE}.__main__"]


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        (
            {f"{PACKAGE}._log": frozenset({f"{PACKAGE}.context.state"})},
            "leaf may not import context",
        ),
        (
            {f"{PACKAGE}.context.enrich": frozenset({f"{PACKAGE}.sentry.noise"})},
            "context may not import sentry",
        ),
        (
            {f"{PACKAGE}.store.forwarding": frozenset({f"{PACKAGE}.context.state"})},
            "store may not import context",
        ),
        (
            {f"{PACKAGE}.sentry.noise": frozenset({f"{PACKAGE}.store.event_store"})},
            "only init_sentry and the CLI use the store",
        ),
        (
            {f"{PACKAGE}.adapters.quart": frozenset({f"{PACKAGE}.context.capture"})},
            "adapters may not import context",
        ),
        (
            {f"{PACKAGE}.middleware": frozenset({PACKAGE})},
            "nothing inside imports the root",
        ),
    ],
)
def test_the_rules_catch_a_forbidden_import(graph: Graph, expected: str) -> None:
    [violation] = rule_violations(graph)
    assert violation.endswith(expected)


def test_a_cycle_through_a_function_level_import_is_found() -> None:
    state, enrich = f"{PACKAGE}.context.state", f"{PACKAGE}.context.enrich"
    graph = {state: frozenset({enrich}), enrich: frozenset({state})}
    assert cycles(graph) == [[enrich, state, enrich]]


@pytest.mark.parametrize("name", sorted(package_modules()))
def test_no_module_is_longer_than_the_limit(name: str) -> None:
    lines = len(package_modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines"


def test_no_function_is_longer_than_the_limit() -> None:
    long = {}
    for name, path in package_modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            if code_lines(node) > MAX_FUNCTION_LINES:
                long[f"{name}.{node.name}"] = code_lines(node)
    assert long == {}


def test_the_public_api_is_exactly_this() -> None:
    assert sorted(asgi_sentry_ctx.__all__) == [
        "EventStore",
        "Failure",
        "NoiseFilter",
        "OutboundPropagation",
        "RequestContextFilter",
        "SentryContextMiddleware",
        "StoreTransport",
        "add_breadcrumb",
        "add_request_context",
        "bind_context",
        "business_context",
        "capture_message",
        "clear_user",
        "current_user",
        "get_request_id",
        "ignore_exception_types",
        "init_sentry",
        "is_valid_request_id",
        "register_sink",
        "report_failure",
        "scrub_event",
        "set_business_context",
        "set_user",
        "store_transport",
        "unregister_sink",
        "user_from",
    ]


def test_every_public_name_is_importable_and_documented() -> None:
    reference = (ROOT / "docs" / "api.md").read_text()
    for name in asgi_sentry_ctx.__all__:
        assert getattr(asgi_sentry_ctx, name) is not None
        assert f"::: {PACKAGE}.{name}\n" in reference, name


def test_importing_the_package_changes_nothing_in_sentry_sdk() -> None:
    # The set-up step registers the processors (init_sentry, the middleware);
    # a bare import must not.
    code = (
        "from sentry_sdk.scope import global_event_processors as before\n"
        "n = len(before)\n"
        "import asgi_sentry_ctx, asgi_sentry_ctx.store, asgi_sentry_ctx.adapters.starlette\n"
        "from sentry_sdk.integrations.logging import _IGNORED_LOGGERS\n"
        "assert len(before) == n, before\n"
        "assert 'asgi_sentry_ctx' not in _IGNORED_LOGGERS\n"
        "asgi_sentry_ctx.SentryContextMiddleware(None)\n"
        "assert len(before) == n + 2, before\n"
        "assert 'asgi_sentry_ctx' in _IGNORED_LOGGERS\n"
        "asgi_sentry_ctx.SentryContextMiddleware(None)\n"
        "assert len(before) == n + 2, before\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
