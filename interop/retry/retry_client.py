#!/usr/bin/env python3
"""grpcio client checks of gRFC A6 retries against a flaky TestService.

Calls a grpc.testing.TestService that fails the first x-retry-fail attempts
of each call (ferrogrpc's retry_server, or flaky_server.py; see there for the
metadata protocol) over a grpcio (gRPC C core) channel with retries on and
this service config:

  grpc.testing.TestService: maxAttempts 4, initialBackoff 0.05s,
  maxBackoff 0.2s, backoffMultiplier 2, retryableStatusCodes [UNAVAILABLE]

So it checks the server side of retries: that the server reads
grpc-previous-rpc-attempts and that its grpc-retry-pushback-ms trailer is
understood by gRPC C core.

Checks, one stdout line each, "PASS name" or "FAIL name: why":

  no_retry_needed                  x-retry-fail 0 succeeds, x-attempts-seen 0
  unary_retry_succeeds             x-retry-fail 2 succeeds, x-attempts-seen 2
  server_streaming_retry_succeeds  the same for StreamingOutputCall
  client_streaming_retry_succeeds  the same for StreamingInputCall
  retry_gives_up_at_max_attempts   x-retry-fail 5 fails UNAVAILABLE on attempt 4
  pushback_stops_retries           x-retry-fail 2 with pushback -1 fails
                                   UNAVAILABLE on attempt 1 (control: the
                                   same call with x-retry-fail 1 and no
                                   pushback is retried and succeeds)
  pushback_delays_retry            x-retry-fail 1 with pushback 300 ms
                                   succeeds on attempt 2, >= 0.3 s after the
                                   call began

Usage:
  python retry_client.py HOST:PORT [--check NAME ...]

Exit status: 0 if every check passed, 1 otherwise, 2 on bad arguments.
Needs the stubs made by interop/peers/python/setup_venv.sh (found from
--gen_dir, $INTEROP_GEN_DIR, or <venv of this interpreter>/gen).
"""

import argparse
import json
import os
import re
import sys
import time

FAIL_KEY = "x-retry-fail"
PUSHBACK_KEY = "x-retry-pushback-ms"
ATTEMPTS_SEEN_KEY = "x-attempts-seen"
MAX_ATTEMPTS = 4
PUSHBACK_MS = 300
TIMER_SLACK_S = 0.01
RESPONSE_SIZE = 64

