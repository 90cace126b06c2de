"""``python -m actors``: the command line (see ``actors._cli``)."""

from actors._cli import main

main()
