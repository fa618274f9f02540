"""Where each node of the local Kafka lives: its id, ports and files (pure, no I/O).

One node (the default) is node 1 on the bootstrap port, its controller on port + 1 and its
SASL_SSL listener on port + 2, files in ``<state>/kafka/``. A cluster
(``stack.kafka_brokers: 3``) adds nodes 2 and 3 on the next ports, three apart (19092 gives
19092..19094, 19095..19097, 19098..19100), files in ``<state>/kafka-2/`` and
``<state>/kafka-3/``. Every node is a combined KRaft controller and broker; the three
controllers form a static quorum (``controller.quorum.voters``), so a cluster keeps a
controller majority with one node lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.local.service import Paths
from kotaflow.settings import Settings

NODE_PORT_STRIDE = 3
"""Ports per node: PLAINTEXT, CONTROLLER, SASL_SSL."""
CONTROLLER_PORT_OFFSET = 1
SASL_PORT_OFFSET = 2


@dataclass(frozen=True)
class KafkaNode:
    node_id: int
    host: str
    port: int
    """The node's PLAINTEXT listener (the stack's own calls, local tools and tests)."""
    paths: Paths

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def controller_port(self) -> int:
        return self.port + CONTROLLER_PORT_OFFSET

    @property
    def sasl_port(self) -> int:
        return self.port + SASL_PORT_OFFSET

    @property
    def server_properties(self) -> Path:
        return self.paths.state / "server.properties"

    @property
    def data_dir(self) -> Path:
        return self.paths.state / "data"


def kafka_nodes(settings: Settings, host: str, port: int) -> list[KafkaNode]:
    """The nodes of the local Kafka whose first node listens on ``host:port``."""
    return [
        KafkaNode(
            node_id=n,
            host=host,
            port=port + NODE_PORT_STRIDE * (n - 1),
            paths=Paths.for_service(settings, "kafka" if n == 1 else f"kafka-{n}"),
        )
        for n in range(1, settings.stack.kafka_brokers + 1)
    ]


def quorum_line(nodes: list[KafkaNode]) -> str:
    """One node: a dynamic quorum formatted ``--standalone``; more: static voters."""
    if len(nodes) == 1:
        return f"controller.quorum.bootstrap.servers={nodes[0].host}:{nodes[0].controller_port}"
    voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in nodes)
    return f"controller.quorum.voters={voters}"


def internal_replication(nodes: list[KafkaNode]) -> tuple[int, int]:
    """(replication factor, min ISR) of Kafka's internal topics: 1/1 alone, 3/2 in a cluster."""
    rf = min(3, len(nodes))
    return rf, max(1, rf - 1)
