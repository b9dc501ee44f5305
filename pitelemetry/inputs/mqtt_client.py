"""paho-mqtt's client, reading in bulk.

paho 2.x reads each packet with three ``recv`` calls (the command byte, the length, the
body) and waits in ``select`` once per packet, so a burst of small messages costs four
system calls per message before any of our code runs. :class:`BufferedClient` reads up
to 64 KiB per ``recv`` and serves paho's small reads from that buffer, and after a read
it goes on handing paho packets while the buffer holds any: one ``select`` and one
``recv`` per burst. It then calls ``after_read``, so the input can hand the whole burst
to the pipeline at once instead of message by message.

Acknowledgements go the same way: :meth:`BufferedClient.ack_all` queues a burst's
PUBACKs as one write (paho's ``ack`` costs a wake-up of its thread and a ``send`` per
message).

Only ``_sock_recv`` (paho's one place that reads the socket) and ``loop_read`` are
overridden, and ``ack_all`` queues through paho's own ``_packet_queue``; paho's parsing,
keepalive, TLS and reconnects are its own. The dependency is pinned below paho 3, and
every MQTT test runs through this class.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.client import PUBACK, PUBLISH
from paho.mqtt.enums import MQTTErrorCode

READ_CHUNK = 65536
_PUBACK = struct.Struct("!BBH")  # type, remaining length 2, message id


log = logging.getLogger(__name__)


class BufferedClient(paho.Client):
    after_read: Callable[[], None] | None = None
    # A PUBLISH whose payload is over this is cut to just over it while it is read, so
    # a 100 MB message never sits in memory; the input then refuses it as too large.
    max_payload_bytes = 64 * 1024
    _discard = 0  # bytes of a cut message still to skip on the socket
    connect_error: BaseException | None = None  # why the last connection attempt failed
    thread_error = ""  # what ended the network thread, if something did

    def reconnect(self) -> MQTTErrorCode:
        try:
            rc = super().reconnect()
        except OSError as exc:  # paho then calls on_connect_fail, which has no reason
            self.connect_error = exc
            raise
        self.connect_error = None
        return rc

    def _thread_main(self) -> None:
        """The network thread. Whatever ends it is recorded and logged here; the input
        notices the ended thread and starts a new one."""
        try:
            super()._thread_main()
        except Exception as exc:  # recorded; the input restarts the thread
            self.thread_error = f"{type(exc).__name__}: {exc}"
            log.exception("mqtt: the network thread ended")

    _buffer = b""
    _at = 0
    _buffered_socket: object = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._buffered_socket is not self._sock:  # a new connection: nothing carried over
            self._buffer, self._at, self._buffered_socket = b"", 0, self._sock
            self._discard = 0
        if self._discard and self._in_packet["command"] == 0:
            self._skip()  # the rest of a cut message, before the next packet
        elif bufsize > self.max_payload_bytes:  # only a large body can need cutting
            packet = self._in_packet
            if (
                packet["have_remaining"]
                and packet["command"] & 0xF0 == PUBLISH
                and packet["to_process"] == packet["remaining_length"]
            ):
                bufsize = self._cut(bufsize)
        if self._at >= len(self._buffer):
            data = super()._sock_recv(READ_CHUNK)  # BlockingIOError when there is nothing
            if not data:
                return data  # the connection closed: paho handles it
            self._buffer, self._at = data, 0
        start = self._at
        self._at = min(len(self._buffer), start + bufsize)
        return self._buffer[start : self._at]

    def _cut(self, bufsize: int) -> int:
        """At the start of a PUBLISH's body: if it is over the limit, let paho read only
        the topic, the message id and just over ``max_payload_bytes`` of the payload,
        and skip the rest as it arrives."""
        packet = self._in_packet
        keep = 2 + 65535 + 2 + self.max_payload_bytes + 1  # topic, id, over the limit
        if packet["remaining_length"] <= keep:
            return bufsize
        self._discard = packet["remaining_length"] - keep
        packet["remaining_length"] = packet["to_process"] = keep
        return min(bufsize, keep)

    def _skip(self) -> None:
        """Drop ``_discard`` bytes from the buffer and the socket (BlockingIOError while
        they have not arrived; paho comes back when there is more)."""
        while self._discard:
            if self._at >= len(self._buffer):
                data = super()._sock_recv(READ_CHUNK)
                if not data:
                    return  # the connection closed: paho finds out on its own read
                self._buffer, self._at = data, 0
            step = min(self._discard, len(self._buffer) - self._at)
            self._at += step
            self._discard -= step

    def ack_all(self, acks: list[tuple[int, int]]) -> None:
        """Acknowledge ``(mid, qos)`` pairs: QoS 1 PUBACKs (MQTT 3.1.1) in one packet."""
        pubacks = b"".join(_PUBACK.pack(PUBACK, 2, mid) for mid, qos in acks if qos == 1)
        if pubacks and self._manual_ack:
            self._packet_queue(PUBACK, pubacks, 0, 0)
        for mid, qos in acks:
            if qos == 2:
                self.ack(mid, qos)

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (
            rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            and self._sock is not None
            and self._at < len(self._buffer)
        ):
            rc = super().loop_read(1)
        if self.after_read is not None:
            self.after_read()
        return rc
