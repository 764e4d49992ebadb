#!/usr/bin/env python3
"""grpcio server for interop/run-cli.sh: the `ferrogrpc` command against a
server ferrogrpc did not write.

Serves on 127.0.0.1, all of it grpcio's own machinery:

  * grpc.testing.TestService (stubs of interop/peers/python/setup_venv.sh):
      EmptyCall            an Empty
      UnaryCall            a payload of response_size zero bytes;
      CacheableUnaryCall   response_status set (code != 0): the call ends
                           with that code and message ("Echo Status");
                           response_size < 0: INVALID_ARGUMENT with rich
                           error details (grpcio-status's
                           rpc_status.to_status): a google.rpc.BadRequest
                           naming the field, see bad_request()
      StreamingOutputCall  one response per response_parameters entry,
                           then response_status if set
      StreamingInputCall   the sum of the payload sizes received
      FullDuplexCall       for each request, its responses at once
      HalfDuplexCall       every request's responses after the last request
      UnimplementedCall    UNIMPLEMENTED (grpcio's default)
  * grpc.health.v1.Health (grpcio-health-checking): "" and
    grpc.testing.TestService SERVING, ferrogrpc.cli.NotServing NOT_SERVING
    (any other service: NOT_FOUND)
  * server reflection (grpcio-reflection) of the three services, v1alpha,
    and v1 too if the installed grpcio-reflection offers it

Every TestService call is logged on stderr as one line
"grpcio_server: handled METHOD", written and flushed when the handler
starts, before any response: a client that saw a call end can count it in
the log. The script counts these lines to check that a benchmark's count is
the number of calls the server handled.

Usage:
  python grpcio_server.py [--port PORT] [--gen_dir DIR]

Once bound it prints "listening on 127.0.0.1:PORT" on stdout (port 0 or
none: a free port). Stops on SIGINT / SIGTERM. Needs grpcio,
grpcio-health-checking, grpcio-reflection, grpcio-status and the stubs; their
directory is found from --gen_dir, $INTEROP_GEN_DIR, or <venv of this
interpreter>/gen.
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

SERVICE = "grpc.testing.TestService"
NOT_SERVING_SERVICE = "ferrogrpc.cli.NotServing"

# The rich error: what run-cli.sh expects to read back.
BAD_REQUEST_MESSAGE = "response_size must be \u2265 0"
BAD_REQUEST_FIELD = "response_size"


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
    from grpc.testing import empty_pb2, messages_pb2, test_pb2, test_pb2_grpc
    return empty_pb2, messages_pb2, test_pb2, test_pb2_grpc


_log_lock = threading.Lock()


def log(text):
    with _log_lock:
        sys.stderr.write("grpcio_server: %s\n" % text)
        sys.stderr.flush()


def bad_request(size):
    """The google.rpc.Status of a negative response_size, with a BadRequest."""
    from google.protobuf import any_pb2
    from google.rpc import code_pb2, error_details_pb2, status_pb2

    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=BAD_REQUEST_FIELD, description="%d is negative" % size)
        ]))
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT,
                             message=BAD_REQUEST_MESSAGE,
                             details=[detail])


def build_servicer(grpc, rpc_status, empty_pb2, messages_pb2, test_pb2_grpc):
    codes_by_number = {sc.value[0]: sc for sc in grpc.StatusCode}

    def echo_status(context, request):
        if request.HasField("response_status") and request.response_status.code:
            st = request.response_status
            context.abort(codes_by_number.get(st.code, grpc.StatusCode.UNKNOWN),
                          st.message)

    def payload(context, size):
        if size < 0:
            context.abort_with_status(rpc_status.to_status(bad_request(size)))
        return messages_pb2.Payload(type=messages_pb2.COMPRESSABLE,
                                    body=bytes(size))

    def responses(context, request):
        for params in request.response_parameters:
            yield messages_pb2.StreamingOutputCallResponse(
                payload=payload(context, params.size))

    class Servicer(test_pb2_grpc.TestServiceServicer):

        def EmptyCall(self, request, context):
            log("handled EmptyCall")
            return empty_pb2.Empty()

        def UnaryCall(self, request, context):
            log("handled UnaryCall")
            echo_status(context, request)
            return messages_pb2.SimpleResponse(
                payload=payload(context, request.response_size))

        def CacheableUnaryCall(self, request, context):
            log("handled CacheableUnaryCall")
            echo_status(context, request)
            return messages_pb2.SimpleResponse(
                payload=payload(context, request.response_size))

        def StreamingOutputCall(self, request, context):
            log("handled StreamingOutputCall")
            for response in responses(context, request):
                yield response
            echo_status(context, request)

        def StreamingInputCall(self, request_iterator, context):
            log("handled StreamingInputCall")
            total = sum(len(r.payload.body) for r in request_iterator)
            return messages_pb2.StreamingInputCallResponse(
                aggregated_payload_size=total)

        def FullDuplexCall(self, request_iterator, context):
            log("handled FullDuplexCall")
            for request in request_iterator:
                for response in responses(context, request):
                    yield response
                echo_status(context, request)

        def HalfDuplexCall(self, request_iterator, context):
            log("handled HalfDuplexCall")
            requests = list(request_iterator)
            for request in requests:
                for response in responses(context, request):
                    yield response
                echo_status(context, request)

    return Servicer()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--gen_dir", default=_default_gen_dir())
    args = p.parse_args(argv)

    import grpc
    from grpc_health.v1 import health as grpc_health
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection
    from grpc_status import rpc_status
    empty_pb2, messages_pb2, test_pb2, test_pb2_grpc = load_stubs(
        args.gen_dir)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    bound = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if bound == 0:
        raise SystemExit("grpcio_server: cannot listen on 127.0.0.1:%d" %
                         args.port)

    test_pb2_grpc.add_TestServiceServicer_to_server(
        build_servicer(grpc, rpc_status, empty_pb2, messages_pb2,
                       test_pb2_grpc), server)

    health = grpc_health.HealthServicer()
    health.set("", health_pb2.HealthCheckResponse.SERVING)
    health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health.set(NOT_SERVING_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)

    # grpcio-channelz, for `ferrogrpc channelz`. Left out of reflection so
    # that the service list the script expects stays as it is.
    from grpc_channelz.v1 import channelz
    channelz.add_channelz_servicer(server)

    names = [
        test_pb2.DESCRIPTOR.services_by_name["TestService"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    # grpcio-reflection (1.76) offers only v1alpha, so ferrogrpc falls back
    # to it from v1; should a release bring grpc_reflection.v1, serve both.
    try:
        from grpc_reflection.v1 import reflection as reflection_v1
    except ImportError:
        reflection_v1 = None
    if reflection_v1 is not None:
        names.append(reflection_v1.SERVICE_NAME)
        reflection_v1.enable_server_reflection(names, server)
    reflection.enable_server_reflection(names, server)
    log("reflection: %s" % ", ".join(sorted(names)))

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    sys.stdout.write("listening on 127.0.0.1:%d\n" % bound)
    sys.stdout.flush()
    while not stop.wait(3600):
        pass
    log("stopping")
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
