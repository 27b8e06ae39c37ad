"""``python -m service`` is the ``evidence`` command."""

from service.cli import main

main()
