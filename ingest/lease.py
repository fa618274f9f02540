"""Which bridge reads the MQTT session: a lease held through a Kafka consumer group.

Every bridge for one broker uses the same MQTT client id, so there is one persistent
session and nothing can wait in a session that no running bridge reads. Only one process
may be connected with it (a second CONNECT would evict the first), so the replicas elect
one: each joins the consumer group ``kotaflow-bridge-lease.<client id>`` on the
one-partition topic ``kafka.topics.bridge_lease`` (it carries no records). The member that
is assigned partition 0 is the *active* bridge and connects to MQTT; the others are hot
*standbys*: Kafka clients running, no MQTT connection.

Takeover: a SIGKILLed or hung active stops heartbeating; after ``lease_session_timeout_ms``
the group coordinator evicts it and rebalances, a standby is assigned partition 0 and
connects with the same client id, resuming the session and everything unacked in it. A
graceful stop (SIGTERM) drains, disconnects from MQTT and only then leaves the group, so
the standby takes over at once.

Rebalances for other reasons (a standby joining or leaving) use the sticky assignor: the
active is assigned partition 0 again and keeps its MQTT connection. A revoke is therefore
only *pending* until the assignment says who has the lease; if no assignment comes within
the session timeout the lease counts as lost (the coordinator has evicted us by then).

Fencing is by the broker: should a stale active still be connected when the new one
connects (it lost Kafka but not MQTT), Mosquitto hands the session to the new connection
and disconnects the old one; the old one learns of its lost lease and stops. Unacked
messages are redelivered to the new holder: duplicates, never loss.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from aiokafka.errors import KafkaError

from kotaflow.kafka import client_options
from kotaflow.logs import ONE_LINE_EACH
from kotaflow.settings import Settings
from kotaflow.waiting import wait_or_stop

log = logging.getLogger("kotaflow.bridge.lease")

LEASE_PARTITION = 0
_POLL_MS = 500


def lease_group(client_id: str) -> str:
    """The consumer group that elects the active bridge of MQTT session ``client_id``."""
    return f"kotaflow-bridge-lease.{client_id}"


class BridgeLease:
    """Run :meth:`run` as a task; wait on :attr:`held`, stop the active term on :attr:`lost`.

    ``held`` is set while this process is the active bridge; ``lost`` is set when a held
    lease ends (cleared when it is next acquired). The bridge calls :meth:`begin_term`
    before it connects to MQTT and, after ``lost``, disconnects and calls :meth:`released`.
    A new term is granted only after the last one was released.
    """

    def __init__(self, settings: Settings) -> None:
        cfg = settings.bridge
        self.group_id = lease_group(cfg.client_id)
        self.topic = settings.kafka.topics.bridge_lease
        self._options = client_options(settings)
        self._session_timeout_ms = cfg.lease_session_timeout_ms
        self._heartbeat_ms = cfg.lease_heartbeat_ms
        self._retry_s = cfg.reconnect_min_s
        self._retry_max_s = cfg.reconnect_max_s
        self.held = asyncio.Event()
        self.lost = asyncio.Event()
        self._released = asyncio.Event()
        self._released.set()
        self._in_term = False
        self._pending: asyncio.Task[None] | None = None
        self._lease = TopicPartition(self.topic, LEASE_PARTITION)

    async def run(self, stop: asyncio.Event) -> None:
        """Stay in the lease group until ``stop``; rejoin with backoff after a Kafka error."""
        delay = self._retry_s
        while not stop.is_set():
            consumer = self._consumer()
            try:
                await consumer.start()
                await self._require_topic(consumer)
                consumer.subscribe([self.topic], listener=_Listener(self))
                log.info("lease: waiting in group", extra={"group": self.group_id})
                delay = self._retry_s
                while not stop.is_set():
                    await consumer.getmany(timeout_ms=_POLL_MS)  # keeps the membership live
            except (KafkaError, OSError, LookupError) as err:
                log.warning(
                    "lease: Kafka group failed",
                    extra={"error": repr(err), "retry_in_s": delay} | ONE_LINE_EACH,
                )
            finally:
                await self._stop(consumer)
            if self.held.is_set():
                self._lose("group membership ended")
            await wait_or_stop(stop, delay)
            delay = min(delay * 2, self._retry_max_s)

    def begin_term(self) -> bool:
        """The bridge starts its active term; False if the lease is no longer held."""
        self._in_term = self.held.is_set()
        return self._in_term

    def released(self) -> None:
        """The active term is over: no MQTT connection any more."""
        self._in_term = False
        self._released.set()

    # -- rebalance callbacks ------------------------------------------------------------

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        if self._lease in revoked and self.held.is_set() and self._pending is None:
            self._pending = asyncio.create_task(self._expire_pending())

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._lease in assigned:
            if not self.held.is_set():
                # A previous term must be fully over before this one starts.
                await self._released.wait()
                self._released.clear()
                self.lost.clear()
                self.held.set()
                log.info("lease acquired: this bridge is active", extra={"group": self.group_id})
        elif self.held.is_set():
            self._lose("assigned to another bridge")
        else:
            log.info("lease: standing by, another bridge is active", extra={"group": self.group_id})

    async def _expire_pending(self) -> None:
        await asyncio.sleep(self._session_timeout_ms / 1000)
        self._pending = None
        self._lose("revoked and not reassigned within the session timeout")

    def _lose(self, why: str) -> None:
        if not self.held.is_set():
            return
        self.held.clear()
        self.lost.set()
        if not self._in_term:  # lost before the bridge began: nothing to wait for
            self._released.set()
        log.warning("lease lost: standing by", extra={"group": self.group_id, "why": why})

    # -- plumbing -----------------------------------------------------------------------

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self._options,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            session_timeout_ms=self._session_timeout_ms,
            heartbeat_interval_ms=self._heartbeat_ms,
            partition_assignment_strategy=(StickyPartitionAssignor,),
            max_poll_interval_ms=max(60_000, 4 * self._session_timeout_ms),
        )

    async def _require_topic(self, consumer: AIOKafkaConsumer) -> None:
        topics = await consumer.topics()
        if self.topic not in topics:
            raise LookupError(
                f"lease topic {self.topic} does not exist: `kotaflow stack up` (or the "
                "compose kafka-topics job) creates it with one partition"
            )

    async def _stop(self, consumer: AIOKafkaConsumer) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            await asyncio.wait_for(consumer.stop(), 10)
        except (TimeoutError, KafkaError) as err:
            log.warning("lease: consumer did not stop cleanly", extra={"error": repr(err)})


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, lease: BridgeLease) -> None:
        self._lease = lease

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._lease.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._lease.on_assigned(set(assigned))
