#!/usr/bin/env python3
"""grpcio TestService failing with rich error details, for
interop/run-error-details.sh: ferrogrpc's error_details_client reads them.

Serves grpc.testing.TestService on 127.0.0.1; the details are attached the
way grpcio users do, with grpc_status.rpc_status.to_status and
context.abort_with_status (a google.rpc.Status in grpc-status-details-bin):

  UnaryCall            fails at once with INVALID_ARGUMENT, a message that is
                       not ASCII, and the details ErrorInfo, BadRequest,
                       RetryInfo and a google.protobuf.StringValue
                       (error_details_common.py has the values)
  StreamingOutputCall  sends one response, then fails the same way
  EmptyCall            fails with ABORTED and details whose google.rpc.Status
                       says NOT_FOUND (set by hand in the trailing metadata:
                       rpc_status.to_status would take the code from the
                       proto), which a client must not trust
  others               UNIMPLEMENTED

With --no-details the same codes and messages go without details: the control
run, against which the client's detail checks must fail.

Usage:
  python error_details_server.py [--port PORT] [--no-details] [--gen_dir DIR]

Once bound it prints "listening on 127.0.0.1:PORT" on stdout. Stops on
SIGINT / SIGTERM. Needs grpcio, grpcio-status and the grpc.testing stubs of
interop/peers/python/setup_venv.sh (found from --gen_dir, $INTEROP_GEN_DIR, or
<venv of this interpreter>/gen).
"""

import argparse
import os
import signal
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import error_details_common as common  # noqa: E402


def build_servicer(grpc, rpc_status, send_details, empty_pb2, messages_pb2,
                   test_pb2_grpc):
    code = getattr(grpc.StatusCode, common.CODE_NAME)
    mismatch_code = getattr(grpc.StatusCode, common.MISMATCH_CODE_NAME)

    def fail_rich(context):
        if send_details:
            context.abort_with_status(
                rpc_status.to_status(common.rich_status(grpc)))
        context.abort(code, common.MESSAGE)

    class Servicer(test_pb2_grpc.TestServiceServicer):

        def UnaryCall(self, request, context):
            fail_rich(context)

        def StreamingOutputCall(self, request, context):
            yield messages_pb2.StreamingOutputCallResponse(
                payload=messages_pb2.Payload(type=messages_pb2.COMPRESSABLE,
                                             body=b"\0"))
            fail_rich(context)

        def EmptyCall(self, request, context):
            if send_details:
                other = common.rich_status(
                    grpc, code_name=common.MISMATCH_DETAILS_CODE_NAME)
                context.set_trailing_metadata(
                    ((common.DETAILS_KEY, other.SerializeToString()),))
            context.abort(mismatch_code, common.MESSAGE)

    return Servicer()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=0,
                   help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--no-details", "--no_details", dest="no_details",
                   action="store_true",
                   help="fail the same way without details (a control)")
    p.add_argument("--gen_dir", default=common.default_gen_dir())
    args = p.parse_args(argv)

    import grpc
    from grpc_status import rpc_status
    empty_pb2, messages_pb2, test_pb2_grpc = common.load_stubs(args.gen_dir)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    bound = server.add_insecure_port("127.0.0.1:%d" % args.port)
    if bound == 0:
        raise SystemExit("error_details_server: cannot listen on "
                         "127.0.0.1:%d" % args.port)
    test_pb2_grpc.add_TestServiceServicer_to_server(
        build_servicer(grpc, rpc_status, not args.no_details, empty_pb2,
                       messages_pb2, test_pb2_grpc), server)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    sys.stdout.write("listening on 127.0.0.1:%d\n" % bound)
    sys.stdout.flush()
    sys.stderr.write("error_details_server.py: %s\n" %
                     ("control: no details" if args.no_details else
                      "with details"))
    sys.stderr.flush()
    while not stop.wait(3600):
        pass
    server.stop(grace=1).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
