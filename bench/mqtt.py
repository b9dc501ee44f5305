"""MQTT messages per second through ``pitelemetry run`` into a real InfluxDB 1.x with
zero loss (QoS 1, acknowledged only once written), the daemon's peak RSS, and the ratio
to the same points posted straight to ``/write``, measured two ways:

* live: a publisher on loopback (a raw-socket one: see :func:`publish`) publishes every
  message at QoS 1 while the daemon runs; it is timed alone against the broker too, as
  the run's ceiling for the offered rate;
* backlog: the messages wait at the broker in pitelemetry's persistent session while it
  is stopped, then it starts: the rate at which it drains them is its own.

    python -m bench.mqtt [--messages 50000]

Targets: >= 20,000 messages/s, RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from bench import daemon as daemon_process
from tests.servers import InfluxDB1, Mosquitto

BATCH = 5000
T0 = 1_795_000_000_000_000_000


def payload(i: int) -> bytes:
    return json.dumps({"power": i % 3000, "voltage": 230.5, "ts": T0 + i}).encode()


def straight(server: InfluxDB1, messages: int) -> float:
    server.create_database("straight")
    lines = [
        f"mqtt_bench,source=s1 power={i % 3000}.0,voltage=230.5 {T0 + i}" for i in range(messages)
    ]
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    started = time.perf_counter()
    for start in range(0, messages, BATCH):
        conn.request(
            "POST",
            "/write?db=straight&precision=ns",
            ("\n".join(lines[start : start + BATCH]) + "\n").encode(),
        )
        response = conn.getresponse()
        response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return messages / elapsed


def count(server: InfluxDB1) -> int:
    rows = server.rows("SELECT count(power) FROM mqtt_bench", "through")
    return int(rows[0]["count"]) if rows else 0


def start_daemon(
    server: InfluxDB1, broker: Mosquitto, work: Path, *, settle: bool = True
) -> subprocess.Popen[bytes]:
    daemon = daemon_process.start(
        work,
        server.url,
        "through",
        agent="self_metrics = false",
        inputs=f"""[[inputs.mqtt]]
broker = "tcp://127.0.0.1:{broker.port}"
[[inputs.mqtt.rules]]
topic = "bench/{{source}}"
measurement = "mqtt_bench"
timestamp_field = "ts"
""",
    )
    if settle:
        time.sleep(3)  # connected and subscribed: the persistent session exists
    return daemon


def stop(daemon: subprocess.Popen[bytes]) -> int:
    """Stop the daemon; its peak RSS in kB."""
    peak = 0
    for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1])
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(60)
    return peak


WINDOW = 500  # QoS 1 messages the publisher has in flight, unacknowledged


def _packet(kind: int, body: bytes) -> bytes:
    """An MQTT 3.1.1 packet: the fixed header with its variable-length size, and body."""
    size, length = len(body), bytearray()
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (128 if size else 0))
        if not size:
            return bytes([kind, *length]) + body


def _string(text: bytes) -> bytes:
    return struct.pack("!H", len(text)) + text


def publish(broker: Mosquitto, first: int, messages: int) -> float:
    """Publish at QoS 1 until the broker acknowledged every message; the rate.

    A publisher of a few lines on a raw socket: paho's publisher tops out near 6,000
    QoS 1 messages/s on this machine and ``mosquitto_pub -l`` gets disconnected by
    Mosquitto 2.0 ("out of memory") past some 35,000 lines, so neither can offer the
    rate to be measured. It writes PUBLISH packets in blocks and keeps ``WINDOW`` of
    them unacknowledged."""
    messages_ = [(b"bench/s1", payload(i)) for i in range(first, first + messages)]
    return publish_messages(broker, messages_, f"bench-publisher-{first}")


def publish_messages(broker: Mosquitto, messages_: list[tuple[bytes, bytes]], name: str) -> float:
    """Publish (topic, payload) pairs at QoS 1 on a raw socket (see :func:`publish`)."""
    messages = len(messages_)
    packets = [
        _packet(0x32, _string(topic) + struct.pack("!H", i % 65535 + 1) + body)
        for i, (topic, body) in enumerate(messages_)
    ]
    with socket.create_connection(("127.0.0.1", broker.port)) as sock:
        client_id = name.encode()
        sock.sendall(_packet(0x10, _string(b"MQTT") + bytes([4, 2, 0, 60]) + _string(client_id)))
        assert sock.recv(4)[:2] == b"\x20\x02", "no CONNACK"
        started = time.perf_counter()
        sent = acked = 0
        pending = b""
        while acked < messages:
            if sent < messages and sent - acked < WINDOW:
                block = min(messages, acked + WINDOW) - sent
                sock.sendall(b"".join(packets[sent : sent + block]))
                sent += block
            pending += sock.recv(65536)
            whole = len(pending) // 4  # PUBACKs: 4 bytes each
            acked += whole
            pending = pending[whole * 4 :]
        elapsed = time.perf_counter() - started
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    return messages / elapsed


HOSTILE_TOPICS = 100_000
OVERSIZED = 20  # payloads of 1 MB, over max_payload_bytes (64 KiB)


def hostile(server: InfluxDB1, broker: Mosquitto, work: Path) -> int:
    """A flood from anything on the LAN: 100,000 distinct topics, half with a reading
    (new devices, past max_series) and half with a payload that does not parse, and
    oversized payloads; then one good message, which lands once all before it were
    handled. The daemon's peak RSS in kB."""
    daemon = start_daemon(server, broker, work)
    before = count(server)
    publish_messages(broker, [(b"bench/s1", payload(9 * 10**7))], "bench-hostile-first")
    while count(server) <= before:
        time.sleep(0.05)
    flood = [
        (f"bench/dev{i}".encode(), payload(i) if i % 2 else b"not json {")
        for i in range(HOSTILE_TOPICS)
    ]
    flood += [(b"bench/big", b"x" * 1_000_000)] * OVERSIZED
    flood.append((b"bench/s1", payload(9 * 10**7 + 1)))
    publish_messages(broker, flood, "bench-hostile")
    started = time.perf_counter()
    # The two good messages and the 999 devices max_series (1,000 series) lets in.
    wait_landed(server, before + 1001, started)
    return stop(daemon)


