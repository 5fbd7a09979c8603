"""``python -m automed``: the ``automed`` command (as ``python -m automed.cli``)."""

from automed.cli import main

if __name__ == "__main__":
    main()
