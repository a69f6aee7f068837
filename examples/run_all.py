"""Run every example on the best available backend (the main job of `make run`)."""
import importlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import best_backend  # noqa: E402


def main():
    backend = best_backend()
    print(f"fusec examples on backend {backend!r}")
    for path in sorted(HERE.glob("*.py")):
        if path.stem.startswith("_") or path.stem == "run_all":
            continue
        importlib.import_module(path.stem).main(backend=backend)


if __name__ == "__main__":
    main()
