#!/usr/bin/env python3
"""grpcio (gRPC C core) interop test server, used as a peer for ferrogrpc.

Implements the server features of the gRPC interop test description
(grpc.testing.TestService) on top of the Python grpcio package:

  EmptyCall, UnaryCall, CacheableUnaryCall, StreamingInputCall,
  StreamingOutputCall, FullDuplexCall, HalfDuplexCall,
  Echo Status, Echo Metadata, CompressedResponse, interval_us.

UnimplementedCall and grpc.testing.UnimplementedService are deliberately not
implemented, so calls to them end with UNIMPLEMENTED.

Limits of grpcio that matter here:
  * CompressedRequest (expect_compressed) is NOT checked: grpcio decompresses
    requests inside the C core and shows a servicer neither the per-message
    "compressed" flag nor the "grpc-encoding" request header (verified with
    grpcio 1.76: invocation_metadata() only holds user-agent and application
    keys). Requests with expect_compressed=true are therefore accepted whether
    or not they were compressed, so a client's client_compressed_unary /
    client_compressed_streaming feature probe is never rejected by this
    server; run-cross.sh accounts for that.
  * Per-message compression of streamed responses uses
    context.disable_next_message_compression(), which is what grpcio offers.

Usage:
  python interop_server.py --port 50051 [--use_tls true --tls_cert_file F
                                         --tls_key_file F]

Needs the stubs made by setup_venv.sh; their directory is found from
--gen_dir, $INTEROP_GEN_DIR, or <venv of this interpreter>/gen.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from concurrent import futures


def _str2bool(text):
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off", ""):
        return False
    raise argparse.ArgumentTypeError("not a boolean: %r" % text)


def _default_gen_dir():
    env = os.environ.get("INTEROP_GEN_DIR")
    if env:
        return env
    return os.path.join(sys.prefix, "gen")


def load_stubs(gen_dir):
    """Import the generated grpc.testing modules from gen_dir.

    The stubs live under gen_dir/grpc/testing and refer to each other as
    grpc.testing.*; "grpc" is grpcio's own package, so the generated folder is
    grafted onto grpc.__path__.
    """
    import grpc

    pkg_dir = os.path.join(os.path.abspath(gen_dir), "grpc")
    if not os.path.isdir(os.path.join(pkg_dir, "testing")):
        raise SystemExit(
            "generated stubs not found under %s (run setup_venv.sh)" % gen_dir)
    if pkg_dir not in grpc.__path__:
        grpc.__path__.append(pkg_dir)
    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc
    return empty_pb2, messages_pb2, test_pb2_grpc


ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"


def build_servicer(grpc, empty_pb2, messages_pb2, test_pb2_grpc):
    codes_by_number = {sc.value[0]: sc for sc in grpc.StatusCode}

    def status_code(number):
        return codes_by_number.get(number, grpc.StatusCode.UNKNOWN)

    def make_payload(context, response_type, size):
        if response_type != messages_pb2.COMPRESSABLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "unsupported response_type %d" % response_type)
        if size < 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          "negative payload size %d" % size)
        return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE,
                                    body=bytes(size))

    def echo_metadata(context):
        """Echo Metadata: initial key now, trailing key at end of call."""
        initial = []
        trailing = []
        for key, value in context.invocation_metadata():
            if key == ECHO_INITIAL_KEY:
                initial.append((key, value))
            elif key == ECHO_TRAILING_KEY:
                trailing.append((key, value))
        if initial:
            context.send_initial_metadata(initial)
        if trailing:
            context.set_trailing_metadata(trailing)

    def maybe_echo_status(context, request):
        if request.HasField("response_status"):
            st = request.response_status
            if st.code != 0:
                context.abort(status_code(st.code), st.message)

    def stream_responses(context, request, compressed_call):
        """Yield one response per ResponseParameters entry."""
        for params in request.response_parameters:
            if params.interval_us > 0:
                time.sleep(params.interval_us / 1e6)
            if compressed_call and not (params.HasField("compressed")
                                        and params.compressed.value):
                context.disable_next_message_compression()
            yield messages_pb2.StreamingOutputCallResponse(
                payload=make_payload(context, request.response_type,
                                     params.size))

    def wants_compression(request):
        return any(p.HasField("compressed") and p.compressed.value
                   for p in request.response_parameters)

    class TestService(test_pb2_grpc.TestServiceServicer):
        """grpc.testing.TestService minus UnimplementedCall."""

        def EmptyCall(self, request, context):
            echo_metadata(context)
            return empty_pb2.Empty()

        def UnaryCall(self, request, context):
            # Compression is announced in the initial metadata, so it must be
            # chosen before echo_metadata() may send that metadata.
            if (request.HasField("response_compressed")
                    and request.response_compressed.value):
                context.set_compression(grpc.Compression.Gzip)
            echo_metadata(context)
            maybe_echo_status(context, request)
            # expect_compressed cannot be checked with grpcio (see the module
            # docstring); the request is accepted as is.
            return messages_pb2.SimpleResponse(
                payload=make_payload(context, request.response_type,
                                     request.response_size))

        def CacheableUnaryCall(self, request, context):
            context.send_initial_metadata(
                [("cache-control", "max-age=60, public")])
            return messages_pb2.SimpleResponse(
                payload=messages_pb2.Payload(
                    type=messages_pb2.COMPRESSABLE,
                    body=str(time.time_ns()).encode("ascii")))

        def StreamingInputCall(self, request_iterator, context):
            echo_metadata(context)
            total = 0
            for request in request_iterator:
                # expect_compressed cannot be checked with grpcio (see the
                # module docstring); the request is accepted as is.
                total += len(request.payload.body)
            return messages_pb2.StreamingInputCallResponse(
                aggregated_payload_size=total)

        def StreamingOutputCall(self, request, context):
            compressed_call = wants_compression(request)
            if compressed_call:
                context.set_compression(grpc.Compression.Gzip)
            echo_metadata(context)
            maybe_echo_status(context, request)
            for response in stream_responses(context, request,
                                             compressed_call):
                yield response

        def FullDuplexCall(self, request_iterator, context):
            # Call-level compression travels in the initial metadata, which
            # is therefore held back until the first request has been read:
            # gzip is switched on for the call if that request asks for any
            # compressed response. Later messages still honour their own
            # "compressed" flag (but cannot turn gzip on afterwards).
            compressed_call = False
            started = False
            for request in request_iterator:
                if not started:
                    started = True
                    compressed_call = wants_compression(request)
                    if compressed_call:
                        context.set_compression(grpc.Compression.Gzip)
                    echo_metadata(context)
                maybe_echo_status(context, request)
                for response in stream_responses(context, request,
                                                 compressed_call):
                    yield response
            if not started:
                echo_metadata(context)

        def HalfDuplexCall(self, request_iterator, context):
            buffered = list(request_iterator)
            compressed_call = any(wants_compression(r) for r in buffered)
            if compressed_call:
                context.set_compression(grpc.Compression.Gzip)
            echo_metadata(context)
            for request in buffered:
                maybe_echo_status(context, request)
                for response in stream_responses(context, request,
                                                 compressed_call):
                    yield response

    return TestService()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--use_tls", type=_str2bool, nargs="?", const=True,
                        default=False)
    parser.add_argument("--tls_cert_file", default="")
    parser.add_argument("--tls_key_file", default="")
    parser.add_argument("--max_workers", type=int, default=96)
    parser.add_argument("--gen_dir", default=_default_gen_dir())
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING,
                        format="interop_server: %(levelname)s %(message)s")
    import grpc
    empty_pb2, messages_pb2, test_pb2_grpc = load_stubs(args.gen_dir)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.max_workers),
        options=[
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
        ],
    )
    test_pb2_grpc.add_TestServiceServicer_to_server(
        build_servicer(grpc, empty_pb2, messages_pb2, test_pb2_grpc),
        server)

    credentials = None
    if args.use_tls:
        if not (args.tls_cert_file and args.tls_key_file):
            parser.error("--use_tls true needs --tls_cert_file and "
                         "--tls_key_file")
        with open(args.tls_key_file, "rb") as f:
            key = f.read()
        with open(args.tls_cert_file, "rb") as f:
            cert = f.read()
        credentials = grpc.ssl_server_credentials([(key, cert)])

    bound = 0
    for host in ("[::]", "0.0.0.0"):
        address = "%s:%d" % (host, args.port)
        try:
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
        except RuntimeError:
            bound = 0
        if bound:
            break
    if not bound:
        print("interop_server: could not bind port %d" % args.port,
              file=sys.stderr)
        return 1

    server.start()
    print("interop_server: listening on port %d (%s)"
          % (bound, "tls" if credentials else "plaintext"),
          file=sys.stderr, flush=True)

    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(3600):
        pass
    server.stop(grace=1).wait(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
