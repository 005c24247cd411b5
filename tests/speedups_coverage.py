"""Line coverage of the Cython modules (`make test` runs this after the suite).

The installed extensions are built for speed, without line tracing. This builds a second,
traced copy of `src/nexus/_speedups/*.pyx` (Cython `linetrace`, `CYTHON_TRACE_NOGIL`) into
`build/cython-trace/`, runs the speedups' unit tests against it under coverage.py with the
`Cython.Coverage` plugin, and prints the per-module figure. Exit status: the test run's.

    python tests/speedups_coverage.py [--html]
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE = ROOT / "build" / "cython-trace"
TESTS = [
    "tests/unit/test_framing.py",
    "tests/unit/test_framing_fuzz.py",
    "tests/unit/test_router.py",
    "tests/unit/test_router_local.py",
    "tests/unit/test_ratelimit.py",
    "tests/unit/test_histogram.py",
    "tests/unit/test_records.py",
]


def build() -> None:
    """Copy the package and compile traced extensions in place."""
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    if TRACE.exists():
        shutil.rmtree(TRACE)
    shutil.copytree(
        ROOT / "src" / "nexus",
        TRACE / "nexus",
        ignore=shutil.ignore_patterns("*.so", "__pycache__"),
    )
    os.chdir(TRACE)
    sources = sorted(Path("nexus/_speedups").glob("*.pyx"))
    extensions = [
        Extension(
            f"nexus._speedups.{p.stem}",
            [str(p)],
            define_macros=[("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")],
        )
        for p in sources
    ]
    modules = cythonize(
        extensions,
        quiet=True,
        include_path=["."],
        compiler_directives={
            "language_level": 3,
            "linetrace": True,
            "binding": True,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    )
    command = build_ext(Distribution({"ext_modules": modules}))
    command.inplace = True
    command.ensure_finalized()
    command.run()


def main() -> int:
    build()
    config = TRACE / ".coveragerc"
    config.write_text(
        "[run]\nplugins = Cython.Coverage\nsource = nexus._speedups\n"
        "[report]\nprecision = 1\nshow_missing = true\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": f"{TRACE}{os.pathsep}{ROOT / 'tests'}",
        "COVERAGE_FILE": str(TRACE / ".coverage"),
    }
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "coverage",
            "run",
            f"--rcfile={config}",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=--benchmark-disable",
            *TESTS,
        ],
        cwd=ROOT,
        env=env,
        check=False,
    )
    print("\nCython line coverage (nexus._speedups, traced build):", flush=True)
    report = ["report", "--include=*.pyx"]
    subprocess.run(
        [sys.executable, "-m", "coverage", *report, f"--rcfile={config}"],
        cwd=TRACE,
        env=env,
        check=False,
    )
    if "--html" in sys.argv:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "coverage",
                "html",
                f"--rcfile={config}",
                "-d",
                str(TRACE / "html"),
            ],
            cwd=TRACE,
            env=env,
            check=False,
        )
    return run.returncode


if __name__ == "__main__":
    sys.exit(main())
