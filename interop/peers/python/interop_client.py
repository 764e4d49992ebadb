#!/usr/bin/env python3
"""grpcio (gRPC C core) interop test client, used as a peer for ferrogrpc.

Runs the offline test cases of the gRPC interop test description against a
server implementing grpc.testing.TestService.

Output contract (stdout; everything else goes to stderr):
  exactly one line per case, in the order run:
    CASE_NAME PASS
    CASE_NAME PASS <note>      checks this client cannot make are named in
                               the note, everything else was checked
    CASE_NAME FAIL <reason>
    CASE_NAME SKIP <reason>    case not applicable against this peer
  Parsers must look at the first two space-separated fields only.
  Exit status: 0 if no case failed, 1 if any case failed, 2 on bad usage.

Usage:
  python interop_client.py --server_host 127.0.0.1 --server_port 50051 \\
      --test_case all|NAME|NAME,NAME...

Needs the stubs made by setup_venv.sh; their directory is found from
--gen_dir, $INTEROP_GEN_DIR, or <venv of this interpreter>/gen.
"""

import argparse
import os
import queue
import sys
import threading
import time
import traceback

# Order used for --test_case all.
ALL_CASES = (
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "cancel_after_begin",
    "cancel_after_first_response",
    "timeout_on_sleeping_server",
    "custom_metadata",
    "status_code_and_message",
    "special_status_message",
    "unimplemented_method",
    "unimplemented_service",
    "rpc_soak",
    "channel_soak",
    "concurrent_large_unary",
)

LARGE_REQ = 271828
LARGE_RESP = 314159
ECHO_INITIAL_KEY = "x-grpc-test-echo-initial"
ECHO_INITIAL_VALUE = "test_initial_metadata_value"
ECHO_TRAILING_KEY = "x-grpc-test-echo-trailing-bin"
ECHO_TRAILING_VALUE = b"\xab\xab\xab"
SPECIAL_MESSAGE = ("\t\ntest with whitespace\r\nand Unicode BMP \u263a "
                   "and non-BMP \U0001f608\t\n")

NOTE_NO_FLAG = ("partial: response compression flag not observable from "
                "grpcio; sizes and contents checked")


class CaseFailed(Exception):
    """A case's assertion did not hold."""


class CaseSkipped(Exception):
    """The case (or its key check) does not apply against this peer."""


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
    """Import the generated grpc.testing modules (see interop_server.py)."""
    import grpc

    pkg_dir = os.path.join(os.path.abspath(gen_dir), "grpc")
    if not os.path.isdir(os.path.join(pkg_dir, "testing")):
        raise SystemExit(
            "generated stubs not found under %s (run setup_venv.sh)" % gen_dir)
    if pkg_dir not in grpc.__path__:
        grpc.__path__.append(pkg_dir)
    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc
    return empty_pb2, messages_pb2, test_pb2_grpc


def parse_additional_metadata(text):
    """'k1:v1;k2:v2' -> [(k1, v1), (k2, v2)]; '-bin' values sent as bytes."""
    pairs = []
    if not text:
        return pairs
    for item in text.split(";"):
        if not item:
            continue
        key, sep, value = item.partition(":")
        if not sep or not key:
            raise argparse.ArgumentTypeError(
                "bad --additional_metadata entry %r (want key:value)" % item)
        key = key.strip().lower()
        pairs.append((key, value.encode("utf-8")
                      if key.endswith("-bin") else value))
    return pairs


class RequestQueue:
    """Request iterator fed by the test, for lock-step streaming calls."""

    _END = object()

    def __init__(self):
        self._queue = queue.Queue()

    def put(self, message):
        self._queue.put(message)

    def close(self):
        """Half-close (also unblocks grpcio's sender thread after a cancel)."""
        self._queue.put(self._END)

    def __iter__(self):
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            raise StopIteration
        return item


