"""`python -m dsaudit ...` is the `dsaudit` command (for environments where the script is not on PATH)."""

from dsaudit.cli import main

if __name__ == "__main__":
    main()
