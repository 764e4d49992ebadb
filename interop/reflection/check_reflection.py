#!/usr/bin/env python3
"""grpcio-reflection's client against a server's reflection service.

Describes a server the way Python tools do: grpcio-reflection's
ProtoReflectionDescriptorDatabase asks the server's reflection service, and
a protobuf DescriptorPool built on it loads the files it answers with (and
so checks that they are well-formed and complete). Meant for ferrogrpc's
interop_server, once over each protocol version:

  v1alpha   grpcio-reflection's client as it is
  v1        the same client on grpc.reflection.v1.ServerReflection:
            grpcio-reflection ships only v1alpha's stubs, and the two
            versions' messages are the same on the wire, so its messages
            are sent on v1's method

Checks, one stdout line each, "PASS VERSION check" or
"FAIL VERSION check: why":

  list_services              the list holds grpc.testing.TestService and both
                             reflection services, and not
                             grpc.testing.UnimplementedService (not served)
  describe SERVICE           the pool finds each listed service
  method SERVICE.METHOD      each method's input and output types resolve to
                             message types in the pool
  file_by_filename           grpc/testing/test.proto comes by name and
                             defines grpc.testing.TestService
  unknown_symbol             an unknown symbol is NOT_FOUND

Usage:
  python check_reflection.py HOST:PORT [--version v1|v1alpha ...]

Exit status: 0 if every check passed, 1 otherwise, 2 on bad arguments.
Needs grpcio and grpcio-reflection (interop/peers/python/setup_venv.sh
installs them).
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

VERSIONS = ("v1", "v1alpha")
REQUIRED_SERVICES = (
    "grpc.testing.TestService",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
)
NOT_SERVED = "grpc.testing.UnimplementedService"
V1_METHOD = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"


class _V1Stub:
    """A ServerReflectionStub that calls v1's method with v1alpha's
    (wire-identical) messages."""

    def __init__(self, channel):
        self.ServerReflectionInfo = channel.stream_stream(
            V1_METHOD,
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )


def database(channel, version):
    db = ProtoReflectionDescriptorDatabase(channel)
    if version == "v1":
        # The database keeps its stub in _stub (grpcio-reflection is pinned
        # in setup_venv.sh); fail loudly if that ever changes.
        if not hasattr(db, "_stub"):
            raise RuntimeError("ProtoReflectionDescriptorDatabase has no _stub")
        db._stub = _V1Stub(channel)
    return db


class Checks:
    def __init__(self):
        self.failed = 0

    def passed(self, version, name):
        print(f"PASS {version} {name}", flush=True)

    def fail(self, version, name, why):
        self.failed += 1
        why = " ".join(str(why).split())
        print(f"FAIL {version} {name}: {why}", flush=True)


def check_version(channel, version, checks):
    db = database(channel, version)
    pool = descriptor_pool.DescriptorPool(db)

    try:
        services = list(db.get_services())
    except Exception as e:  # noqa: BLE001 - any failure is the check's
        checks.fail(version, "list_services", repr(e))
        return
    print(f"{version}: services {services}", file=sys.stderr)
    missing = [s for s in REQUIRED_SERVICES if s not in services]
    if missing:
        checks.fail(version, "list_services", f"missing {missing} in {services}")
    elif NOT_SERVED in services:
        checks.fail(version, "list_services", f"{NOT_SERVED} is listed but not served")
    else:
        checks.passed(version, "list_services")

    for service in services:
        try:
            descriptor = pool.FindServiceByName(service)
        except Exception as e:  # noqa: BLE001
            checks.fail(version, f"describe {service}", repr(e))
            continue
        checks.passed(version, f"describe {service}")
        for method in descriptor.methods:
            name = f"method {method.full_name}"
            try:
                types = []
                for t in (method.input_type, method.output_type):
                    found = pool.FindMessageTypeByName(t.full_name)
                    if found.full_name != t.full_name:
                        raise AssertionError(f"{t.full_name} resolved to {found.full_name}")
                    types.append(t.full_name)
                print(f"{version}: {method.full_name}({types[0]}) -> {types[1]}", file=sys.stderr)
            except Exception as e:  # noqa: BLE001
                checks.fail(version, name, repr(e))
                continue
            checks.passed(version, name)

    try:
        test_proto = db.FindFileByName("grpc/testing/test.proto")
        names = [s.name for s in test_proto.service]
        if test_proto.package != "grpc.testing" or "TestService" not in names:
            raise AssertionError(f"package {test_proto.package!r}, services {names}")
        checks.passed(version, "file_by_filename")
    except Exception as e:  # noqa: BLE001
        checks.fail(version, "file_by_filename", repr(e))

    try:
        db.FindFileContainingSymbol("grpc.testing.NoSuchThing")
        checks.fail(version, "unknown_symbol", "grpc.testing.NoSuchThing was found")
    except KeyError:
        # The database raises KeyError only for a NOT_FOUND error_response
        # (it asserts the code).
        checks.passed(version, "unknown_symbol")
    except Exception as e:  # noqa: BLE001
        checks.fail(version, "unknown_symbol", repr(e))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("target", help="HOST:PORT of the server")
    parser.add_argument(
        "--version",
        action="append",
        choices=VERSIONS,
        help="protocol version to check (repeatable; default: both)",
    )
    try:
        args = parser.parse_args()
    except SystemExit as e:
        sys.exit(2 if e.code else 0)

    checks = Checks()
    with grpc.insecure_channel(args.target) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=20)
        except grpc.FutureTimeoutError:
            checks.fail("-", "connect", f"{args.target} not ready within 20 s")
            sys.exit(1)
        for version in args.version or VERSIONS:
            check_version(channel, version, checks)
    sys.exit(1 if checks.failed else 0)


if __name__ == "__main__":
    main()