SERVICE_CONFIG = {
    "methodConfig": [{
        "name": [{"service": "grpc.testing.TestService"}],
        "retryPolicy": {
            "maxAttempts": MAX_ATTEMPTS,
            "initialBackoff": "0.05s",
            "maxBackoff": "0.2s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
}

ALL_CHECKS = [
    "no_retry_needed",
    "unary_retry_succeeds",
    "server_streaming_retry_succeeds",
    "client_streaming_retry_succeeds",
    "retry_gives_up_at_max_attempts",
    "pushback_stops_retries",
    "pushback_delays_retry",
]


class CheckFailed(Exception):
    pass


def _default_gen_dir():
    env = os.environ.get("INTEROP_GEN_DIR")
    if env:
        return env
    return os.path.join(sys.prefix, "gen")


def load_stubs(gen_dir):
    """Import the generated grpc.testing modules from gen_dir (see
    flaky_server.py)."""
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


class Checks(object):

    def __init__(self, grpc, messages_pb2, stub, timeout):
        self.grpc = grpc
        self.pb = messages_pb2
        self.stub = stub
        self.timeout = timeout

    # ----- helpers ---------------------------------------------------------

    @staticmethod
    def metadata(fail, pushback_ms=None):
        md = [(FAIL_KEY, str(fail))]
        if pushback_ms is not None:
            md.append((PUSHBACK_KEY, str(pushback_ms)))
        return md

    def describe(self, err):
        return "%s %r" % (err.code().name, err.details())

    @staticmethod
    def check_attempts_seen(initial_metadata, want):
        seen = [v for k, v in (initial_metadata or ()) if k == ATTEMPTS_SEEN_KEY]
        if not seen:
            raise CheckFailed("no %s in the response headers" % ATTEMPTS_SEEN_KEY)
        if seen != [str(want)]:
            raise CheckFailed("%s is %r, want %r" % (ATTEMPTS_SEEN_KEY, seen,
                                                     [str(want)]))

    def simple_request(self):
        return self.pb.SimpleRequest(response_type=self.pb.COMPRESSABLE,
                                     response_size=RESPONSE_SIZE)

    def unary(self, fail, pushback_ms=None):
        """UnaryCall; returns (response, call) or raises grpc.RpcError."""
        return self.stub.UnaryCall.with_call(
            self.simple_request(),
            metadata=self.metadata(fail, pushback_ms),
            timeout=self.timeout)

    def unary_succeeds(self, fail, pushback_ms=None):
        try:
            response, call = self.unary(fail, pushback_ms)
        except self.grpc.RpcError as err:
            raise CheckFailed("UnaryCall: %s" % self.describe(err))
        self.check_attempts_seen(call.initial_metadata(), fail)
        if len(response.payload.body) != RESPONSE_SIZE:
            raise CheckFailed("response payload is %d bytes, want %d" %
                              (len(response.payload.body), RESPONSE_SIZE))

    def unavailable_at(self, fail, pushback_ms, want_attempt):
        try:
            self.unary(fail, pushback_ms)
        except self.grpc.RpcError as err:
            if err.code() != self.grpc.StatusCode.UNAVAILABLE:
                raise CheckFailed("got %s, want UNAVAILABLE" % self.describe(err))
            m = re.match(r"attempt (\d+) ", err.details() or "")
            if not m:
                raise CheckFailed(
                    "UNAVAILABLE, but not from the server's failing "
                    "attempts: %s" % self.describe(err))
            if int(m.group(1)) != want_attempt:
                raise CheckFailed("the last attempt was attempt %s, want %d (%s)"
                                  % (m.group(1), want_attempt,
                                     self.describe(err)))
            return
        raise CheckFailed("succeeded, want UNAVAILABLE")

    # ----- checks ------------------------------------------------------------

    def no_retry_needed(self):
        self.unary_succeeds(0)

    def unary_retry_succeeds(self):
        self.unary_succeeds(2)

    def server_streaming_retry_succeeds(self):
        request = self.pb.StreamingOutputCallRequest(
            response_type=self.pb.COMPRESSABLE,
            response_parameters=[self.pb.ResponseParameters(size=8),
                                 self.pb.ResponseParameters(size=16)])
        call = self.stub.StreamingOutputCall(request,
                                             metadata=self.metadata(2),
                                             timeout=self.timeout)
        try:
            sizes = [len(r.payload.body) for r in call]
        except self.grpc.RpcError as err:
            raise CheckFailed("StreamingOutputCall: %s" % self.describe(err))
        self.check_attempts_seen(call.initial_metadata(), 2)
        if sizes != [8, 16]:
            raise CheckFailed("response payload sizes %r, want [8, 16]" % sizes)

    def client_streaming_retry_succeeds(self):
        requests = [
            self.pb.StreamingInputCallRequest(payload=self.pb.Payload(
                type=self.pb.COMPRESSABLE, body=bytes(n))) for n in (8, 16)
        ]
        try:
            response, call = self.stub.StreamingInputCall.with_call(
                iter(requests), metadata=self.metadata(2), timeout=self.timeout)
        except self.grpc.RpcError as err:
            raise CheckFailed("StreamingInputCall: %s" % self.describe(err))
        self.check_attempts_seen(call.initial_metadata(), 2)
        if response.aggregated_payload_size != 24:
            raise CheckFailed("aggregated_payload_size %d, want 24" %
                              response.aggregated_payload_size)

    def retry_gives_up_at_max_attempts(self):
        self.unavailable_at(MAX_ATTEMPTS + 1, None, MAX_ATTEMPTS)

    def pushback_stops_retries(self):
        # Without this control, a client that never retries would pass.
        try:
            self.unary_succeeds(1)
        except CheckFailed as err:
            raise CheckFailed("control call without pushback (x-retry-fail 1): "
                              "%s" % err)
        self.unavailable_at(2, -1, 1)

    def pushback_delays_retry(self):
        start = time.monotonic()
        self.unary_succeeds(1, PUSHBACK_MS)
        took = time.monotonic() - start
        if took + TIMER_SLACK_S < PUSHBACK_MS / 1000.0:
            raise CheckFailed("succeeded after %.3f s, before the %.3f s "
                              "pushback" % (took, PUSHBACK_MS / 1000.0))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", help="HOST:PORT of the flaky server")
    p.add_argument("--check", action="append", choices=ALL_CHECKS,
                   help="run only this check (repeatable; default: all)")
    p.add_argument("--rpc_timeout_seconds", type=float, default=10.0)
    p.add_argument("--gen_dir", default=_default_gen_dir())
    args = p.parse_args(argv)

    import grpc
    _, messages_pb2, test_pb2_grpc = load_stubs(args.gen_dir)
    channel = grpc.insecure_channel(args.target, options=[
        ("grpc.enable_retries", 1),
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ])
    checks = Checks(grpc, messages_pb2, test_pb2_grpc.TestServiceStub(channel),
                    args.rpc_timeout_seconds)
    failed = 0
    for name in args.check or ALL_CHECKS:
        try:
            getattr(checks, name)()
        except CheckFailed as err:
            failed += 1
            print("FAIL %s: %s" % (name, " ".join(str(err).split())))
        except Exception as err:  # a bug here, or an unexpected RpcError
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(err).__name__,
                                       " ".join(str(err).split())))
        else:
            print("PASS %s" % name)
        sys.stdout.flush()
    channel.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
