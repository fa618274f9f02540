"""Dead letters for the operator: read and filter ``kotaflow.deadletter``, count them, and
replay them through the stage that refused them (``kotaflow deadletter ...``).

* :mod:`.reader`: the records of the dead-letter topic, each with an id
  (``<partition>:<offset>``), and the filters (reason, device, stage, time, id);
* :mod:`.replay`: what a replay would do with today's registry and catalogue, and doing it
  (the original bytes and receive time back on the refusing stage's input topic);
* :mod:`.cli`: the typer commands.
"""
