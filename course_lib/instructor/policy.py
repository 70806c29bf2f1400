"""What an exercise's code may not use, checked on the student's source, outside the kernel.

Each exercise declares its forbidden references once, in ``policies/<assignment>/<grade_id>.yml``
(``grade_id`` is the exercise's solution cell; ``_default.yml`` holds what every exercise of the
assignment may not use)::

    tests: [test_fans]          # the graded cells this exercise decides
    forbid: [course_lib.init.fans, torch.nn.init._calculate_fan_in_and_fan_out, .softmax]
    allow: []                   # exceptions to the forbid patterns (globs)
    self_checks: []             # names of checks whose expected value comes from the student's own run
    shortcuts: ["def fans(weight):\\n    return init.fans(weight)\\n"]   # the obvious cheats, for the tests
    forbid_ran: [torch.nn.init._calculate_fan_in_and_fan_out, "aten.elu*"]  # what may not run (globs)
    allow_ran: []               # exceptions to the forbid_ran patterns
    ran_shortcuts: []           # cheats that only forbid_ran catches (the names do not show them), for the tests

:func:`check` reads every student-written code cell of a submission with :mod:`ast` (no code runs) and
returns :class:`Finding` s of three kinds:

- ``forbidden``: an exercise's code, or a function of the student's that it reaches (in an added cell or
  in another exercise's cell), uses a forbidden name. Names resolve through values, not spellings: the
  notebook's imports (``init.fans`` -> ``course_lib.init.fans``, ``F.prelu`` -> ``torch.nn.functional.prelu``),
  assignments in any scope (``_p = plots``; ``f = init.fans``), and attributes read by constant strings
  (``getattr(x, "a")``, ``operator.attrgetter("a.b")(x)``, ``functools.reduce(getattr, ["a"], x)``,
  ``operator.methodcaller("cov")``). A pattern is an :mod:`fnmatch` glob of a dotted name, or ``.name`` for
  any attribute of that name (a tensor method); ``torch.Tensor.name`` also forbids the method form. Private
  names inside torch's submodules (``torch.optim.sgd._single_tensor_sgd``) and functions defined in graded
  test cells (their helpers) are forbidden everywhere. The exercise's tests score 0.
- ``tamper``: a construct that changes the grading or reaches past it and that no answer needs
  (IPython and interpreter internals, ``sys.modules``, ``builtins``, ``exec``/``eval``/``__import__``,
  ``getattr`` on a module with a computed name, ``ctypes``, ``gc``, threads, assigning to attributes of
  imported modules or of names bound to them, rebinding the names the tests use, comparison and
  ``__torch_function__`` overrides, and the attributes ``sys``, ``_C``, ``ops`` or a dunder such as
  ``__code__`` reached by any route: ``torch.sys.modules``, ``getattr(f, "__code__")``). A module name
  counts only where it is bound to the module: a parameter named ``types`` or ``code`` is a variable.
  Every graded cell of the notebook scores 0.
- ``flag``: unusual but possibly innocent (unknown magics, ``os.environ``, ``subprocess``, reassigning a
  variable of a read-only cell); listed in the grade report for review, no points lost.
"""
from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

POLICY_KEYS = {"tests", "forbid", "allow", "self_checks", "shortcuts", "why", "forbid_ran", "allow_ran", "ran_shortcuts"}
# Imports and names that give access to the interpreter, the kernel or the grader.
TAMPER_MODULES = ("IPython", "ipykernel", "builtins", "importlib", "ctypes", "gc", "inspect", "signal",
                  "threading", "_thread", "multiprocessing", "concurrent", "atexit", "faulthandler", "marshal",
                  "types", "nbgrader", "jupyter_client", "zmq", "traitlets", "course_lib.instructor", "code",
                  "course_lib.grading.recorded",
                  "codeop", "sys.modules", "sys._getframe", "sys.settrace", "sys.setprofile", "sys.meta_path",
                  "sys.path_hooks", "sys.addaudithook", "sys.setrecursionlimit", "os._exit", "os.kill", "os.fork",
                  "os.forkpty", "os.setuid", "os.chroot", "os.putenv")
