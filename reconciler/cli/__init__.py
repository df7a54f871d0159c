"""Command-line interface: parse arguments, call the engine or the core, print, exit."""

__all__: list[str] = []
