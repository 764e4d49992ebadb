#!/usr/bin/env python3
"""Decodes a binary log written by ferrogrpc (gRFC A16) with the official
grpc/binlog/v1/binarylog.proto compiled by grpcio-tools, and checks it.

    check_binarylog.py PROTO_ROOT LOG_FILE EXCLUDED_METHOD

PROTO_ROOT holds grpc/binlog/v1/binarylog.proto (ferrogrpc/proto). The file
is a sequence of 4-byte big-endian lengths, each followed by a serialized
GrpcLogEntry (gRPC-Go's file sink format).

Prints one line per check, "PASS name" or "FAIL name: why", and exits 1 if
any failed.
"""

import collections
import os
import struct
import sys
import tempfile


def compile_proto(proto_root):
    from grpc_tools import protoc
    import grpc_tools

    out = tempfile.mkdtemp(prefix="binarylog-py-")
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main([
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={out}",
        "grpc/binlog/v1/binarylog.proto",
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    # "grpc" is grpcio's package: reach the generated module by its path.
    import importlib.util

    path = os.path.join(out, "grpc", "binlog", "v1", "binarylog_pb2.py")
    spec = importlib.util.spec_from_file_location("binarylog_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_entries(pb, path):
    data = open(path, "rb").read()
    entries, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            raise ValueError(f"truncated length prefix at byte {at}")
        (n,) = struct.unpack(">I", data[at:at + 4])
        if at + 4 + n > len(data):
            raise ValueError(f"truncated entry at byte {at}")
        entry = pb.GrpcLogEntry()
        entry.ParseFromString(data[at + 4:at + 4 + n])
        entries.append(entry)
        at += 4 + n
    return entries


def main():
    proto_root, log_file, excluded = sys.argv[1:4]
    pb = compile_proto(proto_root)
    E = pb.GrpcLogEntry
    failed = 0

    def check(name, ok, why=""):
        nonlocal failed
        if ok:
            print(f"PASS {name}")
        else:
            failed += 1
            print(f"FAIL {name}: {why}")

    try:
        entries = read_entries(pb, log_file)
        check("decode", True)
    except Exception as e:  # noqa: BLE001 - any decoding failure is the answer
        check("decode", False, str(e))
        return 1

    check("entries", len(entries) > 0, "the log is empty")
    calls = collections.OrderedDict()
    for e in entries:
        calls.setdefault(e.call_id, []).append(e)
    counts = collections.Counter(E.EventType.Name(e.type) for e in entries)
    print("# entries by type: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
          file=sys.stderr)
    print(f"# calls: {len(calls)}", file=sys.stderr)

    check("server logger", all(e.logger == E.LOGGER_SERVER for e in entries),
          "an entry not from the server")
    check("call ids", all(e.call_id != 0 for e in entries), "a call id of 0")

    bad_seq, bad_shape, bad_peer, methods = [], [], [], collections.Counter()
    for call_id, es in calls.items():
        seqs = [e.sequence_id_within_call for e in es]
        if seqs != list(range(1, len(es) + 1)):
            bad_seq.append((call_id, seqs))
        first, last = es[0], es[-1]
        if first.type != E.EVENT_TYPE_CLIENT_HEADER:
            bad_shape.append((call_id, "does not start with the client header"))
            continue
        methods[first.client_header.method_name] += 1
        ends = [e for e in es if e.type in (E.EVENT_TYPE_SERVER_TRAILER, E.EVENT_TYPE_CANCEL)]
        if len(ends) != 1 or ends[0] is not last:
            bad_shape.append((call_id, [E.EventType.Name(e.type) for e in es]))
        if first.peer.type not in (pb.Address.TYPE_IPV4, pb.Address.TYPE_IPV6) or first.peer.ip_port == 0:
            bad_peer.append(call_id)
        if any(e.HasField("peer") for e in es[1:]):
            bad_peer.append(call_id)
        if not first.client_header.authority:
            bad_shape.append((call_id, "no authority"))
        for e in es:
            md = None
            if e.HasField("client_header"):
                md = e.client_header.metadata
            elif e.HasField("server_header"):
                md = e.server_header.metadata
            elif e.HasField("trailer"):
                md = e.trailer.metadata
            if md is not None:
                for m in md.entry:
                    if m.key.startswith("grpc-") and m.key != "grpc-trace-bin":
                        bad_shape.append((call_id, f"reserved header {m.key} logged"))
            if e.HasField("message") and len(e.message.data) > 1024:
                bad_shape.append((call_id, "message over the {m:1024} limit"))
            if e.HasField("message") and e.message.length > 1024 and not e.payload_truncated:
                bad_shape.append((call_id, "long message not marked truncated"))

    check("sequence ids 1..n per call", not bad_seq, str(bad_seq[:3]))
    check("header first, one trailer or cancel last", not bad_shape, str(bad_shape[:3]))
    check("peer on the client header only", not bad_peer, str(bad_peer[:3]))
    check("excluded method absent", methods[excluded] == 0,
          f"{methods[excluded]} calls of {excluded} logged")
    for kind in ("CLIENT_HEADER", "SERVER_HEADER", "CLIENT_MESSAGE", "SERVER_MESSAGE",
                 "CLIENT_HALF_CLOSE", "SERVER_TRAILER"):
        check(f"some {kind}", counts[f"EVENT_TYPE_{kind}"] > 0, "none")
    # cancel_after_begin and cancel_after_first_response: the server logs
    # either CANCEL (it saw the reset) or the CANCELLED status its handler
    # returned on seeing it (A16 allows both).
    cancelled = [es for es in calls.values()
                 if es[-1].type == E.EVENT_TYPE_CANCEL
                 or (es[-1].type == E.EVENT_TYPE_SERVER_TRAILER and es[-1].trailer.status_code == 1)]
    check("cancelled calls end cancelled", len(cancelled) >= 2,
          f"{len(cancelled)} calls end in CANCEL or a CANCELLED trailer")
    check("one client header per call", counts["EVENT_TYPE_CLIENT_HEADER"] == len(calls),
          f"{counts['EVENT_TYPE_CLIENT_HEADER']} headers for {len(calls)} calls")
    truncated = [e for e in entries if e.HasField("message") and e.payload_truncated]
    check("large messages truncated", any(e.message.length > 1024 for e in truncated),
          "no truncated large message")
    for m in ("/grpc.testing.TestService/UnaryCall", "/grpc.testing.TestService/FullDuplexCall",
              "/grpc.testing.TestService/StreamingOutputCall",
              "/grpc.testing.TestService/StreamingInputCall"):
        check(f"calls of {m}", methods[m] > 0, "none logged")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