TAMPER_CALLS = {"get_ipython", "exec", "eval", "compile", "__import__", "globals", "locals", "vars", "breakpoint"}
TAMPER_DUNDERS = {"__code__", "__globals__", "__builtins__", "__dict__", "__closure__", "__subclasses__", "__bases__",
                  "__mro__", "__class__", "__func__", "__self__", "__getattribute__", "__setattr__", "__delattr__",
                  "__defaults__", "__kwdefaults__", "__wrapped__", "__spec__", "__loader__", "__import__",
                  "__main__", "__reduce__", "__reduce_ex__"}
# Attributes that reach past a library's public face, by any route (``torch.sys.modules``, ``torch._C._nn``,
# ``torch.ops.aten``): no answer needs them.
TAMPER_ATTRS = {"sys", "_C", "ops"}
# Private names inside torch's submodules (``torch.optim.sgd._single_tensor_sgd``): forbidden in every exercise.
PRIVATE_TORCH = "torch.*._*"
# Methods whose definition makes a permissive stand-in (an object that passes every comparison).
TAMPER_METHODS = {"__torch_function__", "__torch_dispatch__", "__array_ufunc__", "__array_function__", "__eq__",
                  "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__bool__", "__instancecheck__",
                  "__subclasscheck__", "__getattr__", "__del__"}
FLAG_MODULES = ("subprocess", "socket", "os.environ", "os.system", "os.popen", "pickle", "shutil", "urllib",
                "requests", "http")
SAFE_MAGICS = {"matplotlib", "time", "timeit", "capture", "pinfo", "pinfo2", "who", "whos"}
_MAGIC = re.compile(r"^\s*(%%?|!)(\w*)")


# ``forbid_ran`` is not checked here: it is judged on what ran while the student's function ran under a graded
# check (:mod:`course_lib.grading.ran`, reported by ``call_without_reference``), by
# :func:`course_lib.instructor.verdict.compare`. Its globs match torch's operators (``aten.elu``,
# ``aten.native_batch_norm``) and the qualified names of library functions (``sklearn.metrics.*``,
# ``torch.nn.init.*``, ``torch.optim.*._single_tensor_*``), whatever route reached them.


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the file."""


@dataclass
class Exercise:
    """One exercise's declaration (its solution cell's ``grade_id`` and what its code may not use)."""

    grade_id: str
    tests: list = field(default_factory=list)
    forbid: list = field(default_factory=list)
    allow: list = field(default_factory=list)
    self_checks: list = field(default_factory=list)
    shortcuts: list = field(default_factory=list)
    why: str = ""
    forbid_ran: list = field(default_factory=list)
    allow_ran: list = field(default_factory=list)
    ran_shortcuts: list = field(default_factory=list)


@dataclass(frozen=True)
class Finding:
    """One thing the check found: where, of what kind, and why it matters."""

    kind: str  # forbidden | tamper | flag
    cell: str  # the grade_id of the cell, or "added cell N"
    line: int
    what: str
    exercise: str | None = None

    def message(self) -> str:
        where = f"{self.cell}, line {self.line}"
        if self.kind == "forbidden":
            return (f"exercise {self.exercise} uses {self.what} ({where}), which this exercise forbids: "
                    "write the computation yourself")
        if self.kind == "tamper":
            return f"{where} uses {self.what}, which can change how the notebook is graded; no answer needs it"
        return f"{where} uses {self.what} (for the instructor's review)"


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise PolicyError(f"{path}: cannot read it ({err})") from None
    if not isinstance(data, dict) or set(data) - POLICY_KEYS:
        raise PolicyError(f"{path}: expected a mapping with keys among {sorted(POLICY_KEYS)}, got "
                          f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    for key in POLICY_KEYS - {"why"}:
        if not isinstance(data.get(key, []), list) or not all(isinstance(x, str) for x in data.get(key, [])):
            raise PolicyError(f"{path}: {key} must be a list of strings")
    return data


def load(folder: Path) -> dict[str, Exercise]:
    """The exercises of one assignment (``policies/<assignment>/``), ``_default.yml`` merged into each."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    default = _read_yaml(folder / "_default.yml") if (folder / "_default.yml").exists() else {}
    out = {}
    for path in sorted(folder.glob("*.yml")):
        if path.name == "_default.yml":
            continue
        data = _read_yaml(path)
        merged = {k: list(default.get(k, [])) + list(data.get(k, []))
                  for k in ("forbid", "allow", "self_checks", "forbid_ran", "allow_ran")}
        out[path.stem] = Exercise(path.stem, list(data.get("tests", [])), shortcuts=list(data.get("shortcuts", [])),
                                  why=str(data.get("why", "")), ran_shortcuts=list(data.get("ran_shortcuts", [])),
                                  **merged)
    return out


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {}) or {}


