"""``python -m agent``: the same as the ``airlock-agent`` command."""

from agent.cli import main

main()
