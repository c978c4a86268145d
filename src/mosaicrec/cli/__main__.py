"""``python -m mosaicrec.cli``: the command line."""

from mosaicrec.cli import main

main()
