"""``kotaflow public``: the residents' status pages and the open-data API (read-only).

Reads InfluxDB only, with a read-only token (``public``, else ``grafana``), on a schedule
(:mod:`processors.public.refresh`): visitors are served the last :class:`Snapshot`, never a
query of their own, so a crowd does not reach InfluxDB. Pure parts: which devices are public
(:mod:`.publicity`), the snapshot and its statuses (:mod:`.snapshot`), HTML (:mod:`.pages`),
JSON/CSV/FIWARE (:mod:`.opendata`). I/O: :mod:`.queries`, :mod:`.refresh`, :mod:`.server`.
"""
