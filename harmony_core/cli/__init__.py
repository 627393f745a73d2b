"""Command-line entry points (``python -m harmony_core <command>``)."""
