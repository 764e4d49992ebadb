#!/usr/bin/env python3
"""grpcio's channelz client (grpc_channelz.v1) against a server's
grpc.channelz.v1.Channelz service, checking that its counts are exact.

Run by interop/run-channelz.sh against ferrogrpc's interop_server, freshly
started (no call before this script's). The script first makes a known set
of calls on one connection, to 127.0.0.2:PORT so that the server sees that
connection's local address as 127.0.0.2 (any 127/8 address reaches the
loopback on Linux) and the channelz queries' own connection, to
127.0.0.1:PORT, apart:

  3 UnaryCall OK (one message back each)
  2 UnaryCall with response_status code 2 (UNKNOWN, no message back)
  1 StreamingOutputCall OK with 3 messages back
  1 FullDuplexCall with one request and one response, then cancelled by
    the client (the server never sends its status: the stream fails)

Every channelz query goes over its own channel and is counted too (the
query being answered is started, not ended, when the server reads its
counts), so the server's call counts are known exactly at each query.

Checks, one stdout line each, "PASS name" or "FAIL name: why":

  workload               the calls above ended as meant on the client
  get_servers            exactly one server, with calls_started /
                         calls_succeeded / calls_failed exact and the last
                         call's start time set
  get_server             GetServer(id) says the same
  listen_sockets         each listen socket: GetSocket shows port PORT and no
                         remote address
  server_sockets         GetServerSockets lists two sockets, one of them the
                         workload's (local address 127.0.0.2)
  workload_socket        GetSocket on it: streams_started / succeeded /
                         failed, messages_sent and messages_received exact,
                         remote 127.0.0.1, last remote stream time set,
                         no local stream (a server starts none)
  query_socket           the queries' own socket counts exactly, too
  flow_control_windows   both connection windows there, within HTTP/2's
                         range (0 to 2^31-1); their exact values are
                         checked against a raw client in
                         ferrogrpc/tests/channelz_windows.rs
  socket_not_found       GetSocket of an unused id is NOT_FOUND
  get_top_channels       answers (the interop server has no channel), end
  paging_servers         start_server_id / max_results
  paging_sockets         start_socket_id / max_results walk the sockets one
                         at a time, each page's `end` right

Usage:
  python check_channelz.py PORT [--timeout SECONDS] [--gen_dir DIR]

Exit status: 0 if every check passed, 1 otherwise, 2 on bad arguments.
Needs grpcio, grpcio-channelz and the generated grpc.testing stubs
(interop/peers/python/setup_venv.sh makes all three).
"""

import argparse
import ipaddress
import os
import queue
import sys
import time

WORKLOAD_HOST = "127.0.0.2"
QUERY_HOST = "127.0.0.1"
OK_UNARY = 3
FAILED_UNARY = 2
STREAMED = 3
# Calls, streams and messages of the workload, from the server's side.
CALLS = OK_UNARY + FAILED_UNARY + 1 + 1
CALLS_OK = OK_UNARY + 1
CALLS_FAILED = FAILED_UNARY + 1
STREAMS_SUCCEEDED = OK_UNARY + FAILED_UNARY + 1
STREAMS_FAILED = 1
MESSAGES_SENT = OK_UNARY + STREAMED + 1
MESSAGES_RECEIVED = OK_UNARY + FAILED_UNARY + 1 + 1
# Separate connections per channel: grpcio otherwise shares one subchannel
# (one connection) between channels to the same address.
OPTIONS = [("grpc.use_local_subchannel_pool", 1)]


class CheckFailed(Exception):
    pass


def describe(err):
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    return "%s %r" % (code.name if code is not None else "?", details)


def load_stubs(gen_dir):
    """The generated grpc.testing modules (see interop_client.py)."""
    import grpc

    pkg_dir = os.path.join(os.path.abspath(gen_dir), "grpc")
    if not os.path.isdir(os.path.join(pkg_dir, "testing")):
        raise SystemExit("generated stubs not found under %s (run setup_venv.sh)"
                         % gen_dir)
    if pkg_dir not in grpc.__path__:
        grpc.__path__.append(pkg_dir)
    from grpc.testing import messages_pb2, test_pb2_grpc
    return messages_pb2, test_pb2_grpc


