"""Allow `python -m mlknobs`."""

from mlknobs.cli import main

if __name__ == "__main__":
    main()
