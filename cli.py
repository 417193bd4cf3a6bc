"""Run onnxprune from a checkout: ``python cli.py in.onnx -o out.onnx --ratio 0.3``."""

from onnxprune.cli import main

if __name__ == "__main__":
    main()
