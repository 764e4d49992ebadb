"""What the error details peers send and expect (interop/run-error-details.sh).

The same values as interop/src/bin/error_details_shared/mod.rs, the
ferrogrpc side's. Shared by error_details_server.py and
error_details_client.py; needs grpcio, grpcio-status (which brings
googleapis-common-protos, the google.rpc messages) and the grpc.testing stubs
made by interop/peers/python/setup_venv.sh.
"""

import os
import sys

# The rich errors (UnaryCall, StreamingOutputCall): INVALID_ARGUMENT, and a
# message that is not ASCII and has a "%", so that grpc-message is
# percent-encoded on the wire while the message inside the details is not.
CODE_NAME = "INVALID_ARGUMENT"
MESSAGE = "name too short: 100% ungültig"

# EmptyCall fails with ABORTED, with details whose code is NOT_FOUND.
MISMATCH_CODE_NAME = "ABORTED"
MISMATCH_DETAILS_CODE_NAME = "NOT_FOUND"

# The detail of a type outside google.rpc: a google.protobuf.StringValue.
OPAQUE_TEXT = "opaque detail"
OPAQUE_TYPE_URL = "type.googleapis.com/google.protobuf.StringValue"

DETAILS_KEY = "grpc-status-details-bin"


def default_gen_dir():
    env = os.environ.get("INTEROP_GEN_DIR")
    if env:
        return env
    return os.path.join(sys.prefix, "gen")


def load_stubs(gen_dir):
    """Imports the generated grpc.testing modules from gen_dir.

    They live under gen_dir/grpc/testing and import each other as
    grpc.testing.*; "grpc" is grpcio's own package, so the generated folder
    is grafted onto grpc.__path__ (as the other peers do).
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


def code_number(grpc, name):
    """The number of a grpc.StatusCode, by name."""
    return getattr(grpc.StatusCode, name).value[0]


def expected_details():
    """The details in the order sent: ErrorInfo, BadRequest, RetryInfo and
    the StringValue, as messages (not packed)."""
    from google.protobuf import duration_pb2, wrappers_pb2
    from google.rpc import error_details_pb2

    return [
        error_details_pb2.ErrorInfo(
            reason="NAME_TOO_SHORT",
            domain="interop.ferrogrpc.test",
            metadata={"minLength": "3", "field": "name"},
        ),
        error_details_pb2.BadRequest(field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field="name",
                description="shorter than 3 characters",
                reason="TOO_SHORT",
                localized_message=error_details_pb2.LocalizedMessage(
                    locale="de-DE", message="zu kurz"),
            )
        ]),
        error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(seconds=1, nanos=500000000)),
        wrappers_pb2.StringValue(value=OPAQUE_TEXT),
    ]


def rich_status(grpc, code_name=CODE_NAME):
    """A google.rpc.Status with code_name, MESSAGE and every detail packed
    (google.protobuf.Any.Pack: type.googleapis.com/ type URLs)."""
    from google.protobuf import any_pb2
    from google.rpc import status_pb2

    status = status_pb2.Status(code=code_number(grpc, code_name),
                               message=MESSAGE)
    for detail in expected_details():
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return status
