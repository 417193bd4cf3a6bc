"""``python -m onnxprune`` runs the CLI."""

from .cli import main

main()