def parse(source: str) -> ast.Module:
    """Parse a cell: IPython magics and shell lines become ``pass`` (they are checked by :func:`magics`)."""
    lines = ["pass" if _MAGIC.match(ln) else ln for ln in source.splitlines()]
    if lines and lines[0].strip() == "pass" and source.lstrip().startswith("%%"):
        lines = ["pass"]  # a cell magic: the body is not Python
    return ast.parse("\n".join(lines))


def magics(source: str) -> list[tuple[int, str]]:
    """The magics and shell escapes of a cell that are not on the harmless list, with line numbers."""
    found = []
    for i, ln in enumerate(source.splitlines(), 1):
        m = _MAGIC.match(ln)
        if m and (m.group(1) == "!" or m.group(2) not in SAFE_MAGICS):
            found.append((i, ln.strip()))
    return found


def _bound(tree: ast.AST):
    """(name, node, value) for each name a module's top level binds (``value`` for plain assignments)."""
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.name, node, None
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                yield (a.asname or a.name.split(".")[0]), node, None
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        yield n.id, node, getattr(node, "value", None)
        elif isinstance(node, (ast.For, ast.With, ast.If, ast.Try, ast.While)):
            for n in ast.walk(node):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    yield n.id, node, None


def _imports(tree: ast.AST, alias: dict) -> None:
    """Add what ``import``/``from ... import`` statements anywhere in ``tree`` bind to ``alias``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                alias[a.asname] = a.name if a.asname else None
                if not a.asname:
                    alias[a.name.split(".")[0]] = a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                alias[a.asname or a.name] = f"{node.module}.{a.name}"
    alias.pop(None, None)


def _constant_str(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _getter(node: ast.AST, alias: dict) -> tuple[list[str], ast.AST] | None:
    """``(attribute names, object)`` when ``node`` reads attributes by constant strings: ``getattr(x, "a")``,
    ``operator.attrgetter("a.b")(x)`` or ``functools.reduce(getattr, ["a", "b"], x)``; else None."""
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Name) and node.func.id == "getattr" and len(node.args) >= 2 and _constant_str(node.args[1]):
        return [node.args[1].value], node.args[0]
    if (isinstance(node.func, ast.Call) and len(node.func.args) == 1 and _constant_str(node.func.args[0])
            and len(node.args) == 1 and (_dotted(node.func.func, alias) or "").endswith("attrgetter")):
        return node.func.args[0].value.split("."), node.args[0]
    if ((_dotted(node.func, alias) or "").endswith("reduce") and len(node.args) == 3
            and isinstance(node.args[0], ast.Name) and node.args[0].id == "getattr"
            and isinstance(node.args[1], (ast.List, ast.Tuple)) and all(_constant_str(e) for e in node.args[1].elts)):
        return [e.value for e in node.args[1].elts], node.args[2]
    return None


def _chain(node: ast.AST, alias: dict) -> tuple[list[str], ast.AST, bool]:
    """Walk a chain of attributes (``x.a``), constant getters (``getattr(x, "b")``, ``attrgetter("c.d")(x)``)
    and subscripts down to where it starts: ``(attribute names, outermost first; that start; whether a
    subscript was passed)``."""
    names, subscript = [], False
    while True:
        got = _getter(node, alias)
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            subscript, node = True, node.value
        elif got:
            names += reversed(got[0])
            node = got[1]
        else:
            return names, node, subscript


def _dotted(node: ast.AST, alias: dict) -> str | None:
    """``init.fans`` -> ``course_lib.init.fans``; ``getattr(init, "fans")``, ``attrgetter("fans")(init)`` and
    ``reduce(getattr, ["fans"], init)`` too; None if not a name chain."""
    names, start, subscript = _chain(node, alias)
    if subscript or not isinstance(start, ast.Name):
        return None
    return ".".join([alias.get(start.id) or start.id, *reversed(names)])


def _root(node: ast.AST, alias: dict) -> ast.Name | None:
    """The name a chain of attributes, subscripts and constant getters starts from."""
    start = _chain(node, alias)[1]
    return start if isinstance(start, ast.Name) else None


def _spelled(node: ast.AST, alias: dict) -> list[str]:
    """The attribute names a chain spells out (``x.a``, ``getattr(x, "b")``, ``attrgetter("c.d")(x)``)."""
    return _chain(node, alias)[0]


def follow_assignments(trees, alias: dict) -> None:
    """Add to ``alias`` the names assigned a module or a module's attribute (``_p = plots``, ``_t = torch``,
    ``a, b = torch.ops, np``), in any scope of ``trees``, until nothing changes: values, not spellings."""
    for _ in range(5):
        changed = False
        for tree in trees:
            for node in ast.walk(tree):
                if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) or node.value is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                pairs = []
                for t in targets:
                    if isinstance(t, ast.Name):
                        pairs.append((t, node.value))
                    elif isinstance(t, (ast.Tuple, ast.List)) and isinstance(node.value, (ast.Tuple, ast.List)) \
                            and len(t.elts) == len(node.value.elts):
                        pairs += [(a, b) for a, b in zip(t.elts, node.value.elts) if isinstance(a, ast.Name)]
                for name, value in pairs:
                    root = _root(value, alias)
                    d = _dotted(value, alias) if root is not None and root.id in alias else None
                    if d and alias.get(name.id) != d:
                        alias[name.id], changed = d, True
        if not changed:
            return


def _matches(name: str, patterns) -> bool:
    for p in patterns:
        if p.startswith("."):
            if name.endswith(p):  # an attribute (x.cov) or a resolved name (torch.cov), never a bare variable
                return True
        elif fnmatch.fnmatchcase(name, p) or name.startswith(p + "."):
            return True
    return False


def _names_used(tree: ast.AST, alias: dict):
    """(dotted name, line) for every name, attribute chain and import in ``tree``."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Name)) or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                                                           and node.func.id == "getattr"):
            d = _dotted(node, alias)
            if d:
                yield d, node.lineno
        if isinstance(node, ast.Attribute):
            yield "." + node.attr, node.lineno  # the method form, matched by ".name" patterns
        elif (isinstance(node, ast.Call) and node.args and _constant_str(node.args[0])
              and (_dotted(node.func, alias) or "").endswith("methodcaller")):
            yield "." + node.args[0].value, node.lineno  # operator.methodcaller("cov")(x) is x.cov()
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Call) and node.args and node.func.args
                and _constant_str(node.func.args[0]) and (_dotted(node.func.func, alias) or "").endswith("methodcaller")):
            target = _dotted(node.args[0], alias)  # operator.methodcaller("freeze", m)(finetune) is finetune.freeze(m)
            if target:
                yield f"{target}.{node.func.args[0].value}", node.lineno
        if _getter(node, alias) and not (isinstance(node.func, ast.Name) and node.func.id == "getattr"):
            d = _dotted(node, alias)  # attrgetter(...)(x), reduce(getattr, [...], x): plain getattr is above
            if d:
                yield d, node.lineno
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                yield f"{node.module}.{a.name}", node.lineno


