#!/usr/bin/env python3
"""grpcio's health client against a server's grpc.health.v1.Health service.

Run by interop/run-health.sh against ferrogrpc's interop_server, which must
report the server as a whole ("") and grpc.testing.TestService SERVING.

Checks, one stdout line each, "PASS name" or "FAIL name: why":

  check_server_serving         Check("") is SERVING
  check_service_serving        Check("grpc.testing.TestService") is SERVING
  check_unknown_not_found      Check("no.such.Service") fails with NOT_FOUND
  watch_service_serving        Watch("grpc.testing.TestService") sends
                               SERVING first (the watch is then cancelled)
  watch_unknown_service_unknown  Watch("no.such.Service") sends
                               SERVICE_UNKNOWN first (no error)

Usage:
  python check_health.py HOST:PORT [--timeout SECONDS] [--check NAME ...]

Exit status: 0 if every check passed, 1 otherwise, 2 on bad arguments.
Needs grpcio and grpcio-health-checking (interop/peers/python/setup_venv.sh
installs both); no generated stubs.
"""

import argparse
import sys

SERVICE = "grpc.testing.TestService"
UNKNOWN = "no.such.Service"

ALL_CHECKS = [
    "check_server_serving",
    "check_service_serving",
    "check_unknown_not_found",
    "watch_service_serving",
    "watch_unknown_service_unknown",
]


class CheckFailed(Exception):
    pass


def describe(err):
    """A grpc.RpcError as "CODE 'details'"."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return "%s %r" % (code.name if code is not None else "?", details)


class Checks:

    def __init__(self, grpc, health_pb2, stub, timeout):
        self.grpc = grpc
        self.pb2 = health_pb2
        self.stub = stub
        self.timeout = timeout

    def status_name(self, status):
        return self.pb2.HealthCheckResponse.ServingStatus.Name(status)

    def check(self, service, want):
        request = self.pb2.HealthCheckRequest(service=service)
        try:
            response = self.stub.Check(request, timeout=self.timeout)
        except self.grpc.RpcError as err:
            raise CheckFailed("Check(%r): %s" % (service, describe(err)))
        if response.status != want:
            raise CheckFailed("Check(%r) is %s, want %s" %
                              (service, self.status_name(response.status),
                               self.status_name(want)))

    def first_watched(self, service, want):
        request = self.pb2.HealthCheckRequest(service=service)
        call = self.stub.Watch(request, timeout=self.timeout)
        try:
            first = next(call)
        except StopIteration:
            raise CheckFailed(
                "Watch(%r) ended with OK before sending a status" % service)
        except self.grpc.RpcError as err:
            raise CheckFailed("Watch(%r): %s" % (service, describe(err)))
        finally:
            call.cancel()
        if first.status != want:
            raise CheckFailed("Watch(%r) sent %s first, want %s" %
                              (service, self.status_name(first.status),
                               self.status_name(want)))

    def check_server_serving(self):
        self.check("", self.pb2.HealthCheckResponse.SERVING)

    def check_service_serving(self):
        self.check(SERVICE, self.pb2.HealthCheckResponse.SERVING)

    def check_unknown_not_found(self):
        request = self.pb2.HealthCheckRequest(service=UNKNOWN)
        try:
            response = self.stub.Check(request, timeout=self.timeout)
        except self.grpc.RpcError as err:
            if err.code() != self.grpc.StatusCode.NOT_FOUND:
                raise CheckFailed("Check(%r): %s, want NOT_FOUND" %
                                  (UNKNOWN, describe(err)))
            return
        raise CheckFailed("Check(%r) answered %s, want NOT_FOUND" %
                          (UNKNOWN, self.status_name(response.status)))

    def watch_service_serving(self):
        self.first_watched(SERVICE, self.pb2.HealthCheckResponse.SERVING)

    def watch_unknown_service_unknown(self):
        self.first_watched(UNKNOWN,
                           self.pb2.HealthCheckResponse.SERVICE_UNKNOWN)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", metavar="HOST:PORT")
    p.add_argument("--timeout", type=float, default=5.0,
                   help="deadline of each RPC in seconds (default 5)")
    p.add_argument("--check", action="append", choices=ALL_CHECKS,
                   help="run only these checks (repeatable)")
    args = p.parse_args(argv)

    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    failed = 0
    with grpc.insecure_channel(args.target) as channel:
        checks = Checks(grpc, health_pb2,
                        health_pb2_grpc.HealthStub(channel), args.timeout)
        for name in args.check or ALL_CHECKS:
            try:
                getattr(checks, name)()
            except CheckFailed as err:
                failed += 1
                print("FAIL %s: %s" % (name, " ".join(str(err).split())))
            except Exception as err:  # a bug here is a failed check too
                failed += 1
                print("FAIL %s: %s: %s" % (name, type(err).__name__, err))
            else:
                print("PASS %s" % name)
            sys.stdout.flush()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
