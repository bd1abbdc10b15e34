"""The old name of ``python -m edge.bench.conveyor`` (issue #12's figures and older notes run it so)."""

from edge.bench.conveyor import main

if __name__ == "__main__":
    main()