def _tampering(tree: ast.AST, alias: dict, protected: set, modules: set):
    """(kind, what, line) for every tamper or flag construct in ``tree``."""
    bases = {(alias.get(m) or m).split(".")[0] for m in modules}  # torch, numpy, course_lib, ...
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names] + [node.module or ""])
            for n in names:
                if _matches(n, TAMPER_MODULES):
                    yield "tamper", f"import {n}", line
                elif _matches(n, FLAG_MODULES):
                    yield "flag", f"import {n}", line
        elif isinstance(node, (ast.Attribute, ast.Name)) or _getter(node, alias):
            root = _root(node, alias)
            imported = root is not None and root.id in alias  # a local `types` or `code` is not the module
            d = (_dotted(node, alias) or "") if imported else ""
            bad = sorted(set(_spelled(node, alias)) & (TAMPER_DUNDERS | TAMPER_ATTRS))
            if bad:
                yield "tamper", f"the attribute {bad[0]}" + (f" (of {d})" if d else ""), line
            elif isinstance(node, ast.Name) and node.id in ("__builtins__", "__loader__", "__spec__"):
                yield "tamper", node.id, line
            elif d and _matches(d, TAMPER_MODULES) and not isinstance(getattr(node, "ctx", None), ast.Store):
                yield "tamper", d, line
            elif d and _matches(d, FLAG_MODULES):
                yield "flag", d, line
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            fn, args = node.func.id, node.args
            if fn in TAMPER_CALLS:
                yield "tamper", f"{fn}()", line
            elif fn in ("getattr", "setattr", "delattr", "hasattr") and args:
                target = _dotted(args[0], alias) or ""
                root = args[0]
                while isinstance(root, ast.Attribute):
                    root = root.value
                on_module = isinstance(root, ast.Name) and (root.id in modules or root.id in protected)
                literal = len(args) > 1 and isinstance(args[1], ast.Constant) and isinstance(args[1].value, str)
                if fn in ("setattr", "delattr") and on_module:
                    yield "tamper", f"{fn}() on {target}", line
                elif not literal and on_module:
                    yield "tamper", f"{fn}() with a computed name on {target}", line
                elif not literal:
                    yield "flag", f"{fn}() with a computed name", line
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in TAMPER_METHODS:
            yield "tamper", f"a {node.name} method", line
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for t in targets:
                if isinstance(t, (ast.Attribute, ast.Subscript)):
                    root = t
                    while isinstance(root, (ast.Attribute, ast.Subscript)):
                        root = root.value
                    module = isinstance(root, ast.Name) and (alias.get(root.id) or "").split(".")[0] in bases
                    if isinstance(root, ast.Name) and (root.id in modules or root.id in protected or module):
                        yield "tamper", f"assigning to {_dotted(t, alias) or ast.unparse(t)}", line


