"""``python -m tilewise.frontends.cli``: the ``tilewise`` command."""
from tilewise.frontends.cli import main

main()
