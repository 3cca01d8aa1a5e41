"""Run one benchmark: ``python -m bench NAME [options]`` calls ``main()`` of ``bench/bench_NAME.py``.

Without a name, lists the benchmarks. Options after the name go to the benchmark
(``python -m bench build --records 100000``).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmarks (``bench/bench_*.py``)."""
    return sorted(path.stem.removeprefix(PREFIX) for path in Path(__file__).parent.glob(f"{PREFIX}*.py"))


def main(argv: list[str]) -> int:
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m bench NAME [options]\n\nbenchmarks: " + ", ".join(names))
        return 0
    name = argv[0].removeprefix(PREFIX).removesuffix(".py")
    if name not in names:
        print(f"no benchmark {argv[0]!r}; choose one of: {', '.join(names)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{PREFIX}{name}")
    if not hasattr(module, "main"):
        print(f"bench/{PREFIX}{name}.py has no main()", file=sys.stderr)
        return 2
    sys.argv = [f"python -m bench {name}", *argv[1:]]
    module.main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
