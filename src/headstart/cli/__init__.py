"""The ``headstart`` command line: a thin typer layer; heavy imports live inside command bodies."""
