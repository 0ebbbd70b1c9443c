"""`python -m services.coordinator.cli`: the `seal-lab` command (what the launcher and the tests run)."""

from .main import main

if __name__ == "__main__":
    main()
