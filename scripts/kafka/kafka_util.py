#!/usr/bin/env python3
"""Standard-library helpers for scripts/kafka/kafka.sh (no kafka-python needed).

    kafka_util.py free-ports N          print N free TCP ports on 127.0.0.1
    kafka_util.py cluster-id            print a random Kafka cluster id (base64url uuid)
    kafka_util.py probe HOST:PORT       exit 0 if the broker answers a Metadata request
                                        listing at least one (unfenced) broker
    kafka_util.py wait HOST:PORT SECS PID
                                        poll probe until ready; exit 1 on timeout,
                                        exit 2 if process PID dies first
"""
import base64
import os
import socket
import struct
import sys
import time
import uuid


def free_ports(n):
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def cluster_id():
    # Same shape as org.apache.kafka.common.Uuid.randomUuid().toString():
    # 16 random bytes, url-safe base64 without padding, never starting with '-'.
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return buf


def probe(addr, timeout=2.0):
    """Send MetadataRequest v4 (no topics); True if >= 1 broker is listed."""
    host, port = addr.rsplit(":", 1)
    client_id = b"trustlog-kafka-probe"
    # header v1: api_key=3 (Metadata), api_version=4, correlation_id, client_id
    header = struct.pack(">hhih", 3, 4, 7, len(client_id)) + client_id
    # body v4: topics = empty array (no topics), allow_auto_topic_creation=false
    body = struct.pack(">ib", 0, 0)
    req = header + body
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", _recv_exact(s, 4))[0]
            resp = _recv_exact(s, size)
    except (OSError, ConnectionError, struct.error):
        return False
    # response v4: correlation_id, throttle_time_ms, brokers[] ...
    if len(resp) < 12:
        return False
    corr, _throttle, nbrokers = struct.unpack(">iii", resp[:12])
    return corr == 7 and nbrokers >= 1


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still "exists"; look at /proc when we can
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True


def wait(addr, secs, pid):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        if probe(addr):
            return 0
        if pid and not _alive(pid):
            return 2
        time.sleep(0.25)
    return 1


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "free-ports":
        print(" ".join(map(str, free_ports(int(argv[2])))))
        return 0
    if cmd == "cluster-id":
        print(cluster_id())
        return 0
    if cmd == "probe":
        return 0 if probe(argv[2]) else 1
    if cmd == "wait":
        return wait(argv[2], float(argv[3]), int(argv[4]) if len(argv) > 4 else 0)
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    sys.exit(main(sys.argv))