def ip_of(address):
    """An Address's IP (IPv4-mapped IPv6 as IPv4) and port, or None."""
    if not address.HasField("tcpip_address"):
        return None
    ip = ipaddress.ip_address(address.tcpip_address.ip_address)
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip), address.tcpip_address.port


class Checks:

    def __init__(self, grpc, pb, stub, port, timeout):
        self.grpc = grpc
        self.pb = pb
        self.stub = stub
        self.port = port
        self.timeout = timeout
        # The queries made so far, by how they ended.
        self.queries_ok = 0
        self.queries_failed = 0
        self.workload_id = None
        self.query_id = None

    def query(self, method, request):
        """One channelz call, counted."""
        try:
            response = getattr(self.stub, method)(request, timeout=self.timeout)
        except self.grpc.RpcError:
            self.queries_failed += 1
            raise
        self.queries_ok += 1
        return response

    def expect_eq(self, what, got, want):
        if got != want:
            raise CheckFailed("%s is %r, want %r" % (what, got, want))

    # ----- the checks -------------------------------------------------------

    def get_servers(self):
        started = CALLS + self.queries_ok + self.queries_failed + 1
        ok = CALLS_OK + self.queries_ok
        failed = CALLS_FAILED + self.queries_failed
        r = self.query("GetServers", self.pb.GetServersRequest())
        self.expect_eq("number of servers", len(r.server), 1)
        self.expect_eq("end", r.end, True)
        self.server_counts(r.server[0], started, ok, failed)
        self.server = r.server[0]

    def server_counts(self, server, started, ok, failed):
        d = server.data
        self.expect_eq("calls_started", d.calls_started, started)
        self.expect_eq("calls_succeeded", d.calls_succeeded, ok)
        self.expect_eq("calls_failed", d.calls_failed, failed)
        if not d.HasField("last_call_started_timestamp"):
            raise CheckFailed("no last_call_started_timestamp")
        age = time.time() - d.last_call_started_timestamp.ToNanoseconds() / 1e9
        if not 0 <= age < 60:
            raise CheckFailed("last call started %.1f s ago" % age)

    def get_server(self):
        started = CALLS + self.queries_ok + self.queries_failed + 1
        ok = CALLS_OK + self.queries_ok
        failed = CALLS_FAILED + self.queries_failed
        sid = self.server.ref.server_id
        r = self.query("GetServer", self.pb.GetServerRequest(server_id=sid))
        self.expect_eq("server id", r.server.ref.server_id, sid)
        self.server_counts(r.server, started, ok, failed)

    def listen_sockets(self):
        refs = self.server.listen_socket
        if not refs:
            raise CheckFailed("no listen socket")
        for ref in refs:
            s = self.query("GetSocket",
                           self.pb.GetSocketRequest(socket_id=ref.socket_id)).socket
            local = ip_of(s.local)
            if local is None or local[1] != self.port:
                raise CheckFailed("listen socket %d is at %s, want port %d" %
                                  (ref.socket_id, local, self.port))
            if s.HasField("remote"):
                raise CheckFailed("listen socket %d has a remote address" %
                                  ref.socket_id)

    def server_sockets(self):
        sid = self.server.ref.server_id
        r = self.query("GetServerSockets",
                       self.pb.GetServerSocketsRequest(server_id=sid))
        self.expect_eq("end", r.end, True)
        ids = [ref.socket_id for ref in r.socket_ref]
        self.expect_eq("number of sockets", len(ids), 2)
        self.expect_eq("sockets in id order", ids, sorted(ids))
        self.all_sockets = ids
        for ref in r.socket_ref:
            s = self.query("GetSocket",
                           self.pb.GetSocketRequest(socket_id=ref.socket_id)).socket
            local = ip_of(s.local)
            if local == (WORKLOAD_HOST, self.port):
                self.workload_id = ref.socket_id
            elif local == (QUERY_HOST, self.port):
                self.query_id = ref.socket_id
            else:
                raise CheckFailed("socket %d has local address %s" %
                                  (ref.socket_id, local))
        if self.workload_id is None or self.query_id is None:
            raise CheckFailed("want one socket at %s and one at %s" %
                              (WORKLOAD_HOST, QUERY_HOST))

    def socket_counts(self, socket_id, started, succeeded, failed, sent,
                      received):
        s = self.query("GetSocket", self.pb.GetSocketRequest(socket_id=socket_id)).socket
        d = s.data
        self.expect_eq("streams_started", d.streams_started, started)
        self.expect_eq("streams_succeeded", d.streams_succeeded, succeeded)
        self.expect_eq("streams_failed", d.streams_failed, failed)
        self.expect_eq("messages_sent", d.messages_sent, sent)
        self.expect_eq("messages_received", d.messages_received, received)
        for field in ("last_remote_stream_created_timestamp",
                      "last_message_sent_timestamp",
                      "last_message_received_timestamp"):
            if not d.HasField(field):
                raise CheckFailed("no %s" % field)
        if d.HasField("last_local_stream_created_timestamp"):
            raise CheckFailed("a server socket with a local stream")
        remote = ip_of(s.remote)
        if remote is None or remote[0] != QUERY_HOST:
            raise CheckFailed("remote address %s, want %s" % (remote, QUERY_HOST))
        return s

    def workload_socket(self):
        self.socket_counts(self.workload_id, CALLS, STREAMS_SUCCEEDED,
                           STREAMS_FAILED, MESSAGES_SENT, MESSAGES_RECEIVED)

    def query_socket(self):
        # The server socket of this channel: every query so far ended with a
        # status (OK or not) and is a message received; the one being
        # answered is started and received, not yet sent.
        done = self.queries_ok + self.queries_failed
        self.socket_counts(self.query_id, done + 1, done, 0,
                           self.queries_ok, done + 1)

    def flow_control_windows(self):
        s = self.query("GetSocket",
                       self.pb.GetSocketRequest(socket_id=self.workload_id)).socket
        d = s.data
        for field in ("local_flow_control_window", "remote_flow_control_window"):
            if not d.HasField(field):
                raise CheckFailed("no %s" % field)
            value = getattr(d, field).value
            if not 0 <= value <= 2**31 - 1:
                raise CheckFailed("%s is %d" % (field, value))

    def socket_not_found(self):
        unused = max(self.all_sockets) + 1000000
        try:
            self.query("GetSocket", self.pb.GetSocketRequest(socket_id=unused))
        except self.grpc.RpcError as err:
            if err.code() != self.grpc.StatusCode.NOT_FOUND:
                raise CheckFailed("GetSocket(%d): %s, want NOT_FOUND" %
                                  (unused, describe(err)))
            return
        raise CheckFailed("GetSocket(%d) answered" % unused)

    def get_top_channels(self):
        r = self.query("GetTopChannels", self.pb.GetTopChannelsRequest())
        self.expect_eq("end", r.end, True)
        for c in r.channel:
            if c.ref.channel_id <= 0:
                raise CheckFailed("channel id %d" % c.ref.channel_id)

    def paging_servers(self):
        sid = self.server.ref.server_id
        r = self.query("GetServers",
                       self.pb.GetServersRequest(start_server_id=sid, max_results=1))
        self.expect_eq("servers from its own id", [s.ref.server_id for s in r.server], [sid])
        self.expect_eq("end", r.end, True)
        r = self.query("GetServers",
                       self.pb.GetServersRequest(start_server_id=sid + 1))
        self.expect_eq("servers after it", len(r.server), 0)
        self.expect_eq("end after it", r.end, True)

    def paging_sockets(self):
        sid = self.server.ref.server_id
        seen = []
        start = 0
        for page in range(len(self.all_sockets)):
            r = self.query("GetServerSockets", self.pb.GetServerSocketsRequest(
                server_id=sid, start_socket_id=start, max_results=1))
            ids = [ref.socket_id for ref in r.socket_ref]
            self.expect_eq("page %d size" % page, len(ids), 1)
            last = page == len(self.all_sockets) - 1
            self.expect_eq("page %d end" % page, r.end, last)
            seen += ids
            start = ids[0] + 1
        self.expect_eq("sockets paged one by one", seen, self.all_sockets)
        # Starting at the second id skips the first.
        r = self.query("GetServerSockets", self.pb.GetServerSocketsRequest(
            server_id=sid, start_socket_id=self.all_sockets[1]))
        self.expect_eq("sockets from the second id",
                       [ref.socket_id for ref in r.socket_ref], self.all_sockets[1:])
        self.expect_eq("end", r.end, True)