class Client:
    def __init__(self, args, grpc, empty_pb2, messages_pb2, test_pb2_grpc):
        self.args = args
        self.grpc = grpc
        self.empty_pb2 = empty_pb2
        self.pb = messages_pb2
        self.test_grpc = test_pb2_grpc
        self.extra_md = parse_additional_metadata(args.additional_metadata)
        self.timeout = args.rpc_timeout_seconds
        self.channel = self.make_channel()
        self.stub = test_pb2_grpc.TestServiceStub(self.channel)

    # ----- plumbing -------------------------------------------------------

    def make_channel(self):
        grpc = self.grpc
        args = self.args
        target = "%s:%d" % (args.server_host, args.server_port)
        if ":" in args.server_host and not args.server_host.startswith("["):
            target = "[%s]:%d" % (args.server_host, args.server_port)
        options = [
            ("grpc.max_receive_message_length", 16 * 1024 * 1024),
            ("grpc.max_send_message_length", 16 * 1024 * 1024),
            # A fresh connection per channel (needed by channel_soak, and
            # keeps one case's channel state out of another's).
            ("grpc.use_local_subchannel_pool", 1),
        ]
        if args.service_config_json:
            options.append(("grpc.service_config", args.service_config_json))
            options.append(("grpc.service_config_disable_resolution", 1))
        if args.server_host_override:
            options.append(("grpc.default_authority",
                            args.server_host_override))
        if not args.use_tls:
            return grpc.insecure_channel(target, options=options)
        root = None
        if args.ca_file:
            with open(args.ca_file, "rb") as f:
                root = f.read()
        elif args.use_test_ca:
            raise SystemExit("--use_test_ca true needs --ca_file PATH")
        if args.server_host_override:
            options.append(("grpc.ssl_target_name_override",
                            args.server_host_override))
        creds = grpc.ssl_channel_credentials(root_certificates=root)
        return grpc.secure_channel(target, creds, options=options)

    def md(self, *pairs):
        return tuple(self.extra_md) + tuple(pairs)

    def payload(self, size):
        return self.pb.Payload(type=self.pb.COMPRESSABLE, body=bytes(size))

    def check_payload(self, payload, size, what="response"):
        if payload.type != self.pb.COMPRESSABLE:
            raise CaseFailed("%s payload type %d, want COMPRESSABLE"
                             % (what, payload.type))
        if len(payload.body) != size:
            raise CaseFailed("%s payload is %d bytes, want %d"
                             % (what, len(payload.body), size))
        if payload.body.count(0) != size:
            raise CaseFailed("%s payload is not all zeros" % what)

    def large_request(self, **fields):
        return self.pb.SimpleRequest(response_type=self.pb.COMPRESSABLE,
                                     response_size=LARGE_RESP,
                                     payload=self.payload(LARGE_REQ),
                                     **fields)

    def expect_error(self, fn, code, what):
        """Run fn, which must fail with status `code`; return the error."""
        try:
            fn()
        except self.grpc.RpcError as err:
            if err.code() != code:
                raise CaseFailed("%s: got %s (%r), want %s"
                                 % (what, err.code(), err.details(), code))
            return err
        raise CaseFailed("%s: succeeded, want %s" % (what, code))

    def ok(self, fn, what):
        """Run fn, turning a gRPC error into a readable failure."""
        try:
            return fn()
        except self.grpc.RpcError as err:
            raise CaseFailed("%s: %s %r" % (what, err.code(), err.details()))

    # ----- cases ------------------------------------------------------------

    def empty_unary(self):
        resp = self.ok(lambda: self.stub.EmptyCall(
            self.empty_pb2.Empty(), timeout=self.timeout, metadata=self.md()),
            "EmptyCall")
        if not isinstance(resp, self.empty_pb2.Empty):
            raise CaseFailed("response is not grpc.testing.Empty")

    def large_unary(self):
        resp = self.ok(lambda: self.stub.UnaryCall(
            self.large_request(), timeout=self.timeout, metadata=self.md()),
            "UnaryCall")
        self.check_payload(resp.payload, LARGE_RESP)

    def client_compressed_unary(self):
        grpc = self.grpc
        bv = self.pb.BoolValue
        # 1. Probe: uncompressed request that claims to be compressed.
        probe_rejected = True
        try:
            self.stub.UnaryCall(
                self.large_request(expect_compressed=bv(value=True)),
                timeout=self.timeout, metadata=self.md(),
                compression=grpc.Compression.NoCompression)
            probe_rejected = False
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise CaseFailed("probe: got %s (%r), want INVALID_ARGUMENT"
                                 % (err.code(), err.details()))
        if not probe_rejected and self.args.server_checks_compressed_requests:
            raise CaseFailed("probe: uncompressed request with "
                             "expect_compressed=true succeeded, want "
                             "INVALID_ARGUMENT")
        # 2. Compressed request.
        resp = self.ok(lambda: self.stub.UnaryCall(
            self.large_request(expect_compressed=bv(value=True)),
            timeout=self.timeout, metadata=self.md(),
            compression=grpc.Compression.Gzip), "compressed UnaryCall")
        self.check_payload(resp.payload, LARGE_RESP)
        # 3. Uncompressed request.
        resp = self.ok(lambda: self.stub.UnaryCall(
            self.large_request(expect_compressed=bv(value=False)),
            timeout=self.timeout, metadata=self.md(),
            compression=grpc.Compression.NoCompression),
            "uncompressed UnaryCall")
        self.check_payload(resp.payload, LARGE_RESP)
        if not probe_rejected:
            raise CaseSkipped("server cannot check request compression "
                              "(probe accepted); compressed and uncompressed "
                              "calls succeeded")

    def server_compressed_unary(self):
        for want in (True, False):
            req = self.large_request(
                response_compressed=self.pb.BoolValue(value=want))
            resp = self.ok(lambda: self.stub.UnaryCall(
                req, timeout=self.timeout, metadata=self.md()),
                "UnaryCall(response_compressed=%s)" % want)
            self.check_payload(resp.payload, LARGE_RESP)
        return NOTE_NO_FLAG

    def client_streaming(self):
        sizes = (27182, 8, 1828, 45904)
        reqs = [self.pb.StreamingInputCallRequest(payload=self.payload(n))
                for n in sizes]
        resp = self.ok(lambda: self.stub.StreamingInputCall(
            iter(reqs), timeout=self.timeout, metadata=self.md()),
            "StreamingInputCall")
        if resp.aggregated_payload_size != 74922:
            raise CaseFailed("aggregated_payload_size %d, want 74922"
                             % resp.aggregated_payload_size)

    def client_compressed_streaming(self):
        grpc = self.grpc
        bv = self.pb.BoolValue
        req = self.pb.StreamingInputCallRequest
        probe_rejected = True
        try:
            self.stub.StreamingInputCall(
                iter([req(expect_compressed=bv(value=True),
                          payload=self.payload(27182))]),
                timeout=self.timeout, metadata=self.md(),
                compression=grpc.Compression.NoCompression)
            probe_rejected = False
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise CaseFailed("probe: got %s (%r), want INVALID_ARGUMENT"
                                 % (err.code(), err.details()))
        if not probe_rejected and self.args.server_checks_compressed_requests:
            raise CaseFailed("probe: uncompressed message with "
                             "expect_compressed=true was accepted, want "
                             "INVALID_ARGUMENT")
        msgs = [req(expect_compressed=bv(value=True),
                    payload=self.payload(27182)),
                req(expect_compressed=bv(value=False),
                    payload=self.payload(45904))]
        resp = self.ok(lambda: self.stub.StreamingInputCall(
            iter(msgs), timeout=self.timeout, metadata=self.md(),
            compression=grpc.Compression.Gzip), "StreamingInputCall")
        if resp.aggregated_payload_size != 73086:
            raise CaseFailed("aggregated_payload_size %d, want 73086"
                             % resp.aggregated_payload_size)
        note = ("the expect_compressed=false message was sent gzip-compressed "
                "too: grpcio cannot switch compression off per message on "
                "the client")
        if not probe_rejected:
            raise CaseSkipped("server cannot check request compression "
                              "(probe accepted); compressed call succeeded; "
                              + note)
        return "partial: " + note

    def server_streaming(self):
        sizes = (31415, 9, 2653, 58979)
        req = self.pb.StreamingOutputCallRequest(
            response_type=self.pb.COMPRESSABLE,
            response_parameters=[self.pb.ResponseParameters(size=n)
                                 for n in sizes])
        resps = self.ok(lambda: list(self.stub.StreamingOutputCall(
            req, timeout=self.timeout, metadata=self.md())),
            "StreamingOutputCall")
        self.check_stream(resps, sizes)

    def check_stream(self, resps, sizes):
        if len(resps) != len(sizes):
            raise CaseFailed("got %d responses, want %d"
                             % (len(resps), len(sizes)))
        for i, (resp, size) in enumerate(zip(resps, sizes)):
            self.check_payload(resp.payload, size, "response %d" % i)

    def server_compressed_streaming(self):
        params = [(True, 31415), (False, 92653)]
        req = self.pb.StreamingOutputCallRequest(
            response_type=self.pb.COMPRESSABLE,
            response_parameters=[
                self.pb.ResponseParameters(
                    size=n, compressed=self.pb.BoolValue(value=c))
                for c, n in params])
        resps = self.ok(lambda: list(self.stub.StreamingOutputCall(
            req, timeout=self.timeout, metadata=self.md())),
            "StreamingOutputCall")
        self.check_stream(resps, [n for _, n in params])
        return NOTE_NO_FLAG

    def ping_pong(self):
        steps = ((31415, 27182), (9, 8), (2653, 1828), (58979, 45904))
        requests = RequestQueue()
        call = self.stub.FullDuplexCall(requests, timeout=self.timeout,
                                        metadata=self.md())
        try:
            for i, (resp_size, req_size) in enumerate(steps):
                requests.put(self.pb.StreamingOutputCallRequest(
                    response_type=self.pb.COMPRESSABLE,
                    response_parameters=[
                        self.pb.ResponseParameters(size=resp_size)],
                    payload=self.payload(req_size)))
                try:
                    resp = next(call)
                except StopIteration:
                    raise CaseFailed("stream ended after %d responses" % i)
                except self.grpc.RpcError as err:
                    raise CaseFailed("response %d: %s %r"
                                     % (i, err.code(), err.details()))
                self.check_payload(resp.payload, resp_size, "response %d" % i)
            requests.close()
            extra = self.ok(lambda: list(call), "after half-close")
            if extra:
                raise CaseFailed("%d unexpected extra responses" % len(extra))
        finally:
            requests.close()
            call.cancel()

    def empty_stream(self):
        call = self.stub.FullDuplexCall(iter(()), timeout=self.timeout,
                                        metadata=self.md())
        resps = self.ok(lambda: list(call), "FullDuplexCall")
        if resps:
            raise CaseFailed("got %d responses, want 0" % len(resps))

    def cancel_after_begin(self):
        requests = RequestQueue()
        future = self.stub.StreamingInputCall.future(
            requests, timeout=self.timeout, metadata=self.md())
        try:
            future.cancel()
            code = future.code()
            if code != self.grpc.StatusCode.CANCELLED:
                raise CaseFailed("status %s, want CANCELLED" % code)
            if not future.cancelled():
                raise CaseFailed("call does not report itself cancelled")
        finally:
            requests.close()

    def cancel_after_first_response(self):
        requests = RequestQueue()
        call = self.stub.FullDuplexCall(requests, timeout=self.timeout,
                                        metadata=self.md())
        try:
            requests.put(self.pb.StreamingOutputCallRequest(
                response_type=self.pb.COMPRESSABLE,
                response_parameters=[self.pb.ResponseParameters(size=31415)],
                payload=self.payload(27182)))
            try:
                resp = next(call)
            except StopIteration:
                raise CaseFailed("stream ended before the first response")
            except self.grpc.RpcError as err:
                raise CaseFailed("first response: %s %r"
                                 % (err.code(), err.details()))
            self.check_payload(resp.payload, 31415)
            call.cancel()
            if call.code() != self.grpc.StatusCode.CANCELLED:
                raise CaseFailed("status %s, want CANCELLED" % call.code())
        finally:
            requests.close()

    def timeout_on_sleeping_server(self):
        requests = RequestQueue()
        call = self.stub.FullDuplexCall(requests, timeout=0.001,
                                        metadata=self.md())
        try:
            requests.put(self.pb.StreamingOutputCallRequest(
                response_type=self.pb.COMPRESSABLE,
                payload=self.payload(27182)))
            self.expect_error(lambda: list(call),
                              self.grpc.StatusCode.DEADLINE_EXCEEDED,
                              "FullDuplexCall with a 1ms deadline")
        finally:
            requests.close()
            call.cancel()

    def check_echoed_metadata(self, call, what):
        initial = [v for k, v in (call.initial_metadata() or ())
                   if k == ECHO_INITIAL_KEY]
        trailing = [v for k, v in (call.trailing_metadata() or ())
                    if k == ECHO_TRAILING_KEY]
        if initial != [ECHO_INITIAL_VALUE]:
            raise CaseFailed("%s: initial metadata %s=%r, want [%r]"
                             % (what, ECHO_INITIAL_KEY, initial,
                                ECHO_INITIAL_VALUE))
        if trailing != [ECHO_TRAILING_VALUE]:
            raise CaseFailed("%s: trailing metadata %s=%r, want [%r]"
                             % (what, ECHO_TRAILING_KEY, trailing,
                                ECHO_TRAILING_VALUE))

    def custom_metadata(self):
        echo = self.md((ECHO_INITIAL_KEY, ECHO_INITIAL_VALUE),
                       (ECHO_TRAILING_KEY, ECHO_TRAILING_VALUE))
        resp, call = self.ok(lambda: self.stub.UnaryCall.with_call(
            self.large_request(), timeout=self.timeout, metadata=echo),
            "UnaryCall")
        self.check_payload(resp.payload, LARGE_RESP)
        self.check_echoed_metadata(call, "UnaryCall")

        req = self.pb.StreamingOutputCallRequest(
            response_type=self.pb.COMPRESSABLE,
            response_parameters=[self.pb.ResponseParameters(size=LARGE_RESP)],
            payload=self.payload(LARGE_REQ))
        call = self.stub.FullDuplexCall(iter([req]), timeout=self.timeout,
                                        metadata=echo)
        resps = self.ok(lambda: list(call), "FullDuplexCall")
        self.check_stream(resps, [LARGE_RESP])
        self.check_echoed_metadata(call, "FullDuplexCall")

    def _check_echo_status(self, message, full_duplex):
        code = self.grpc.StatusCode.UNKNOWN  # numeric 2
        status = self.pb.EchoStatus(code=2, message=message)
        err = self.expect_error(
            lambda: self.stub.UnaryCall(
                self.pb.SimpleRequest(response_status=status),
                timeout=self.timeout, metadata=self.md()),
            code, "UnaryCall")
        if err.details() != message:
            raise CaseFailed("UnaryCall: status message %r, want %r"
                             % (err.details(), message))
        if not full_duplex:
            return
        call = self.stub.FullDuplexCall(
            iter([self.pb.StreamingOutputCallRequest(response_status=status)]),
            timeout=self.timeout, metadata=self.md())
        err = self.expect_error(lambda: list(call), code, "FullDuplexCall")
        if err.details() != message:
            raise CaseFailed("FullDuplexCall: status message %r, want %r"
                             % (err.details(), message))

    def status_code_and_message(self):
        self._check_echo_status("test status message", full_duplex=True)

    def special_status_message(self):
        self._check_echo_status(SPECIAL_MESSAGE, full_duplex=False)

    def unimplemented_method(self):
        self.expect_error(
            lambda: self.stub.UnimplementedCall(
                self.empty_pb2.Empty(), timeout=self.timeout,
                metadata=self.md()),
            self.grpc.StatusCode.UNIMPLEMENTED,
            "TestService/UnimplementedCall")

    def unimplemented_service(self):
        stub = self.test_grpc.UnimplementedServiceStub(self.channel)
        self.expect_error(
            lambda: stub.UnimplementedCall(
                self.empty_pb2.Empty(), timeout=self.timeout,
                metadata=self.md()),
            self.grpc.StatusCode.UNIMPLEMENTED,
            "UnimplementedService/UnimplementedCall")

    def _soak(self, fresh_channel):
        a = self.args
        iterations = a.soak_iterations
        max_latency = a.soak_per_iteration_max_acceptable_latency_ms / 1000.0
        overall = a.soak_overall_timeout_seconds
        gap = a.soak_min_time_ms_between_rpcs / 1000.0
        req = self.pb.SimpleRequest(response_type=self.pb.COMPRESSABLE,
                                    response_size=a.soak_response_size,
                                    payload=self.payload(a.soak_request_size))
        start = time.monotonic()
        done = failures = 0
        worst = 0.0
        first_error = None
        for i in range(iterations):
            left = overall - (time.monotonic() - start)
            if left <= 0:
                break
            t0 = time.monotonic()
            channel = self.make_channel() if fresh_channel else self.channel
            error = None
            try:
                stub = self.test_grpc.TestServiceStub(channel)
                resp = stub.UnaryCall(req, timeout=max(left, 0.001),
                                      metadata=self.md())
                self.check_payload(resp.payload, a.soak_response_size)
            except self.grpc.RpcError as err:
                error = "%s %r" % (err.code(), err.details())
            except CaseFailed as err:
                error = str(err)
            finally:
                if fresh_channel:
                    channel.close()
            latency = time.monotonic() - t0
            worst = max(worst, latency)
            if error is None and latency > max_latency:
                error = "latency %.0f ms > %.0f ms" % (latency * 1000,
                                                        max_latency * 1000)
            done += 1
            if error is not None:
                failures += 1
                first_error = first_error or "iteration %d: %s" % (i, error)
                print("soak iteration %d failed: %s" % (i, error),
                      file=sys.stderr)
            rest = gap - (time.monotonic() - t0)
            if rest > 0:
                time.sleep(rest)
        print("soak: %d/%d iterations, %d failed, worst latency %.1f ms, "
              "%.2f s total" % (done, iterations, failures, worst * 1000,
                                time.monotonic() - start), file=sys.stderr)
        if done < iterations:
            raise CaseFailed("only %d of %d iterations within the %.0f s "
                             "overall timeout" % (done, iterations, overall))
        if failures > a.soak_max_failures:
            raise CaseFailed("%d failed iterations (max %d); first: %s"
                             % (failures, a.soak_max_failures, first_error))

    def rpc_soak(self):
        self._soak(fresh_channel=False)

    def channel_soak(self):
        self._soak(fresh_channel=True)

    def concurrent_large_unary(self):
        count = self.args.concurrent_calls
        req = self.large_request()
        timeout = self.args.concurrent_timeout_seconds
        started = time.monotonic()
        futures = [self.stub.UnaryCall.future(req, timeout=timeout,
                                              metadata=self.md())
                   for _ in range(count)]
        failures = 0
        first_error = None
        for i, future in enumerate(futures):
            try:
                resp = future.result()
                self.check_payload(resp.payload, LARGE_RESP)
            except self.grpc.RpcError as err:
                failures += 1
                first_error = first_error or "call %d: %s %r" % (
                    i, err.code(), err.details())
            except CaseFailed as err:
                failures += 1
                first_error = first_error or "call %d: %s" % (i, err)
        print("concurrent_large_unary: %d calls in %.2f s, %d failed"
              % (count, time.monotonic() - started, failures),
              file=sys.stderr)
        if failures:
            raise CaseFailed("%d of %d calls failed; first: %s"
                             % (failures, count, first_error))


