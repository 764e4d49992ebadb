#!/usr/bin/env python3
"""grpcio's rich error details reader against a server's failed calls.

Run by interop/run-error-details.sh against ferrogrpc's error_details_server
(which attaches the details with Status::with_error_details); reads them the
way grpcio users do, with grpc_status.rpc_status.from_call and
google.protobuf.Any.Unpack. Checks, one stdout line each, "PASS name" or
"FAIL name: why":

  unary_status        UnaryCall fails with INVALID_ARGUMENT and the expected
                      message (not ASCII)
  unary_from_call     rpc_status.from_call gives a google.rpc.Status whose
                      code and message are the call's (it raises ValueError
                      when they differ, returns None without details)
  unary_all_details   its details are ErrorInfo, BadRequest, RetryInfo and a
                      google.protobuf.StringValue, in that order, each with
                      the type URL type.googleapis.com/<full name> and equal
                      to the expected message
  unary_error_info, unary_bad_request, unary_retry_info
                      each standard detail, found and unpacked by its type
  unary_other_detail  the StringValue, a type outside google.rpc
  stream_details      StreamingOutputCall sends one message, then fails with
                      the same status and details (in trailers after data)
  mismatch_refused    EmptyCall fails with ABORTED and sends details whose
                      code is NOT_FOUND: from_call refuses them (ValueError)

Usage:
  python error_details_client.py HOST:PORT [--timeout SECONDS] [--gen_dir DIR]

Exit status: 0 if every check passed, 1 otherwise, 2 on bad arguments.
Needs grpcio, grpcio-status and the grpc.testing stubs of
interop/peers/python/setup_venv.sh.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import error_details_common as common  # noqa: E402


class CheckFailed(Exception):
    pass


def describe(err):
    """A grpc.RpcError as "CODE 'details'"."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return "%s %r" % (code.name if code is not None else "?", details)


def short(message):
    """A protobuf message on one line."""
    from google.protobuf import text_format
    return "%s { %s }" % (message.DESCRIPTOR.full_name,
                          text_format.MessageToString(message,
                                                      as_one_line=True))