def run_workload(grpc, messages_pb2, test_pb2_grpc, channel, timeout):
    """The calls whose counts the checks expect; raises CheckFailed."""
    stub = test_pb2_grpc.TestServiceStub(channel)
    for _ in range(OK_UNARY):
        stub.UnaryCall(messages_pb2.SimpleRequest(response_size=10), timeout=timeout)
    for _ in range(FAILED_UNARY):
        request = messages_pb2.SimpleRequest(
            response_status=messages_pb2.EchoStatus(code=2, message="meant to fail"))
        try:
            stub.UnaryCall(request, timeout=timeout)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNKNOWN:
                raise CheckFailed("failing UnaryCall: %s, want UNKNOWN" % describe(err))
        else:
            raise CheckFailed("failing UnaryCall succeeded")
    request = messages_pb2.StreamingOutputCallRequest(response_parameters=[
        messages_pb2.ResponseParameters(size=5) for _ in range(STREAMED)])
    got = list(stub.StreamingOutputCall(request, timeout=timeout))
    if len(got) != STREAMED:
        raise CheckFailed("StreamingOutputCall: %d messages, want %d" % (len(got), STREAMED))
    # A call the client cancels after one request and its answer: the
    # server never sends its status, so the stream fails.
    pending = queue.Queue()

    def requests():
        while True:
            item = pending.get()
            if item is None:
                return
            yield item

    pending.put(messages_pb2.StreamingOutputCallRequest(
        response_parameters=[messages_pb2.ResponseParameters(size=5)]))
    call = stub.FullDuplexCall(requests(), timeout=timeout)
    next(call)
    call.cancel()
    pending.put(None)
    if call.code() != grpc.StatusCode.CANCELLED:
        raise CheckFailed("cancelled FullDuplexCall ended with %s" % call.code())


