"""``python -m zkv`` is the ``zkv`` command."""

from zkv.cli import main

if __name__ == "__main__":
    main()
