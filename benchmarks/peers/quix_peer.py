"""The Quix Streams peer of ``kotaflow bench peers`` (comparison 2): INTERFACE STUB.

The real app is built on branch ``p2-quix`` in ``benchmarks/peers/quix_*.py``; until it
lands, :func:`run_quix_backlog` raises :class:`PeerNotRunError` and the table's Quix column
says "not run". This module is the agreed interface; keep its signature.

Contract for ``run_quix_backlog(job)``:

- Input: :class:`benchmarks.peers.common.BacklogJob` - the backlog is already in
  ``job.topic`` (record format in its docstring: key = device id, value = native JSON
  ``{"ts": ms, "values": {metric: number}}``), ``job.messages`` records,
  ``job.readings`` metric values, ``job.partitions`` partitions.
- The app, at-least-once: consume with consumer group ``job.group`` from the earliest
  offset, write every reading as a raw point to ``job.influx.raw_bucket`` and event-time
  1-minute tumbling-window rollups per (device, metric) to ``job.influx.rollup_bucket``
  (schema in :class:`benchmarks.peers.common.InfluxTarget`), and commit offsets only after
  the writes they cover succeeded (Quix's sink contract does this).
- Run it as its own process(es) from a benchmark-only environment (Quix Streams 3.28.1,
  never a runtime dependency of kotaflow), with its state, config and logs under
  ``job.work_dir``.
- Done when ``job.group`` has committed all ``job.messages`` records (then stop the app,
  gracefully). Measure like the other columns: ``steady_s``/``steady_cpu_s`` from the time
  the group had committed 10 % of the records until it committed all of them (read the
  committed offsets every ~50-100 ms), CPU summed over the app's processes
  (``benchmarks.procstats.cpu_seconds(pid)``); ``items`` = readings in that span
  (``0.9 * job.readings``); ``startup_s`` = process start -> first point in InfluxDB;
  ``processes`` = each process's ``ProcessCost`` (peak RSS, CPU over its life).
- Return a :class:`benchmarks.peers.common.PeerRun` with ``peer="quix"``. Do not count
  windows: the harness counts complete event-time windows (and raw points) in the buckets
  itself, with the same query for every peer. Put notes on the configuration used (state
  store, commit interval, batch sizes) in ``PeerRun.notes``: they are printed beside the
  figures.
- If Quix Streams cannot run here, raise ``PeerNotRunError("<why>")``; never fake figures.
- Leave nothing behind except what ``job.work_dir`` holds (the harness deletes the topic,
  group and buckets). The app must stop within 60 s of being asked.
"""

from __future__ import annotations

from benchmarks.peers.common import BacklogJob, PeerNotRunError, PeerRun


async def run_quix_backlog(job: BacklogJob) -> PeerRun:
    """Drain ``job``'s backlog with the Quix Streams app; see the module docstring."""
    raise PeerNotRunError("Quix Streams app not built yet (branch p2-quix)")
