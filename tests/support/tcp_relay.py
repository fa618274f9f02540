"""A TCP relay on 127.0.0.1 that a test can cut, to put a real link between two real
services: :meth:`TcpRelay.down` closes the listener and every connection (the peer sees a
reset/close), :meth:`TcpRelay.hang` keeps connections open but lets no byte through (the
hang-style outage: packets vanish, nothing resets), :meth:`TcpRelay.up` restores it.
:meth:`TcpRelay.hold_closes` lets bytes flow but keeps a close from either side to itself
until released, as a dead path would (beside a proxy that drops the data).

Not a stand-in for any service: it only copies bytes between a client and the real broker.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpRelay:
    def __init__(self, target_port: int, listen_port: int) -> None:
        self.target_port = target_port
        self.port = listen_port
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._flowing = threading.Event()
        self._flowing.set()
        self._closes_pass = threading.Event()
        self._closes_pass.set()
        self.bytes_up = 0
        """Bytes copied client -> target (the uplink)."""

    def up(self) -> None:
        """Listen (again) and let bytes flow."""
        self._flowing.set()
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(16)
            self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and close the open ones."""
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            listener.close()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._closes_pass.set()

    def hang(self) -> None:
        """Keep every connection open but deliver nothing, in either direction."""
        self._flowing.clear()

    def hold_closes(self, held: bool) -> None:
        """While held, a side's close (or reset) does not reach the other side; released,
        the held ones are passed on."""
        if held:
            self._closes_pass.clear()
        else:
            self._closes_pass.set()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                target = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            target.settimeout(None)
            with self._lock:
                self._sockets |= {client, target}
            threading.Thread(target=self._pump, args=(client, target, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(target, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, uplink: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if not self._flowing.is_set():
                    continue  # vanishes: no reset, no close
                if uplink:
                    self.bytes_up += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._closes_pass.wait()
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
