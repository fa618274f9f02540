"""``python -m kotaflow`` runs the ``kotaflow`` command (used to spawn pipeline parts)."""

from kotaflow.cli import main

main()
