"""Dev helpers; tests import them from the repository root, e.g. ``from scripts import modelkit``.

The scripts themselves run as files (``python scripts/modelkit.py OUT``).
"""