def wait_for_cancel(checks, deadline):
    """The server learns of the cancellation a moment after the client:
    waits (each query counted) until the server counts the failed call."""
    while time.time() < deadline:
        servers = checks.query("GetServers", checks.pb.GetServersRequest()).server
        if servers and servers[0].data.calls_failed >= CALLS_FAILED:
            return
        time.sleep(0.05)


ALL_CHECKS = [
    "get_servers", "get_server", "listen_sockets", "server_sockets",
    "workload_socket", "query_socket", "flow_control_windows",
    "socket_not_found", "get_top_channels", "paging_servers", "paging_sockets",
]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("--timeout", type=float, default=5.0,
                   help="deadline of each RPC in seconds (default 5)")
    p.add_argument("--gen_dir", default=os.path.join(sys.prefix, "gen"))
    args = p.parse_args(argv)

    import grpc
    from grpc_channelz.v1 import channelz_pb2, channelz_pb2_grpc
    messages_pb2, test_pb2_grpc = load_stubs(args.gen_dir)

    failed = 0

    def report(name, fn):
        nonlocal failed
        try:
            fn()
        except CheckFailed as err:
            failed += 1
            print("FAIL %s: %s" % (name, " ".join(str(err).split())))
        except grpc.RpcError as err:
            failed += 1
            print("FAIL %s: %s" % (name, describe(err)))
        except Exception as err:  # a bug here is a failed check too
            failed += 1
            print("FAIL %s: %s: %s" % (name, type(err).__name__, err))
        else:
            print("PASS %s" % name)
        sys.stdout.flush()
        return failed == 0

    workload = grpc.insecure_channel("%s:%d" % (WORKLOAD_HOST, args.port), options=OPTIONS)
    queries = grpc.insecure_channel("%s:%d" % (QUERY_HOST, args.port), options=OPTIONS)
    with workload, queries:
        if not report("workload", lambda: run_workload(
                grpc, messages_pb2, test_pb2_grpc, workload, args.timeout)):
            return 1
        checks = Checks(grpc, channelz_pb2, channelz_pb2_grpc.ChannelzStub(queries),
                        args.port, args.timeout)
        wait_for_cancel(checks, time.time() + args.timeout)
        for name in ALL_CHECKS:
            if not report(name, getattr(checks, name)) and name in ("get_servers", "server_sockets"):
                # The checks after need the server and its sockets.
                print("FAIL rest: skipped after %s failed" % name)
                return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
