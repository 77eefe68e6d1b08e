"""A small, fast SNMP v2c agent simulating many devices, for ``bench_poll.py``.

Usage::

    .venv/bin/python benchmarks/snmp_agent.py --devices 100 --interfaces 100 [--port 0]

One UDP socket on 127.0.0.1; the community selects the device (``dev0000``,
``dev0001``, ...; any other community gets no answer, like a real agent). Every
device has sysUpTime.0 and an IF-MIB with ``--interfaces`` rows (ifDescr,
ifAdminStatus, ifOperStatus, ifLastChange, ifName); nothing else (a BGP walk
gets ``endOfMibView``). GET and GETBULK (any non-repeaters / max-repetitions)
are answered from an in-memory table of pre-encoded varbinds with the repo's
BER codec (``sensory.trap.ber``): one decode, a ``bisect`` and a join per
request, so the agent stays off the poller's critical path. It is a plain
blocking loop in its own process (so it can have its own core).

Control datagrams (not BER, so never confused with SNMP), each answered on the
same socket: ``FLIP <count> <seed>`` toggles ifOperStatus up↔down on ``count``
random (device, interface) pairs and sets their ifLastChange (answer
``OK <count>``); ``STATS`` answers ``<requests> <bad>``; ``QUIT`` stops.
The chosen port is printed on stdout as ``PORT <n>`` once the socket is bound.
"""

from __future__ import annotations

import argparse
import bisect
import random
import socket
import sys
import time

from netcortex.errors import DecodeError
from netcortex.sensory.trap.ber import (
    GET_BULK,
    GET_REQUEST,
    decode_message,
    encode_oid,
    encode_response,
    encode_tlv,
    encode_value,
)

SYS_UPTIME = (1, 3, 6, 1, 2, 1, 1, 3, 0)
IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
IF_ADMIN = (1, 3, 6, 1, 2, 1, 2, 2, 1, 7)
IF_OPER = (1, 3, 6, 1, 2, 1, 2, 2, 1, 8)
IF_LAST_CHANGE = (1, 3, 6, 1, 2, 1, 2, 2, 1, 9)
IF_NAME = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1)


def _dotted(key: tuple[int, ...]) -> str:
    return ".".join(map(str, key))


def _vb(key: tuple[int, ...], type_name: str, value: int | bytes | None) -> bytes:
    return encode_tlv(0x30, encode_oid(_dotted(key)) + encode_value(type_name, value))


