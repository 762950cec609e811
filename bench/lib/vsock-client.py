#!/usr/bin/env python3
"""The host end of bench/vsock-bench.mjs: talks to an echo server in the guest (vsock-probe listen)
through tsvmm's hybrid vsock socket (unix PATH PORT: connect, "CONNECT PORT\\n", "OK ...\\n") or
through the kernel's AF_VSOCK (vsock CID PORT: QEMU's vhost-vsock), the same way for both.

  vsock-client.py unix PATH PORT ROUNDS MIB
  vsock-client.py vsock CID PORT ROUNDS MIB
  vsock-client.py insmod KO...    load these modules in order (already loaded ones are skipped)

Prints one JSON line: round trips of 64 bytes (µs, median and p99) and the echo throughput of
MIB MiB sent while the echo is read back (MiB/s). Python because Node.js has no AF_VSOCK.
"""
import ctypes
import json
import os
import socket
import sys
import threading
import time


def connect(kind, where, port):
    if kind == "vsock":
        s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        s.connect((int(where), port))
        return s
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(where)
    s.sendall(b"CONNECT %d\n" % port)
    line = b""
    while not line.endswith(b"\n"):
        chunk = s.recv(1)
        if not chunk:
            raise SystemExit("vsock-client: the socket closed before OK")
        line += chunk
    if not line.startswith(b"OK "):
        raise SystemExit("vsock-client: unexpected answer %r" % line)
    return s


def recv_exact(s, n):
    got = 0
    while got < n:
        chunk = s.recv(n - got)
        if not chunk:
            raise SystemExit("vsock-client: the connection closed")
        got += len(chunk)


def round_trips(s, rounds):
    ping = b"x" * 64
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        s.sendall(ping)
        recv_exact(s, len(ping))
        times.append((time.perf_counter() - t0) * 1e6)
    times.sort()
    return times[len(times) // 2], times[min(len(times) - 1, int(len(times) * 0.99))]


def throughput(s, mib):
    total = mib * 1024 * 1024
    block = os.urandom(64 * 1024)
    received = [0]

    def reader():
        while received[0] < total:
            chunk = s.recv(256 * 1024)
            if not chunk:
                break
            received[0] += len(chunk)

    t = threading.Thread(target=reader)
    t0 = time.perf_counter()
    t.start()
    sent = 0
    while sent < total:
        s.sendall(block)
        sent += len(block)
    t.join()
    if received[0] != total:
        raise SystemExit("vsock-client: %d of %d bytes came back" % (received[0], total))
    return mib / (time.perf_counter() - t0)


def insmod(paths):
    libc = ctypes.CDLL(None, use_errno=True)
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        # finit_module(fd, "", 0); EEXIST: already loaded
        if libc.syscall(313, fd, b"", 0) != 0 and ctypes.get_errno() != 17:
            raise SystemExit("vsock-client: cannot load %s: %s" % (path, os.strerror(ctypes.get_errno())))
        os.close(fd)


def main():
    if sys.argv[1] == "insmod":
        insmod(sys.argv[2:])
        return
    kind, where, port, rounds, mib = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    s = connect(kind, where, port)
    median, p99 = round_trips(s, rounds)
    mibs = throughput(s, mib)
    s.close()
    print(json.dumps({"rtt_median_us": median, "rtt_p99_us": p99, "mib_per_s": mibs}))


main()
