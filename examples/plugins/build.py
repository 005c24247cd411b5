"""Build the example Nexus plugins (WebAssembly, plugin ABI v1) from source.

    python examples/plugins/build.py [--out DIR] [--list] [names...]

Every folder under examples/plugins/ that holds a manifest.json is a plugin; its name is the
manifest's "name". A name on the command line selects that plugin, a folder selects all the
plugins under it ("misbehaving" = every misbehaving-* module); none = all. Each plugin is
built into <out>/<name>/ (default: build/plugins/ under the repository root) as <name>.wasm
plus its manifest.json with "module" and "digest" ("sha256:<hex>") filled in: a folder the
server can install as it is.

Sources: C files (*.c, freestanding, no libc; include/nexus_guest.h has the ABI plumbing)
are compiled with the clang of the `ziglang` package; a WAT file (*.wat) is assembled with
`wasmtime.wat2wasm`. Use the project's environment, which has both:

    .venv/bin/python examples/plugins/build.py

The build is deterministic (no debug info, no paths or times in the output): the same sources
give the same bytes, hence the same digests. Each module is checked before it is written: it
must export memory, nexus_input, nexus_alloc and the manifest's hooks, and import nothing but
the nexus host functions.

Tests import this file by path and call build(out_dir, names).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DEFAULT_OUT = ROOT / "build" / "plugins"
INCLUDE = HERE / "include"

# Freestanding wasm32: a reactor (no _start, no _initialize: nothing to call before the hooks),
# no libc, 64 KiB of stack; -g0 keeps paths out of the module.
CFLAGS = [
    "-target",
    "wasm32-wasi",
    "-O2",
    "-mexec-model=reactor",
    "-nostdlib",
    "-ffreestanding",
    "-g0",
    "-std=c11",
    "-Wall",
    "-Wextra",
    "-Wl,--no-entry",
    "-Wl,-z,stack-size=65536",
]

NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}\Z")
HOST_FUNCTIONS = {
    "log": "log",
    "post": "post",
    "history": "history",
    "kv_get": "kv",
    "kv_set": "kv",
    "kv_delete": "kv",
}
REQUIRED_EXPORTS = ("memory", "nexus_input", "nexus_alloc")
HOOKS = ("on_load", "on_message", "on_event", "on_command", "on_tick")


class BuildError(RuntimeError):
    """A plugin could not be built (the message says why)."""


class Plugin(NamedTuple):  # not a dataclass: this file is imported by path, outside sys.modules
    name: str
    folder: Path
    manifest: dict[str, Any]
    language: str  # "c" or "wat"
    sources: tuple[Path, ...]


def discover(exclude: Path | None = None) -> dict[str, Plugin]:
    """The plugins under examples/plugins/, by name (folders under `exclude` are skipped)."""
    plugins: dict[str, Plugin] = {}
    for path in sorted(HERE.rglob("manifest.json")):
        folder = path.parent
        if exclude is not None and folder.resolve().is_relative_to(exclude.resolve()):
            continue
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BuildError(f"{_rel(path)}: not readable JSON ({e})") from e
        name = manifest.get("name") if isinstance(manifest, dict) else None
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise BuildError(f"{_rel(path)}: bad or missing name {name!r}")
        if name in plugins:
            raise BuildError(f"{_rel(path)}: plugin name {name!r} used twice")
        c_files = tuple(sorted(folder.glob("*.c")))
        wat_files = tuple(sorted(folder.glob("*.wat")))
        if c_files and wat_files:
            raise BuildError(f"{_rel(folder)}: both C and WAT sources; keep one kind")
        if c_files:
            plugins[name] = Plugin(name, folder, manifest, "c", c_files)
        elif len(wat_files) == 1:
            plugins[name] = Plugin(name, folder, manifest, "wat", wat_files)
        else:
            raise BuildError(f"{_rel(folder)}: expected *.c files or exactly one *.wat file")
    return plugins


def select(plugins: dict[str, Plugin], names: list[str] | None) -> list[Plugin]:
    """The plugins the names ask for: a plugin name, or a folder (relative to this file's)."""
    if not names:
        return list(plugins.values())
    chosen: dict[str, Plugin] = {}
    for wanted in names:
        if wanted in plugins:
            chosen[wanted] = plugins[wanted]
            continue
        folder = (HERE / wanted).resolve()
        under = [p for p in plugins.values() if p.folder.resolve().is_relative_to(folder)]
        if not under or not folder.is_relative_to(HERE):
            known = ", ".join(sorted(plugins))
            raise BuildError(f"no plugin or plugin folder named {wanted!r} (plugins: {known})")
        chosen.update((p.name, p) for p in under)
    return list(chosen.values())


def build(
    out_dir: Path,
    names: list[str] | None = None,
    *,
    log: Callable[[str], None] | None = print,
) -> dict[str, Path]:
    """Build the named plugins (all if None) into out_dir/<name>/; return name -> that folder.

    Raises BuildError when a tool is missing, a compile fails or a module breaks the ABI."""
    out_dir = Path(out_dir)
    chosen = select(discover(exclude=out_dir), names)
    _check_tools({p.language for p in chosen})
    built: dict[str, Path] = {}
    for plugin in chosen:
        wasm = _compile(plugin)
        notes = _check_module(plugin, wasm)
        folder = out_dir / plugin.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        module_name = f"{plugin.name}.wasm"
        (folder / module_name).write_bytes(wasm)
        digest = "sha256:" + hashlib.sha256(wasm).hexdigest()
        (folder / "manifest.json").write_text(
            _manifest_text(plugin.manifest, module_name, digest), encoding="utf-8"
        )
        built[plugin.name] = folder
        if log is not None:
            sources = ", ".join(_rel(s) for s in plugin.sources)
            log(f"built {plugin.name:<30} {len(wasm):>6} bytes  {digest[:19]}…  from {sources}")
            for note in notes:
                log(f"  note: {note}")
    return built


# ---- compiling ---------------------------------------------------------------------------


def _check_tools(languages: set[str]) -> None:
    if "c" in languages and importlib.util.find_spec("ziglang") is None:
        raise BuildError(
            "the C plugins need the `ziglang` package (its clang), which this Python "
            f"({sys.executable}) does not have: run with the project's .venv/bin/python, "
            "or pip install ziglang"
        )
    if "wat" in languages and importlib.util.find_spec("wasmtime") is None:
        raise BuildError(
            "the WAT plugins need the `wasmtime` package (wasmtime.wat2wasm), which this "
            f"Python ({sys.executable}) does not have: run with the project's "
            ".venv/bin/python, or pip install wasmtime"
        )


def _compile(plugin: Plugin) -> bytes:
    if plugin.language == "wat":
        import wasmtime

        (source,) = plugin.sources
        try:
            return bytes(wasmtime.wat2wasm(source.read_text(encoding="utf-8")))
        except Exception as e:  # wasmtime raises its own error types
            raise BuildError(f"{_rel(source)}: {e}") from e
    # The module's name section records the output file's name: compile to <name>.wasm in a
    # fresh directory so that it is the same wherever the build goes.
    with tempfile.TemporaryDirectory(prefix="nexus-plugin-") as tmp:
        target = Path(tmp) / f"{plugin.name}.wasm"
        cmd = [
            sys.executable,
            "-m",
            "ziglang",
            "cc",
            *CFLAGS,
            "-I",
            str(INCLUDE),
            "-o",
            str(target),
            *(str(s) for s in plugin.sources),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(f"{plugin.name}: could not run the compiler ({e})") from e
        if done.returncode != 0 or not target.exists():
            raise BuildError(
                f"{plugin.name}: compile failed (exit {done.returncode}):\n"
                + (done.stderr or done.stdout).strip()
            )
        if done.stderr.strip():  # warnings: show them, they are not fatal
            print(done.stderr.strip(), file=sys.stderr)
        return target.read_bytes()


def _manifest_text(manifest: dict[str, Any], module: str, digest: str) -> str:
    out: dict[str, Any] = {}
    for key, value in manifest.items():
        if key == "digest":
            continue
        out[key] = module if key == "module" else value
        if key == "module":
            out["digest"] = digest
    if "module" not in out:
        out = {"name": manifest["name"], "module": module, "digest": digest, **out}
    return json.dumps(out, indent=2, ensure_ascii=False) + "\n"


# ---- checking the module against the ABI --------------------------------------------------


def _check_module(plugin: Plugin, wasm: bytes) -> list[str]:
    """Errors raise; returns notes (an import whose capability the manifest lacks: on purpose
    in misbehaving-forbidden-import, a mistake anywhere else)."""
    try:
        imports, exports = _imports_exports(wasm)
    except (IndexError, ValueError) as e:
        raise BuildError(f"{plugin.name}: not a readable wasm module ({e})") from e
    problems = []
    for module, field in imports:
        if module != "nexus" or field not in HOST_FUNCTIONS:
            problems.append(f"imports {module}.{field}, which is not a nexus host function")
    hooks = plugin.manifest.get("hooks", [])
    for export in (*REQUIRED_EXPORTS, *hooks):
        if export not in exports:
            problems.append(f"does not export {export}")
    for hook in hooks:
        if hook not in HOOKS:
            problems.append(f"manifest names an unknown hook {hook!r}")
    if problems:
        raise BuildError(f"{plugin.name}: " + "; ".join(problems))
    capabilities = set(plugin.manifest.get("capabilities", []))
    return [
        f"imports nexus.{field} without the {HOST_FUNCTIONS[field]!r} capability"
        for _, field in imports
        if HOST_FUNCTIONS[field] not in capabilities
    ]


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _name(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = _leb(data, pos)
    return data[pos : pos + n].decode("utf-8"), pos + n


def _limits(data: bytes, pos: int) -> int:
    flags = data[pos]
    _, pos = _leb(data, pos + 1)
    if flags & 1:
        _, pos = _leb(data, pos)
    return pos


def _imports_exports(wasm: bytes) -> tuple[list[tuple[str, str]], set[str]]:
    if wasm[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("bad magic or version")
    imports: list[tuple[str, str]] = []
    exports: set[str] = set()
    pos = 8
    while pos < len(wasm):
        section = wasm[pos]
        size, pos = _leb(wasm, pos + 1)
        end = pos + size
        if section == 2:  # imports
            count, p = _leb(wasm, pos)
            for _ in range(count):
                module, p = _name(wasm, p)
                field, p = _name(wasm, p)
                kind = wasm[p]
                p += 1
                if kind == 0:  # function: type index
                    _, p = _leb(wasm, p)
                elif kind == 1:  # table: reftype, limits
                    p = _limits(wasm, p + 1)
                elif kind == 2:  # memory: limits
                    p = _limits(wasm, p)
                elif kind == 3:  # global: valtype, mutability
                    p += 2
                elif kind == 4:  # tag: attribute, type index
                    _, p = _leb(wasm, p + 1)
                else:
                    raise ValueError(f"unknown import kind {kind}")
                imports.append((module, field))
        elif section == 7:  # exports
            count, p = _leb(wasm, pos)
            for _ in range(count):
                name, p = _name(wasm, p)
                _, p = _leb(wasm, p + 1)  # kind byte, then index
                exports.add(name)
        pos = end
    return imports, exports


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="output folder (default: build/plugins)"
    )
    parser.add_argument("--list", action="store_true", help="list the plugins and exit")
    parser.add_argument("names", nargs="*", help="plugins or plugin folders (default: all)")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for plugin in select(discover(exclude=args.out), args.names):
                print(f"{plugin.name:<30} {plugin.language:<4} {_rel(plugin.folder)}")
            return 0
        built = build(args.out, args.names or None)
    except BuildError as e:
        print(f"build.py: error: {e}", file=sys.stderr)
        return 1
    print(f"{len(built)} plugin(s) in {_rel(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