@dataclass
class Notebook:
    """The trusted facts of one source notebook: its cells by grade_id, and what its locked cells bind."""

    cells: dict  # grade_id -> source cell
    graded: list  # grade_ids of graded cells, in order
    alias: dict  # name -> dotted path, from the locked cells' imports
    modules: set  # names bound by the locked cells' imports
    test_names: set  # functions and classes defined at the top level of graded cells (the tests' helpers)
    locked_names: set  # names bound at the top level of the other locked code cells


def trusted(source_nb) -> Notebook:
    """Read the instructor's notebook (never the student's) for :func:`check`."""
    cells, graded, alias, modules, tests, locked = {}, [], {}, set(), set(), set()
    for cell in source_nb.cells:
        meta = _meta(cell)
        gid = meta.get("grade_id")
        if gid:
            cells[gid] = cell
        if meta.get("grade"):
            graded.append(gid)
        if cell.cell_type != "code" or meta.get("solution") or not meta.get("locked", meta.get("grade")):
            continue
        tree = parse(cell.source)
        _imports(tree, alias)
        for name, node, value in _bound(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules.add(name)
            if not meta.get("grade"):
                locked.add(name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or isinstance(value, ast.Lambda):
                tests.add(name)  # a test's helper (reference_epoch, torch_plateau): no answer may call it
    return Notebook(cells, graded, alias, modules, tests - locked - modules, locked)


def student_cells(nb, source: Notebook) -> list[tuple[str, str]]:
    """(label, source) of every code cell the student wrote: solution cells and added cells.

    Cells that claim a locked cell's ``grade_id`` are left out: nbgrader restores them from the source.
    """
    out = []
    for i, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        gid = _meta(cell).get("grade_id")
        src_cell = source.cells.get(gid)
        if src_cell is not None and _meta(src_cell).get("locked") and not _meta(src_cell).get("solution"):
            continue
        label = gid if src_cell is not None and _meta(src_cell).get("solution") else f"added cell {i}"
        out.append((label, cell.get("source", "")))
    return out


def check(nb, source: Notebook, exercises: dict[str, Exercise]) -> list[Finding]:
    """Every forbidden reference, tamper construct and flag in the student's cells of ``nb``."""
    findings, trees, alias = [], {}, dict(source.alias)
    units = student_cells(nb, source)
    for label, src in units:
        for line, text in magics(src):
            findings.append(Finding("flag", label, line, f"the magic or shell line {text!r}"))
        try:
            trees[label] = parse(src)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # it fails in the kernel too, and scores nothing there
        _imports(trees[label], alias)
    follow_assignments(trees.values(), alias)
    modules = source.modules | {n for t in trees.values() for n, node, _ in _bound(t) if isinstance(node, (ast.Import, ast.ImportFrom))}
    for label, tree in trees.items():
        for kind, what, line in _tampering(tree, alias, source.test_names, modules):
            findings.append(Finding(kind, label, line, what))
        for name, node, _ in _bound(tree):
            if name in source.modules and isinstance(node, (ast.Import, ast.ImportFrom)):
                sub = {}
                _imports(node, sub)
                if sub.get(name) == source.alias.get(name):
                    continue  # the same import again
            if name in source.modules or name in source.test_names:
                findings.append(Finding("tamper", label, node.lineno, f"rebinding {name!r}, which the tests use"))
            elif name in source.locked_names:
                findings.append(Finding("flag", label, node.lineno, f"rebinding {name!r} of a read-only cell"))
    # Which top-level statements bind each name: an exercise is its cell plus every function it reaches.
    binders: dict[str, list] = {}
    for label, tree in trees.items():
        for name, node, _ in _bound(tree):
            binders.setdefault(name, []).append((label, node))
    for gid, ex in exercises.items():
        if gid not in trees:
            continue
        reached, todo, seen = [(gid, trees[gid])], [trees[gid]], set()
        own = {n for n, _, _ in _bound(trees[gid])}
        for name in own:
            reached += [b for b in binders.get(name, []) if b[0] != gid]
            todo += [node for label, node in binders.get(name, []) if label != gid]
        while todo:
            tree = todo.pop()
            for n in ast.walk(tree):
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id not in seen and n.id in binders:
                    seen.add(n.id)
                    for label, node in binders[n.id]:
                        if label != gid:  # a helper in an added cell or in another exercise's cell
                            reached.append((label, node))
                            todo.append(node)
        own_names = {n.arg for _, t in reached for n in ast.walk(t) if isinstance(n, ast.arg)}
        own_names |= {n.id for _, t in reached for n in ast.walk(t) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        patterns = list(ex.forbid) + sorted(source.test_names - own_names)  # a test helper, unless it is the student's own name
        patterns += [p[len("torch.Tensor"):] for p in ex.forbid  # torch.Tensor.cov is also x.cov()
                     if p.startswith("torch.Tensor.") and not any(ch in p for ch in "*?[")]
        patterns.append(PRIVATE_TORCH)
        hits = set()
        for label, tree in reached:
            for name, line in _names_used(tree, alias):
                if _matches(name, patterns) and not _matches(name, ex.allow) and (label, name) not in hits:
                    hits.add((label, name))
                    findings.append(Finding("forbidden", label, line, name.lstrip("."), gid))
    return findings


def verdicts(findings: list[Finding], source: Notebook, exercises: dict[str, Exercise]) -> dict[str, str]:
    """grade_id of each graded cell that must score 0 -> the reason (tampering zeroes every graded cell)."""
    out = {}
    for f in findings:
        if f.kind == "tamper":
            for gid in source.graded:
                out.setdefault(gid, f.message())
        elif f.kind == "forbidden":
            for gid in exercises[f.exercise].tests:
                out.setdefault(gid, f.message())
    return out


def coverage_problems(source: Notebook, exercises: dict[str, Exercise], notebook: str) -> list[str]:
    """What is wrong with a notebook's declarations: every graded cell in exactly one exercise's tests."""
    problems, owner = [], {}
    for gid, ex in exercises.items():
        if gid not in source.cells:
            continue
        if not _meta(source.cells[gid]).get("solution"):
            problems.append(f"{notebook}: policy {gid}.yml names a cell that is not a solution cell")
        for t in ex.tests:
            if t not in source.graded:
                problems.append(f"{notebook}: policy {gid}.yml lists {t}, which is not a graded cell")
            elif t in owner:
                problems.append(f"{notebook}: {t} is in the tests of both {owner[t]} and {gid}")
            owner[t] = gid
    for t in source.graded:
        if t not in owner:
            problems.append(f"{notebook}: graded cell {t} belongs to no exercise's policy")
    return problems
