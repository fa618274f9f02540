"""The bridge's paho fast path: buffered reads and batched PUBACKs (no broker needed)."""

from __future__ import annotations

import socket

import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ingest.fastpaho import BufferedSocket, FastClient


def test_buffered_socket_serves_small_reads_from_one_recv_and_reports_pending() -> None:
    left, right = socket.socketpair()
    try:
        right.setblocking(False)
        left.sendall(b"\x30\x05hello\x40")
        buffered = BufferedSocket(right)
        assert buffered.recv(1) == b"\x30"
        assert buffered.pending() == 7
        assert buffered.recv(1) == b"\x05"
        assert buffered.recv(100) == b"hello\x40"  # never more than is buffered
        assert buffered.pending() == 0
        with pytest.raises(BlockingIOError):
            buffered.recv(1)
        assert buffered.fileno() == right.fileno()
    finally:
        left.close()
        right.close()


def test_ack_many_queues_one_write_of_ordered_pubacks() -> None:
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="t", manual_ack=True)
    client.ack_many([1, 258, 65535])
    (queued,) = list(client._out_packet)
    assert bytes(queued["packet"]) == b"\x40\x02\x00\x01\x40\x02\x01\x02\x40\x02\xff\xff"
    client.ack_many([])
    assert len(client._out_packet) == 1
