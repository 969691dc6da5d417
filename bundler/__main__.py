"""``python -m bundler``: the same as the ``airlock`` command."""

from bundler.cli import main

main()
