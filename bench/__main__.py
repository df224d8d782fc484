"""`make bench`: runs every bench/bench_*.py module's ``main()`` in turn and prints their reports.

Select some with ``python -m bench NAME...`` (e.g. ``python -m bench parse``).
"""

import importlib
import pkgutil
import sys
from pathlib import Path


def main() -> int:
    wanted = set(sys.argv[1:])
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                   if m.name.startswith("bench_"))
    failed = 0
    for name in names:
        if wanted and name.removeprefix("bench_") not in wanted:
            continue
        print(f"== {name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        failed += 0 if module.main() == 0 else 1
    return 1 if failed else 0


sys.exit(main())
