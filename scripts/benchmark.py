"""Kept for old command lines: the benchmark is ``python -m vpstudy bench`` (vpstudy/bench.py)."""
import sys

from vpstudy.__main__ import main

sys.exit(main(["bench", *sys.argv[1:]]))
