#!/usr/bin/env python3
"""A third-party HL7 v2 sender: sends each file over MLLP with the PyPI package `hl7`
(python-hl7's `hl7.client.MLLPClient`) and prints one JSON line per file with the ACK.

    python3 hl7_send.py HOST PORT FILE...

The file's bytes are sent as they are (`send_message` sends `bytes` unchanged inside
<VT>...<FS><CR>), so an ISO-8859-1 file stays ISO-8859-1 on the wire. A file with LF or CRLF
segment ends is sent as it is too. Exits 2 on a connection error, 1 on an unreadable ACK.
"""

import json
import os
import socket
import sys

import hl7
import hl7.client

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
TIMEOUT = 30.0


def read_ack(client, first):
    """`send_message` returns one `recv(4096)`: read on until the frame's <FS><CR>."""
    data = first
    while EB not in data:
        more = client.socket.recv(4096)
        if not more:
            raise ConnectionError("connection closed before the end of the ACK frame")
        data += more
    start = data.find(SB)
    return data[start + 1 if start >= 0 else 0 : data.index(EB)]


def decode(ack):
    try:
        return ack.decode("utf-8")
    except UnicodeDecodeError:
        return ack.decode("latin-1")


def main(argv):
    if len(argv) < 4:
        print("usage: hl7_send.py HOST PORT FILE...", file=sys.stderr)
        return 64
    host, port, files = argv[1], int(argv[2]), argv[3:]
    try:
        client = hl7.client.MLLPClient(host, port)
    except OSError as e:
        print(f"cannot connect to {host}:{port}: {e}", file=sys.stderr)
        return 2
    status = 0
    with client:
        client.socket.settimeout(TIMEOUT)
        for path in files:
            with open(path, "rb") as f:
                message = f.read()
            try:
                ack = read_ack(client, client.send_message(message))
            except OSError as e:
                print(f"{os.path.basename(path)}: connection error: {e}", file=sys.stderr)
                return 2
            text = decode(ack)
            try:
                parsed = hl7.parse(text.replace("\r\n", "\r").replace("\n", "\r"))
                msa = parsed.segment("MSA")
                msa1, msa2 = str(msa(1)), str(msa(2))
            except Exception as e:  # not an HL7 ACK, or no MSA
                print(f"{os.path.basename(path)}: unreadable ACK: {e}", file=sys.stderr)
                msa1 = msa2 = None
                status = 1
            print(json.dumps({"file": os.path.basename(path), "msa1": msa1, "msa2": msa2, "ack": text}),
                  flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