class Checks:

    def __init__(self, grpc, rpc_status, pb2, stub, timeout):
        self.grpc = grpc
        self.rpc_status = rpc_status
        self.empty_pb2, self.messages_pb2 = pb2
        self.stub = stub
        self.timeout = timeout
        self.failed = 0

    def report(self, name, fn, *args):
        try:
            fn(*args)
        except CheckFailed as e:
            self.failed += 1
            print("FAIL %s: %s" % (name, " ".join(str(e).split())))
        except Exception as e:  # a bug in the check or the peer: a failure
            self.failed += 1
            print("FAIL %s: %s: %s" %
                  (name, type(e).__name__, " ".join(str(e).split())))
        else:
            print("PASS %s" % name)
        sys.stdout.flush()

    # ----- helpers --------------------------------------------------------

    def check_status(self, err):
        want = getattr(self.grpc.StatusCode, common.CODE_NAME)
        if err.code() != want or err.details() != common.MESSAGE:
            raise CheckFailed("got %s, want %s %r" %
                              (describe(err), want.name, common.MESSAGE))

    def from_call(self, err):
        """rpc_status.from_call, which must find the details and accept
        them."""
        try:
            status = self.rpc_status.from_call(err)
        except ValueError as e:
            raise CheckFailed("from_call refused the details: %s" % e)
        if status is None:
            raise CheckFailed("no %s in the trailing metadata" %
                              common.DETAILS_KEY)
        want_code = common.code_number(self.grpc, common.CODE_NAME)
        if status.code != want_code or status.message != common.MESSAGE:
            raise CheckFailed("google.rpc.Status code %d message %r, want "
                              "%d %r" % (status.code, status.message,
                                         want_code, common.MESSAGE))
        return status

    def check_all_details(self, status):
        want = common.expected_details()
        got = list(status.details)
        if len(got) != len(want):
            raise CheckFailed("%d details (%s), want %d" %
                              (len(got), ", ".join(a.type_url for a in got),
                               len(want)))
        for i, (packed, message) in enumerate(zip(got, want)):
            url = "type.googleapis.com/" + message.DESCRIPTOR.full_name
            if packed.type_url != url:
                raise CheckFailed("detail %d has type URL %r, want %r" %
                                  (i, packed.type_url, url))
            unpacked = type(message)()
            if not packed.Unpack(unpacked):
                raise CheckFailed("detail %d does not unpack" % i)
            if unpacked != message:
                raise CheckFailed("detail %d is %s, want %s" %
                                  (i, short(unpacked), short(message)))

    def check_one(self, status, index):
        """The first detail of the type of expected_details()[index]."""
        message = common.expected_details()[index]
        for packed in status.details:
            if packed.Is(message.DESCRIPTOR):
                unpacked = type(message)()
                packed.Unpack(unpacked)
                if unpacked != message:
                    raise CheckFailed("got %s, want %s" %
                                      (short(unpacked), short(message)))
                return
        raise CheckFailed("no %s among the details (%s)" %
                          (message.DESCRIPTOR.full_name, ", ".join(
                              a.type_url for a in status.details) or "none"))

    # ----- the calls --------------------------------------------------------

    def unary(self):
        names = [
            "unary_status", "unary_from_call", "unary_all_details",
            "unary_error_info", "unary_bad_request", "unary_retry_info",
            "unary_other_detail"
        ]
        try:
            self.stub.UnaryCall(self.messages_pb2.SimpleRequest(),
                                timeout=self.timeout)
        except self.grpc.RpcError as e:
            err = e
        else:
            for name in names:
                self.report(name, self.fail_with,
                            "UnaryCall succeeded; want it to fail")
            return
        self.report("unary_status", self.check_status, err)
        self.report("unary_from_call", self.from_call, err)
        try:
            status = self.from_call(err)
        except CheckFailed as e:
            for name in names[2:]:
                self.report(name, self.fail_with, str(e))
            return
        self.report("unary_all_details", self.check_all_details, status)
        self.report("unary_error_info", self.check_one, status, 0)
        self.report("unary_bad_request", self.check_one, status, 1)
        self.report("unary_retry_info", self.check_one, status, 2)
        self.report("unary_other_detail", self.check_one, status, 3)

    def fail_with(self, why):
        raise CheckFailed(why)

    def stream(self):
        request = self.messages_pb2.StreamingOutputCallRequest(
            response_parameters=[self.messages_pb2.ResponseParameters(size=1)])
        responses = self.stub.StreamingOutputCall(request,
                                                  timeout=self.timeout)
        try:
            next(responses)
        except StopIteration:
            raise CheckFailed("the stream ended without a message or error")
        except self.grpc.RpcError as e:
            raise CheckFailed("no message before the error: %s" % describe(e))
        try:
            next(responses)
        except StopIteration:
            raise CheckFailed("the stream ended with OK; want the error")
        except self.grpc.RpcError as e:
            self.check_status(e)
            self.check_all_details(self.from_call(e))
        else:
            raise CheckFailed("a second message; want the error")

    def mismatch(self):
        try:
            self.stub.EmptyCall(self.empty_pb2.Empty(), timeout=self.timeout)
        except self.grpc.RpcError as e:
            err = e
        else:
            raise CheckFailed("EmptyCall succeeded; want it to fail")
        want = getattr(self.grpc.StatusCode, common.MISMATCH_CODE_NAME)
        if err.code() != want:
            raise CheckFailed("got %s, want %s" % (describe(err), want.name))
        blob = [v for k, v in (err.trailing_metadata() or ())
                if k == common.DETAILS_KEY]
        if not blob:
            raise CheckFailed("no %s received" % common.DETAILS_KEY)
        from google.rpc import status_pb2
        sent = status_pb2.Status.FromString(blob[0])
        inner = common.code_number(self.grpc,
                                   common.MISMATCH_DETAILS_CODE_NAME)
        if sent.code != inner:
            raise CheckFailed("the details say code %d, want %d" %
                              (sent.code, inner))
        try:
            self.rpc_status.from_call(err)
        except ValueError:
            return
        raise CheckFailed("from_call accepted details whose code is not "
                          "the call's")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("target", metavar="HOST:PORT")
    p.add_argument("--timeout", type=float, default=10.0,
                   help="deadline of each call, in seconds")
    p.add_argument("--gen_dir", default=common.default_gen_dir())
    args = p.parse_args(argv)

    import grpc
    from grpc_status import rpc_status
    empty_pb2, messages_pb2, test_pb2_grpc = common.load_stubs(args.gen_dir)

    with grpc.insecure_channel(args.target) as channel:
        stub = test_pb2_grpc.TestServiceStub(channel)
        checks = Checks(grpc, rpc_status, (empty_pb2, messages_pb2), stub,
                        args.timeout)
        checks.unary()
        checks.report("stream_details", checks.stream)
        checks.report("mismatch_refused", checks.mismatch)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
