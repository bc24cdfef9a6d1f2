"""The core is sans-IO: no module under zkv/core imports anything that does IO, reads a clock
or starts a thread (DESIGN "Architecture: a sans-IO core")."""

from __future__ import annotations

import ast
import pathlib

import pytest

import zkv.core

FORBIDDEN = frozenset({"zmq", "socket", "time", "random", "threading", "asyncio", "os", "subprocess", "select"})
CORE_DIR = pathlib.Path(zkv.core.__file__).parent
CORE_MODULES = sorted(CORE_DIR.rglob("*.py"))


def forbidden_imports(source: str) -> list[str]:
    """Every forbidden top-level module the source imports (``import x.y``, ``from x.y import z``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.extend(name for name in names if name.split(".")[0] in FORBIDDEN)
    return found


def test_the_core_has_modules_to_check():
    names = {path.name for path in CORE_MODULES}
    assert {"node.py", "quorum.py", "membership.py", "paxos.py", "config.py"} <= names


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.relative_to(CORE_DIR).as_posix())
def test_core_module_imports_nothing_that_does_io(path):
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", CORE_MODULES, ids=lambda path: path.relative_to(CORE_DIR).as_posix())
def test_core_module_has_no_dynamic_imports(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    dynamic = [node.lineno for node in ast.walk(tree)
               if (isinstance(node, ast.Name) and node.id == "__import__")
               or (isinstance(node, ast.Import) and any(a.name.split(".")[0] == "importlib" for a in node.names))
               or (isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "importlib")]
    assert dynamic == [], "a dynamic import would get around the check above"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import time", ["time"]),
        ("import os.path", ["os.path"]),
        ("from os import path", ["os"]),
        ("from os.path import join", ["os.path"]),
        ("import json, random as rng", ["random"]),
        ("from threading import Thread", ["threading"]),
        ("def f():\n    import zmq\n", ["zmq"]),  # hidden in a function
        ("if False:\n    import socket\n", ["socket"]),
        ("try:\n    import select\nexcept ImportError:\n    pass\n", ["select"]),
        ("from asyncio import sleep\nimport subprocess", ["asyncio", "subprocess"]),
        ("import timeit", []),  # a name that only starts like a forbidden one
        ("import ostruct", []),
        ("from . import time", []),  # a relative import is a module of ours
        ("from .random import pick", []),
        ("import msgpack\nfrom hashlib import blake2b", []),
    ],
)
def test_the_checker_itself(source, expected):
    assert forbidden_imports(source) == expected
