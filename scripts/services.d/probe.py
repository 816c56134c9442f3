"""Readiness probes for scripts/services. Standard library only.

  probe.py cql HOST PORT USER PASSWORD
      Speaks the CQL native protocol (v4): STARTUP, logs in with SASL PLAIN
      and runs `SELECT release_version FROM system.local`. Exit 0 and print the
      release version when the node accepts that login and answers; else print
      why not and exit 1 (nothing listening / connection closed), 2 (login
      refused) or 3 (other error).

  probe.py spark UI_URL WORKERS
      Reads the Spark master's `UI_URL/json/` and exits 0 when the master is
      ALIVE with at least WORKERS workers in state ALIVE; else prints what it
      saw and exits 1.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import urllib.error
import urllib.request

VERSION = 0x04
OP_ERROR, OP_STARTUP, OP_READY, OP_AUTHENTICATE = 0x00, 0x01, 0x02, 0x03
OP_QUERY, OP_RESULT = 0x07, 0x08
OP_AUTH_CHALLENGE, OP_AUTH_RESPONSE, OP_AUTH_SUCCESS = 0x0E, 0x0F, 0x10
CONSISTENCY_ONE = 0x0001


class ProbeError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


def _string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def _long_string(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProbeError(1, "connection closed by the server")
        buf += chunk
    return buf


def _request(sock: socket.socket, stream: int, opcode: int, body: bytes) -> tuple[int, bytes]:
    sock.sendall(struct.pack(">BBhBi", VERSION, 0, stream, opcode, len(body)) + body)
    header = _recv_exact(sock, 9)
    _version, _flags, _stream, op, length = struct.unpack(">BBhBi", header)
    return op, _recv_exact(sock, length)


def _error_text(body: bytes) -> str:
    code = struct.unpack(">i", body[:4])[0]
    (n,) = struct.unpack(">H", body[4:6])
    return f"error 0x{code:04x}: {body[6:6 + n].decode(errors='replace')}"


def probe_cql(host: str, port: int, user: str, password: str) -> str:
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError as exc:
        raise ProbeError(1, f"cannot connect to {host}:{port}: {exc}") from exc
    try:
        sock.settimeout(10)
        op, body = _request(sock, 1, OP_STARTUP, struct.pack(">H", 1) + _string("CQL_VERSION") + _string("3.0.0"))
        if op == OP_ERROR:
            raise ProbeError(3, "STARTUP refused: " + _error_text(body))
        if op == OP_AUTHENTICATE:
            token = b"\x00" + user.encode() + b"\x00" + password.encode()
            op, body = _request(sock, 2, OP_AUTH_RESPONSE, struct.pack(">i", len(token)) + token)
            if op == OP_ERROR:
                raise ProbeError(2, f"login as {user!r} refused: " + _error_text(body))
            if op != OP_AUTH_SUCCESS:
                raise ProbeError(3, f"unexpected answer to the login (opcode 0x{op:02x})")
        elif op == OP_READY:
            raise ProbeError(3, "the node accepted a connection without a login: authentication is off")
        else:
            raise ProbeError(3, f"unexpected answer to STARTUP (opcode 0x{op:02x})")
        query = _long_string("SELECT release_version FROM system.local") + struct.pack(">HB", CONSISTENCY_ONE, 0)
        op, body = _request(sock, 3, OP_QUERY, query)
        if op == OP_ERROR:
            raise ProbeError(3, "query failed: " + _error_text(body))
        if op != OP_RESULT:
            raise ProbeError(3, f"unexpected answer to the query (opcode 0x{op:02x})")
        return _release_version(body)
    except (OSError, struct.error) as exc:
        raise ProbeError(1, f"connection to {host}:{port} failed: {exc}") from exc
    finally:
        sock.close()


def _release_version(body: bytes) -> str:
    """Pulls the single text cell out of a ROWS result (best effort)."""
    try:
        pos = 0
        kind, flags, ncols = struct.unpack(">iii", body[pos:pos + 12])
        pos += 12
        if kind != 2 or ncols != 1:
            return "unknown"
        if flags & 0x0002:  # paging state
            (n,) = struct.unpack(">i", body[pos:pos + 4])
            pos += 4 + max(n, 0)
        if flags & 0x0004:  # no metadata
            return "unknown"
        tables = 1 if flags & 0x0001 else 0
        for _ in range(2 * tables + (0 if tables else 2) + 1):  # ks, table, column name
            (n,) = struct.unpack(">H", body[pos:pos + 2])
            pos += 2 + n
        pos += 2  # type id (varchar/text: no extra)
        (nrows,) = struct.unpack(">i", body[pos:pos + 4])
        pos += 4
        if nrows < 1:
            return "unknown"
        (n,) = struct.unpack(">i", body[pos:pos + 4])
        return body[pos + 4:pos + 4 + n].decode()
    except (struct.error, UnicodeDecodeError):
        return "unknown"


def probe_spark(ui_url: str, workers: int) -> str:
    url = ui_url.rstrip("/") + "/json/"
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            state = json.load(resp)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        raise ProbeError(1, f"master UI {url} not answering: {exc}") from exc
    alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
    status = state.get("status")
    if status != "ALIVE" or len(alive) < workers:
        raise ProbeError(1, f"master status {status}, {len(alive)}/{workers} workers ALIVE")
    cores = sum(int(w.get("cores", 0)) for w in alive)
    return f"master {state.get('url')} ALIVE, {len(alive)} workers ALIVE, {cores} cores"


def main(argv: list[str]) -> int:
    try:
        if len(argv) == 5 and argv[0] == "cql":
            print(probe_cql(argv[1], int(argv[2]), argv[3], argv[4]))
        elif len(argv) == 3 and argv[0] == "spark":
            print(probe_spark(argv[1], int(argv[2])))
        else:
            print(__doc__, file=sys.stderr)
            return 64
    except ProbeError as exc:
        print(str(exc))
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