def wait_landed(server: InfluxDB1, want: int, started: float) -> float:
    while count(server) < want and time.perf_counter() - started < 600:
        time.sleep(0.05)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=50_000)
    args = parser.parse_args()
    n = args.messages
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        server = InfluxDB1(work / "influxdb")
        broker = Mosquitto(work / "mosquitto")
        server.start()
        broker.start()
        try:
            base = straight(server, n)
            alone = publish(broker, 10 * n, n)  # no subscriber: the ceiling
            server.create_database("through")
            daemon = start_daemon(server, broker, work)
            started = time.perf_counter()
            sending = threading.Thread(target=publish, args=(broker, 0, n))
            sending.start()
            live = n / wait_landed(server, n, started)
            sending.join()
            live_kb = stop(daemon)
            publish(broker, n, n)  # queued at the broker while it is stopped
            daemon = start_daemon(server, broker, work, settle=False)
            while count(server) <= n:  # the first of the backlog has landed
                time.sleep(0.01)
            started, first = time.perf_counter(), count(server)
            backlog = (2 * n - first) / wait_landed(server, 2 * n, started)
            backlog_kb = stop(daemon)
            landed = count(server)
            hostile_kb = hostile(server, broker, work)
        finally:
            broker.stop()
            server.stop()
    print(f"messages: {2 * n:,} at QoS 1; {landed:,} landed (zero loss: {landed == 2 * n})")
    print(f"straight to /write              {base:>9,.0f} points/s")
    print(f"the publisher alone (offered)   {alone:>9,.0f} messages/s")
    print(
        f"live, through pitelemetry       {live:>9,.0f} messages/s  ratio to /write "
        f"{live / base:.2f}, to the publisher alone {live / alone:.2f}"
    )
    print(
        f"backlog drained by pitelemetry  {backlog:>9,.0f} messages/s  ratio to /write "
        f"{backlog / base:.2f}"
    )
    print(
        f"daemon peak RSS {max(live_kb, backlog_kb) / 1024:.1f} MB  (target <= 60 MB; "
        "target rate >= 20,000/s)"
    )
    print(
        f"daemon peak RSS under a hostile flood ({HOSTILE_TOPICS:,} topics, {OVERSIZED} "
        f"payloads of 1 MB) {hostile_kb / 1024:.1f} MB  (target <= 60 MB)"
    )


if __name__ == "__main__":
    main()
