"""``python -m normlab.scorecard``: see the package's docstring."""

from .cli import main

main()
