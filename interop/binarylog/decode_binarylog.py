#!/usr/bin/env python3
"""Prints a binary log (gRFC A16; gRPC-Go's and ferrogrpc's file format: a
4-byte big-endian length, then a serialized GrpcLogEntry, repeated) one
entry per paragraph, in protobuf text format.

    decode_binarylog.py PROTO_ROOT LOG_FILE

PROTO_ROOT holds grpc/binlog/v1/binarylog.proto (ferrogrpc/proto in this
repository); needs grpcio-tools (pip install grpcio-tools).
"""

import os
import sys

from google.protobuf import text_format

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_binarylog import compile_proto, read_entries  # noqa: E402


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    pb = compile_proto(sys.argv[1])
    for entry in read_entries(pb, sys.argv[2]):
        print(text_format.MessageToString(entry, as_utf8=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
