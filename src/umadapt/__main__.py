"""``python -m umadapt`` is the ``umadapt`` command."""

from umadapt.cli import main

if __name__ == "__main__":
    main()