def run_case(client, name, limit):
    """Run one case in a helper thread, bounded by `limit` seconds.

    Returns (status, text) with status in PASS / FAIL / SKIP.
    """
    outcome = {}

    def body():
        try:
            note = getattr(client, name)()
            outcome["r"] = ("PASS", note or "")
        except CaseSkipped as err:
            outcome["r"] = ("SKIP", str(err))
        except CaseFailed as err:
            outcome["r"] = ("FAIL", str(err))
        except client.grpc.RpcError as err:
            outcome["r"] = ("FAIL", "unexpected RPC error %s %r"
                            % (err.code(), err.details()))
        except Exception as err:  # a bug in the case itself, still a FAIL
            traceback.print_exc(file=sys.stderr)
            outcome["r"] = ("FAIL", "exception %s: %s"
                            % (type(err).__name__, err))

    worker = threading.Thread(target=body, name=name, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        return ("FAIL", "case did not finish within %.0f s" % limit), True
    return outcome["r"], False


def one_line(text):
    return " ".join(text.split())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    boolflag = dict(type=_str2bool, nargs="?", const=True, default=False)
    p.add_argument("--server_host", default="localhost")
    p.add_argument("--server_port", type=int, required=True)
    p.add_argument("--server_host_override", default="")
    p.add_argument("--test_case", default="all",
                   help="case name, comma separated list, or 'all'")
    p.add_argument("--use_tls", **boolflag)
    p.add_argument("--use_test_ca", **boolflag)
    p.add_argument("--ca_file", default="")
    p.add_argument("--additional_metadata", default="",
                   help="key:value;key2:value2 added to every RPC")
    p.add_argument("--service_config_json", default="")
    p.add_argument("--soak_iterations", type=int, default=10)
    p.add_argument("--soak_max_failures", type=int, default=0)
    p.add_argument("--soak_per_iteration_max_acceptable_latency_ms", type=int,
                   default=1000)
    p.add_argument("--soak_overall_timeout_seconds", type=int, default=10)
    p.add_argument("--soak_min_time_ms_between_rpcs", type=int, default=0)
    p.add_argument("--soak_request_size", type=int, default=LARGE_REQ)
    p.add_argument("--soak_response_size", type=int, default=LARGE_RESP)
    # Knobs of this client (not part of the interop flag set).
    p.add_argument("--server_checks_compressed_requests", type=_str2bool,
                   nargs="?", const=True, default=True,
                   help="false: a server that accepts the uncompressed "
                        "client_compressed_* probe gives SKIP, not FAIL")
    p.add_argument("--concurrent_calls", type=int, default=1000)
    p.add_argument("--concurrent_timeout_seconds", type=float, default=60.0)
    p.add_argument("--rpc_timeout_seconds", type=float, default=10.0)
    p.add_argument("--case_timeout_seconds", type=float, default=60.0)
    p.add_argument("--gen_dir", default=_default_gen_dir())
    args = p.parse_args(argv)

    try:
        parse_additional_metadata(args.additional_metadata)
    except argparse.ArgumentTypeError as err:
        p.error(str(err))
    if args.test_case.strip() == "all":
        names = list(ALL_CASES)
    else:
        names = [n.strip() for n in args.test_case.split(",") if n.strip()]
    if not names:
        p.error("no test case given")

    import grpc
    client = Client(args, grpc, *load_stubs(args.gen_dir))

    any_fail = False
    stuck = False
    started = time.monotonic()
    for name in names:
        if name not in ALL_CASES:
            status, text = "FAIL", "unknown test case"
        else:
            limit = args.case_timeout_seconds
            if name.endswith("_soak"):
                limit = max(limit, args.soak_overall_timeout_seconds + 30)
            elif name == "concurrent_large_unary":
                limit = max(limit, args.concurrent_timeout_seconds + 30)
            t0 = time.monotonic()
            (status, text), timed_out = run_case(client, name, limit)
            stuck = stuck or timed_out
            print("[%s %.2fs]" % (name, time.monotonic() - t0),
                  file=sys.stderr)
        any_fail = any_fail or status == "FAIL"
        line = "%s %s" % (name, status)
        if text:
            line += " " + one_line(text)
        print(line, flush=True)
    print("interop_client: %d case(s) in %.1f s" %
          (len(names), time.monotonic() - started), file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    code = 1 if any_fail else 0
    if stuck:
        os._exit(code)  # a hung case's thread must not keep us alive
    client.channel.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
