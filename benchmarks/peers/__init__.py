"""``kotaflow bench peers``: kotaflow side by side with Telegraf and a Quix Streams app."""