class Agent:
    """The simulated devices: one shared sorted OID list, pre-encoded varbinds per device."""

    def __init__(self, devices: int, interfaces: int) -> None:
        self.started = time.monotonic()
        self.interfaces = interfaces
        keys: list[tuple[int, ...]] = [SYS_UPTIME]
        for col in (IF_DESCR, IF_ADMIN, IF_OPER, IF_LAST_CHANGE, IF_NAME):
            keys.extend((*col, i) for i in range(1, interfaces + 1))
        keys.sort()
        self.keys = keys
        self.position = {k: n for n, k in enumerate(keys)}
        self.uptime_at = self.position[SYS_UPTIME]
        self.oper: list[list[int]] = []
        self.encoded: list[list[bytes]] = []
        self.communities = {f"dev{d:04d}".encode(): d for d in range(devices)}
        for _ in range(devices):
            oper = [1] * (interfaces + 1)
            self.oper.append(oper)
            row: list[bytes] = []
            for key in keys:
                col, index = key[:-1], key[-1]
                if key == SYS_UPTIME:
                    row.append(b"")  # encoded per request
                elif col == IF_DESCR:
                    row.append(_vb(key, "OctetString", f"GigabitEthernet0/{index}".encode()))
                elif col == IF_NAME:
                    row.append(_vb(key, "OctetString", f"Gi0/{index}".encode()))
                elif col == IF_ADMIN:
                    row.append(_vb(key, "Integer", 1))
                elif col == IF_OPER:
                    row.append(_vb(key, "Integer", oper[index]))
                else:
                    row.append(_vb(key, "TimeTicks", 0))
            self.encoded.append(row)
        self.requests = 0
        self.bad = 0

    def uptime(self) -> int:
        return int((time.monotonic() - self.started) * 100) + 100_000

    def flip(self, count: int, seed: int) -> int:
        rng = random.Random(seed)
        devices = len(self.encoded)
        pairs = rng.sample(range(devices * self.interfaces), min(count, devices * self.interfaces))
        now = self.uptime()
        for pair in pairs:
            d, index = divmod(pair, self.interfaces)
            index += 1
            self.oper[d][index] = 2 if self.oper[d][index] == 1 else 1
            oper_key, change_key = (*IF_OPER, index), (*IF_LAST_CHANGE, index)
            row = self.encoded[d]
            row[self.position[oper_key]] = _vb(oper_key, "Integer", self.oper[d][index])
            row[self.position[change_key]] = _vb(change_key, "TimeTicks", now)
        return len(pairs)

    def _at(self, row: list[bytes], n: int) -> bytes:
        if n == self.uptime_at:
            return _vb(SYS_UPTIME, "TimeTicks", self.uptime())
        return row[n]

    def answer(self, data: bytes) -> bytes | None:
        """The Response to one request datagram (``None``: no answer)."""
        try:
            message = decode_message(data)
        except DecodeError:
            self.bad += 1
            return None
        pdu = message.pdu
        d = self.communities.get(message.community)
        if message.version != 1 or pdu is None or d is None:
            self.bad += 1
            return None
        self.requests += 1
        row, keys = self.encoded[d], self.keys
        out: list[bytes] = []
        if pdu.tag == GET_REQUEST:
            for vb in pdu.varbinds:
                n = self.position.get(tuple(int(a) for a in vb.oid.split(".")))
                out.append(
                    self._at(row, n)
                    if n is not None
                    else encode_tlv(0x30, encode_oid(vb.oid) + b"\x80\x00")  # noSuchObject
                )
        elif pdu.tag == GET_BULK:
            non_rep = max(0, pdu.error_status)
            reps = max(0, pdu.error_index)
            starts = [
                bisect.bisect_right(keys, tuple(int(a) for a in vb.oid.split(".")))
                for vb in pdu.varbinds
            ]
            end = len(keys)
            for i, vb in enumerate(pdu.varbinds):
                if i < non_rep:
                    n = starts[i]
                    out.append(self._at(row, n) if n < end else _end(vb.oid))
            repeaters = list(range(non_rep, len(pdu.varbinds)))
            for r in range(reps):
                for i in repeaters:
                    n = starts[i] + r
                    out.append(self._at(row, n) if n < end else _end(pdu.varbinds[i].oid))
                if all(starts[i] + r >= end for i in repeaters):
                    break
        else:
            self.bad += 1
            return None
        return encode_response(
            1, message.community, pdu.request_id, encode_tlv(0x30, b"".join(out))
        )


def _end(oid: str) -> bytes:
    return encode_tlv(0x30, encode_oid(oid) + b"\x82\x00")  # endOfMibView


def serve(agent: Agent, port: int) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind(("127.0.0.1", port))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    while True:
        data, addr = sock.recvfrom(65535)
        if data[:1] == b"\x30":
            reply = agent.answer(data)
            if reply is not None:
                sock.sendto(reply, addr)
        elif data.startswith(b"FLIP "):
            _, count, seed = data.split()
            sock.sendto(b"OK %d" % agent.flip(int(count), int(seed)), addr)
        elif data == b"STATS":
            sock.sendto(b"%d %d" % (agent.requests, agent.bad), addr)
        elif data == b"QUIT":
            sock.sendto(b"BYE", addr)
            sock.close()
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--interfaces", type=int, default=100)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    serve(Agent(args.devices, args.interfaces), args.port)


if __name__ == "__main__":
    sys.exit(main())
