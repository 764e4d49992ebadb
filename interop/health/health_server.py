#!/usr/bin/env python3
"""grpcio TestService whose health status can be switched, for gRFC A17.

The grpcio (gRPC C core) backend of interop/run-health.sh: several of these
sit behind one ferrogrpc channel (health_client) that does client-side health
checking, and the client counts which of them answers its calls.

Serves on 127.0.0.1:

  * grpc.testing.TestService: EmptyCall, and UnaryCall answering a payload of
    response_size zeros; both send initial metadata "x-server: NAME" (from
    --name) so the client can tell the backends apart. The other methods
    answer UNIMPLEMENTED.
  * grpc.health.v1.Health: grpcio-health-checking's HealthServicer. The
    server as a whole ("") is SERVING; grpc.testing.TestService is SERVING,
    or NOT_SERVING with --not-serving.
  * grpc.testing.XdsUpdateHealthService: SetServing / SetNotServing set the
    health status of grpc.testing.TestService (its watchers hear at once).

SIGUSR1 flips grpc.testing.TestService between SERVING and NOT_SERVING.
Every status change is logged on stderr. The health status changes nothing
else: a NOT_SERVING server still answers TestService calls, so a client that
ignores health shows up as calls answered by it.

Usage:
  python health_server.py [PORT] [--name NAME] [--not-serving]
                                       (or --port PORT; 0 or none: a free port)

Once bound it prints "listening on 127.0.0.1:PORT" on stdout. Stops on
SIGINT / SIGTERM (health turns NOT_SERVING first). Needs the stubs made by
interop/peers/python/setup_venv.sh; their directory is found from --gen_dir,
$INTEROP_GEN_DIR, or <venv of this interpreter>/gen.
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

SERVICE = "grpc.testing.TestService"
SERVER_KEY = "x-server"


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


def log(name, text):
    sys.stderr.write("health_server %s: %s\n" % (name, text))
    sys.stderr.flush()


class Health:
    """The TestService status, shared by the control RPCs and SIGUSR1."""

    def __init__(self, name, servicer, health_pb2, serving):
        self._name = name
        self._servicer = servicer
        self._pb2 = health_pb2
        self._lock = threading.Lock()
        self._serving = None
        self.set(serving, "start")

    def set(self, serving, why):
        with self._lock:
            self._serving = serving
            status = (self._pb2.HealthCheckResponse.SERVING if serving else
                      self._pb2.HealthCheckResponse.NOT_SERVING)
            self._servicer.set(SERVICE, status)
        log(self._name, "%s is %s (%s)" %
            (SERVICE, "SERVING" if serving else "NOT_SERVING", why))

    def flip(self, why):
        with self._lock:
            serving = not self._serving
        self.set(serving, why)


def build_servicers(grpc, name, health, empty_pb2, messages_pb2,
                    test_pb2_grpc):

    def tag(context):
        context.send_initial_metadata([(SERVER_KEY, name)])

    class TestServicer(test_pb2_grpc.TestServiceServicer):

        def EmptyCall(self, request, context):
            tag(context)
            return empty_pb2.Empty()

        def UnaryCall(self, request, context):
            if request.response_type != messages_pb2.COMPRESSABLE:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "unsupported response_type %d" % request.response_type)
            if request.response_size < 0:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "negative response size %d" % request.response_size)
            tag(context)
            return messages_pb2.SimpleResponse(payload=messages_pb2.Payload(
                type=messages_pb2.COMPRESSABLE,
                body=bytes(request.response_size)))

    class ControlServicer(test_pb2_grpc.XdsUpdateHealthServiceServicer):

        def SetServing(self, request, context):
            health.set(True, "SetServing from %s" % context.peer())
            return empty_pb2.Empty()

        def SetNotServing(self, request, context):
            health.set(False, "SetNotServing from %s" % context.peer())
            return empty_pb2.Empty()

    return TestServicer(), ControlServicer()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("port_arg", nargs="?", type=int, metavar="PORT",
                   help="port on 127.0.0.1 (0 or none: a free one)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--name", default=None,
                   help="sent as x-server (default: health-server-PORT)")
    p.add_argument("--not-serving", "--not_serving", dest="not_serving",
                   action="store_true",
                   help="start with %s NOT_SERVING" % SERVICE)
    p.add_argument("--gen_dir", default=_default_gen_dir())
    args = p.parse_args(argv)
    if args.port is not None and args.port_arg is not None:
        p.error("give the port once")
    port = args.port if args.port is not None else (args.port_arg or 0)

    import grpc
    from grpc_health.v1 import health as grpc_health
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    empty_pb2, messages_pb2, test_pb2_grpc = load_stubs(args.gen_dir)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    bound = server.add_insecure_port("127.0.0.1:%d" % port)
    if bound == 0:
        raise SystemExit("health_server: cannot listen on 127.0.0.1:%d" %
                         port)
    name = args.name or "health-server-%d" % bound

    health_servicer = grpc_health.HealthServicer()
    health = Health(name, health_servicer, health_pb2, not args.not_serving)
    test_servicer, control_servicer = build_servicers(
        grpc, name, health, empty_pb2, messages_pb2, test_pb2_grpc)
    test_pb2_grpc.add_TestServiceServicer_to_server(test_servicer, server)
    test_pb2_grpc.add_XdsUpdateHealthServiceServicer_to_server(
        control_servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The handler runs on the main thread, between the waits below.
    signal.signal(signal.SIGUSR1, lambda *_: health.flip("SIGUSR1"))
    server.start()
    sys.stdout.write("listening on 127.0.0.1:%d\n" % bound)
    sys.stdout.flush()
    while not stop.wait(3600):
        pass
    log(name, "stopping")
    health_servicer.enter_graceful_shutdown()
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
