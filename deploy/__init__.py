"""How kotaflow's services run: the local stack for development and tests, production files."""
