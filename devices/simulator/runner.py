"""Run a simulation: the Python API behind ``kotaflow simulate``.

``await run_simulation(settings, options)`` plans the devices, connects the MQTT 5
publishers (one per broker account: each device as itself, see ``pool.py``), then walks
the :class:`~devices.simulator.stream.MessageStream`, publishing each message when it is
due (its values, at ``rate`` per second, follow the ones before it),
keeping at most ``capacity`` QoS 1 messages unacknowledged, until ``duration_s``,
``count`` or ``stop``. It waits for the outstanding PUBACKs and returns the
:class:`~devices.simulator.summary.Summary`. Other tests and benchmarks call it in-process.

Pacing is by schedule, not by token refill: when the loop falls behind (a busy machine,
in-flight window full) it catches up by publishing everything already due, so the rate
over the run stays the requested one as long as the machine can sustain it at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from devices.fleet import Fleet, load_fleet
from devices.simulator.encoders import iso_ms
from devices.simulator.manifest import ManifestWriter
from devices.simulator.options import SimulationOptions
from devices.simulator.plan import DevicePlan, plan_devices
from devices.simulator.pool import PublisherPool
from devices.simulator.stream import MessageStream, SimMessage
from devices.simulator.summary import Summary
from kotaflow.mqtt import edge_local_access
from kotaflow.settings import Settings

log = logging.getLogger(__name__)
TRACE_PROPERTY = "kf-sim"
MAX_SLEEP_S = 0.25
"""Longest nap between checks of ``stop`` and progress reports."""

ProgressCallback = Callable[[Summary], None]


async def run_simulation(
    settings: Settings,
    options: SimulationOptions,
    *,
    fleet: Fleet | None = None,
    stop: asyncio.Event | None = None,
    on_progress: ProgressCallback | None = None,
    progress_every_s: float = 0.5,
) -> Summary:
    """Publish as the registry's devices until the options' limit (or ``stop``).

    Raises ``PlanError`` (nothing selected), ``PublishError`` (broker unreachable or the
    connection lost) or ``DeviceFileError`` (invalid catalogue/registry).
    """
    fleet = fleet or load_fleet(settings)
    plan = plan_devices(fleet, options)
    run_id = uuid.uuid4().hex[:8]
    manifest = ManifestWriter(options.manifest, run_id) if options.manifest else None
    edge = edge_local_access(settings, *options.behind_edge) if options.behind_edge else None
    _warn_about_edge_kecamatan(plan)
    publisher = PublisherPool(
        settings,
        plan.devices,
        options.client_id or f"kotaflow-sim-{run_id}",
        options.max_inflight,
        edge,
    )
    try:
        await publisher.connect()
        return await _publish(
            fleet, plan, options, run_id, publisher, manifest, stop, on_progress, progress_every_s
        )
    finally:
        await publisher.close()
        if manifest is not None:
            manifest.close()


def _warn_about_edge_kecamatan(plan: DevicePlan) -> None:
    kecamatan = sorted({d.device.kecamatan for d in plan.devices if d.behind_edge})
    if len(kecamatan) > 1:
        log.warning(
            "devices of %d kecamatan behind one edge (%s): its central account may publish "
            "for its own kecamatan only, the central broker refuses the rest (the edge keeps "
            "them aside); narrow --edge-devices to one kecamatan",
            len(kecamatan),
            ", ".join(kecamatan),
        )


async def _publish(
    fleet: Fleet,
    plan: DevicePlan,
    options: SimulationOptions,
    run_id: str,
    publisher: PublisherPool,
    manifest: ManifestWriter | None,
    stop: asyncio.Event | None,
    on_progress: ProgressCallback | None,
    progress_every_s: float,
) -> Summary:
    """Pace the stream out through a connected publisher; the summary of what was sent."""
    loop = asyncio.get_running_loop()
    t0_ms = time.time_ns() // 1_000_000
    started = loop.time()
    summary = _new_summary(run_id, options, plan, t0_ms)
    stream = MessageStream.for_run(fleet, plan, options, t0_ms)
    pacer = _Pacer(stream, publisher, summary, manifest, options, run_id, started)
    await pacer.run(stop or asyncio.Event(), on_progress, progress_every_s)
    with contextlib.suppress(TimeoutError):  # what stays unacked is counted, not waited for
        async with asyncio.timeout(options.ack_timeout_s):
            await publisher.drain()
    _settle(summary, publisher, started, loop.time())
    return summary


def _new_summary(run_id: str, options: SimulationOptions, plan: DevicePlan, t0_ms: int) -> Summary:
    return Summary(
        run_id=run_id,
        seed=options.seed,
        format=options.format.value,
        faults=str(options.faults),
        started_at=iso_ms(t0_ms),
        time_scale=options.time_scale,
        rate_requested=plan.target_rate(options),
        devices=len(plan.devices),
        silent_devices=list(plan.silent),
        excluded_devices=list(plan.excluded),
        behind_edge=sorted(d.id for d in plan.devices if d.behind_edge),
        manifest=str(options.manifest) if options.manifest else None,
    )


def _settle(summary: Summary, publisher: PublisherPool, started: float, now: float) -> None:
    tally = publisher.tally
    summary.acked = tally.acked
    summary.refused = tally.refused
    summary.unacked = tally.inflight
    end = tally.last_ack_at if tally.inflight == 0 and tally.last_ack_at else now
    summary.duration_s = max(end - started, 1e-9)


class _Pacer:
    """Publishes each message when it is due; see the module docstring."""

    def __init__(
        self,
        stream: MessageStream,
        publisher: PublisherPool,
        summary: Summary,
        manifest: ManifestWriter | None,
        options: SimulationOptions,
        run_id: str,
        started: float,
    ) -> None:
        self._stream = stream
        self._publisher = publisher
        self._summary = summary
        self._manifest = manifest
        self._options = options
        self._run_id = run_id
        self._started = started

    async def run(
        self, stop: asyncio.Event, on_progress: ProgressCallback | None, every_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        stream, publisher, options = self._stream, self._publisher, self._options
        next_report = self._started + every_s
        while not stop.is_set():
            budget = None if options.count is None else options.count - stream.values_sent
            if budget is not None and budget <= 0:
                break
            due = stream.next_due_s()
            if options.duration_s is not None and due >= options.duration_s:
                break
            now = loop.time()
            if on_progress is not None and now >= next_report:
                next_report = now + every_s
                _settle(self._summary, publisher, self._started, now)
                on_progress(self._summary)
            wait = self._started + due - now
            if wait > 0:
                await asyncio.sleep(min(wait, MAX_SLEEP_S))
            elif publisher.inflight >= publisher.capacity:
                await publisher.wait_for_capacity()
            else:
                self._send(stream.next_message(budget))

    def _send(self, message: SimMessage) -> None:
        trace = ((TRACE_PROPERTY, f"{self._run_id}/{message.seq}"),) if self._options.trace else ()
        self._publisher.publish(message.device_id, message.topic, message.payload, trace)
        self._summary.count(message)
        if self._manifest is not None:
            self._manifest.write(message)
