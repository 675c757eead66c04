"""driftline's benchmark (DESIGN.md §8, issue 8): ``make bench``, or ``python -m bench --help``."""
