"""`python -m fusec` runs the command line."""
from fusec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
