#!/usr/bin/env python3
"""grpcio TestService that fails the first x-retry-fail attempts of each call.

The grpcio (gRPC C core) peer of ferrogrpc's retry_server, for the gRFC A6
retry checks of interop/run-retry.sh; the semantics are the same:

  * request metadata "x-retry-fail: N" (default 0): the call fails with
    UNAVAILABLE while "grpc-previous-rpc-attempts" (set by a retrying
    client; default 0) is below N. The failure's message is
    "attempt K failed on purpose (x-retry-fail N)", K counting from 1.
  * "x-retry-pushback-ms: MS": those failures carry server pushback
    (trailer grpc-retry-pushback-ms): retry after MS ms, or not at all when
    MS is negative.
  * an attempt that gets through is answered as by the interop server
    (payload of response_size zeros; one streamed response per
    ResponseParameters; aggregated size of a client stream) with initial
    metadata "x-attempts-seen: <grpc-previous-rpc-attempts>".

Failures are sent before any initial metadata (Trailers-Only), so a client
may retry even a streaming call. Served: EmptyCall, UnaryCall,
StreamingOutputCall, StreamingInputCall, FullDuplexCall; the rest of
TestService answers UNIMPLEMENTED. Nothing is recorded.

Usage:
  python flaky_server.py [PORT]        (or --port PORT; 0 or none: a free port)

Listens on 127.0.0.1 and, once bound, prints "listening on 127.0.0.1:PORT"
on stdout. Stops on SIGINT / SIGTERM. Needs the stubs made by
interop/peers/python/setup_venv.sh; their directory is found from
--gen_dir, $INTEROP_GEN_DIR, or <venv of this interpreter>/gen.
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

FAIL_KEY = "x-retry-fail"
PUSHBACK_KEY = "x-retry-pushback-ms"
PREVIOUS_ATTEMPTS_KEY = "grpc-previous-rpc-attempts"
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"
ATTEMPTS_SEEN_KEY = "x-attempts-seen"


def _default_gen_dir():
    env = os.environ.get("INTEROP_GEN_DIR")
    if env:
        return env
    return os.path.join(sys.prefix, "gen")


def load_stubs(gen_dir):
    """Import the generated grpc.testing modules from gen_dir.

    They live under gen_dir/grpc/testing and import each other as
    grpc.testing.*; "grpc" is grpcio's own package, so the generated folder is
    grafted onto grpc.__path__ (as interop/peers/python does).
    """
    import grpc

    pkg_dir = os.path.join(os.path.abspath(gen_dir), "grpc")
    if not os.path.isdir(os.path.join(pkg_dir, "testing")):
        raise SystemExit(
            "generated stubs not found under %s (run "
            "interop/peers/python/setup_venv.sh)" % gen_dir)
    if pkg_dir not in grpc.__path__:
        grpc.__path__.append(pkg_dir)
    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc
    return empty_pb2, messages_pb2, test_pb2_grpc


def build_servicer(grpc, empty_pb2, messages_pb2, test_pb2_grpc):

    def count(context, metadata, key):
        text = metadata.get(key)
        if text is None:
            return 0
        try:
            value = int(text.strip())
        except ValueError:
            value = -1
        if value < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "%s: %r is not a non-negative integer" % (key, text))
        return value

    def gate(method, context):
        """Fails the attempt (context.abort) or returns its previous attempts."""
        metadata = dict(context.invocation_metadata())
        previous = count(context, metadata, PREVIOUS_ATTEMPTS_KEY)
        fail = count(context, metadata, FAIL_KEY)
        pushback = metadata.get(PUSHBACK_KEY)
        answered = previous >= fail
        sys.stderr.write(
            "flaky_server: %s: previous attempts %s, %s %s, %s %s: %s\n" % (
                method, metadata.get(PREVIOUS_ATTEMPTS_KEY, "-"),
                FAIL_KEY, metadata.get(FAIL_KEY, "-"),
                PUSHBACK_KEY, pushback if pushback is not None else "-",
                "answered" if answered else "UNAVAILABLE"))
        sys.stderr.flush()
        if answered:
            context.send_initial_metadata(
                [(ATTEMPTS_SEEN_KEY, str(previous))])
            return previous
        if pushback is not None:
            try:
                ms = int(pushback.strip())
            except ValueError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              "%s: %r is not an integer" % (PUSHBACK_KEY,
                                                            pushback))
            # gRFC A6: a negative (or malformed) value means "do not retry".
            context.set_trailing_metadata(
                [(PUSHBACK_TRAILER, str(ms) if ms >= 0 else "-1")])
        context.abort(
            grpc.StatusCode.UNAVAILABLE,
            "attempt %d failed on purpose (%s %d)" % (previous + 1, FAIL_KEY,
                                                     fail))

    def make_payload(context, response_type, size):
        if response_type != messages_pb2.COMPRESSABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "unsupported response_type %d" % response_type)
        if size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "negative response size %d" % size)
        return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE,
                                    body=bytes(size))

    def stream_responses(context, request):
        for params in request.response_parameters:
            yield messages_pb2.StreamingOutputCallResponse(
                payload=make_payload(context, request.response_type,
                                     params.size))

    class FlakyServicer(test_pb2_grpc.TestServiceServicer):

        def EmptyCall(self, request, context):
            gate("EmptyCall", context)
            return empty_pb2.Empty()

        def UnaryCall(self, request, context):
            gate("UnaryCall", context)
            return messages_pb2.SimpleResponse(payload=make_payload(
                context, request.response_type, request.response_size))

        def StreamingOutputCall(self, request, context):
            gate("StreamingOutputCall", context)
            for response in stream_responses(context, request):
                yield response

        def StreamingInputCall(self, request_iterator, context):
            # Decided before reading: a failed attempt leaves its requests
            # unread.
            gate("StreamingInputCall", context)
            total = 0
            for request in request_iterator:
                total += len(request.payload.body)
            return messages_pb2.StreamingInputCallResponse(
                aggregated_payload_size=total)

        def FullDuplexCall(self, request_iterator, context):
            gate("FullDuplexCall", context)
            for request in request_iterator:
                for response in stream_responses(context, request):
                    yield response

    return FlakyServicer()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT",
                   help="port on 127.0.0.1 (0 or none: a free one)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--gen_dir", default=_default_gen_dir())
    args = p.parse_args(argv)
    if args.port is not None and args.port_arg is not None:
        p.error("give the port once")
    port = args.port if args.port is not None else (args.port_arg or 0)

    import grpc
    stubs = load_stubs(args.gen_dir)
    servicer = build_servicer(grpc, *stubs)
    test_pb2_grpc = stubs[2]

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    test_pb2_grpc.add_TestServiceServicer_to_server(servicer, server)
    bound = server.add_insecure_port("127.0.0.1:%d" % port)
    if bound == 0:
        raise SystemExit("flaky_server: cannot listen on 127.0.0.1:%d" % port)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    sys.stdout.write("listening on 127.0.0.1:%d\n" % bound)
    sys.stdout.flush()
    while not stop.wait(3600):
        pass
    sys.stderr.write("flaky_server: stopping\n")
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
