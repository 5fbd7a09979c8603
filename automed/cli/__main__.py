"""``python -m automed.cli``: the same as the ``automed`` console script."""

from automed.cli import main

if __name__ == "__main__":
    main()
