//! Code generated with `json(true)` (`jsonmap.Ledger`), over loopback: the
//! generated client and server talk JSON in all four kinds of RPC when the
//! client asks for it, protobuf otherwise; the JSON on the wire follows
//! protobuf's JSON mapping, both ways; a subtype the server has no codec
//! for is refused with UNIMPLEMENTED.

mod common;

use std::sync::{Arc, Mutex};

use codegen_tests::jsonmap::{
    ledger_client::LedgerClient,
    ledger_server::{Ledger, LedgerServer},
    Kind, Range, Record, Sum,
};
use ferrogrpc::__codegen::PathAndQuery;
use ferrogrpc::{
    codec::{BytesCodec, Codec},
    server::{self, BoxFuture, ResponseSink, Server, ServerCall, Service},
    Code, Request, Response, Status, Streaming,
};
use prost::bytes::{Bytes, BytesMut};

/// Fails each call whose content-subtype is not the one its request's
/// `x-expect` metadata names, so that every kind of call checks the subtype
/// the server saw.
#[derive(Debug, Default)]
struct Books;

fn expect_subtype<T>(request: &Request<T>) -> Result<(), Status> {
    let seen = request
        .context()
        .expect("a server request")
        .content_subtype();
    let expected = request.metadata().get("x-expect").unwrap_or("(unset)");
    if seen == expected.trim_matches(|c| c == '[' || c == ']') {
        Ok(())
    } else {
        Err(Status::failed_precondition(format!(
            "content-subtype {seen:?}, expected {expected:?}"
        )))
    }
}

impl Ledger for Books {
    async fn put(&self, request: Request<Record>) -> Result<Response<Record>, Status> {
        expect_subtype(&request)?;
        let mut record = request.into_inner();
        record.notes.push("stored".into());
        Ok(Response::new(record))
    }

    async fn scan(
        &self,
        request: Request<Range>,
        mut responses: ResponseSink<Record>,
    ) -> Result<(), Status> {
        expect_subtype(&request)?;
        let range = request.into_inner();
        for record_id in range.from..=range.to {
            responses
                .send(Record {
                    record_id,
                    kind: Kind::Credit as i32,
                    ..Record::default()
                })
                .await?;
        }
        Ok(())
    }

    async fn total(&self, request: Request<Streaming<Record>>) -> Result<Response<Sum>, Status> {
        expect_subtype(&request)?;
        let mut records = request.into_inner();
        let mut sum = Sum::default();
        while let Some(record) = records.message().await? {
            sum.total += record.amount.unwrap_or_default();
            sum.count += 1;
        }
        Ok(Response::new(sum))
    }

    async fn double(
        &self,
        request: Request<Streaming<Record>>,
        mut responses: ResponseSink<Record>,
    ) -> Result<(), Status> {
        expect_subtype(&request)?;
        let mut records = request.into_inner();
        while let Some(mut record) = records.message().await? {
            record.amount = record.amount.map(|a| a * 2);
            responses.send(record).await?;
        }
        Ok(())
    }

    async fn ping(&self, request: Request<()>) -> Result<Response<()>, Status> {
        expect_subtype(&request)?;
        Ok(Response::new(()))
    }
}

fn with_expect<T>(message: T, subtype: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-expect", &format!("[{subtype}]"))
        .unwrap();
    request
}

fn record(id: i64, amount: u64) -> Record {
    Record {
        record_id: id,
        kind: Kind::Debit as i32,
        at: Some(prost_types::Timestamp {
            seconds: 1_715_000_000,
            nanos: 500_000_000,
        }),
        hold: Some(prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        memo: b"hi".to_vec(),
        amount: Some(amount),
        tags: [("a".to_string(), 1)].into_iter().collect(),
        notes: vec!["x".into()],
    }
}

/// Every kind of call of `client`, each checked by the server to have come
/// in `subtype` (`""` for plain protobuf).
async fn all_kinds(client: &LedgerClient, subtype: &str) {
    let sent = record(i64::MAX - 1, 7);
    let stored = client
        .put(with_expect(sent.clone(), subtype))
        .await
        .unwrap();
    let mut expected = sent;
    expected.notes.push("stored".into());
    assert_eq!(stored.into_inner(), expected);

    let mut scan = client
        .scan(with_expect(Range { from: 3, to: 5 }, subtype))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while let Some(record) = scan.message().await.unwrap() {
        assert_eq!(record.kind(), Kind::Credit);
        ids.push(record.record_id);
    }
    assert_eq!(ids, [3, 4, 5]);

    let mut total = client.total(with_expect((), subtype)).await.unwrap();
    for amount in [1, 2, u64::MAX - 10] {
        total.send(record(1, amount)).await.unwrap();
    }
    let sum = total.close_and_recv().await.unwrap().into_inner();
    assert_eq!(
        sum,
        Sum {
            total: u64::MAX - 7,
            count: 3
        }
    );

    let (mut sink, mut doubled) = client.double(with_expect((), subtype)).await.unwrap();
    for amount in [5, 6] {
        sink.send(record(2, amount)).await.unwrap();
        let back = doubled.message().await.unwrap().unwrap();
        assert_eq!(back.amount, Some(amount * 2));
    }
    sink.close().unwrap();
    assert!(doubled.message().await.unwrap().is_none());

    client.ping(with_expect((), subtype)).await.unwrap();
}

#[tokio::test]
async fn generated_client_and_server_talk_json() {
    let running = common::serve(Server::builder().add_service(LedgerServer::new(Books))).await;
    // Told per client.
    let client = LedgerClient::new(running.channel.clone()).with_content_subtype("json");
    all_kinds(&client, "json").await;
    // Told per request: its subtype wins over the client's.
    let json = LedgerClient::new(running.channel.clone());
    let stored = json
        .put(with_expect(record(1, 1), "json").with_content_subtype("json"))
        .await
        .unwrap();
    assert_eq!(stored.get_ref().record_id, 1);
    // Protobuf goes as plain `application/grpc`: no subtype on the server.
    let stored = client
        .put(with_expect(record(1, 1), "").with_content_subtype("proto"))
        .await
        .unwrap();
    assert_eq!(stored.get_ref().record_id, 1);
}

#[tokio::test]
async fn protobuf_stays_the_default() {
    let running = common::serve(Server::builder().add_service(LedgerServer::new(Books))).await;
    all_kinds(&LedgerClient::new(running.channel.clone()), "").await;
}

/// Encoded messages as they are, sent under the content-subtype `.0`.
#[derive(Clone, Debug)]
struct Raw(&'static str);

impl Codec<Bytes, Bytes> for Raw {
    fn name(&self) -> &'static str {
        self.0
    }

    fn encode(&mut self, item: &Bytes, dst: &mut BytesMut) -> Result<(), Status> {
        dst.extend_from_slice(item);
        Ok(())
    }

    fn decode(&mut self, src: Bytes) -> Result<Bytes, Status> {
        Ok(src)
    }
}

/// `record(i64::MAX - 1, 7)` as protobuf's JSON mapping writes it.
const RECORD_JSON: &str = concat!(
    r#"{"recordId":"9223372036854775806","kind":"KIND_DEBIT","#,
    r#""at":"2024-05-06T12:53:20.500Z","hold":"1.500s","memo":"aGk=","#,
    r#""amount":"7","tags":{"a":1},"notes":["x"]}"#
);

#[tokio::test]
async fn server_json_follows_the_mapping() {
    let running = common::serve(Server::builder().add_service(LedgerServer::new(Books))).await;
    let call = |subtype: &'static str, body: &'static str| {
        let channel = running.channel.clone();
        async move {
            channel
                .unary(
                    PathAndQuery::from_static("/jsonmap.Ledger/Put"),
                    with_expect(Bytes::from_static(body.as_bytes()), subtype),
                    Raw(subtype),
                )
                .await
        }
    };
    let stored = call("json", RECORD_JSON).await.unwrap().into_inner();
    let expected = RECORD_JSON.replace(r#"["x"]"#, r#"["x","stored"]"#);
    assert_eq!(std::str::from_utf8(&stored).unwrap(), expected);

    // What the mapping also accepts: proto field names, enum numbers,
    // 64-bit integers as numbers; defaults are left out of the answer.
    let stored = call("json", r#"{"record_id": 12, "kind": 1, "amount": 0}"#)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        std::str::from_utf8(&stored).unwrap(),
        r#"{"recordId":"12","kind":"KIND_CREDIT","amount":"0","notes":["stored"]}"#
    );

    // Not this type's JSON.
    let err = call("json", r#"{"recordId": "twelve"}"#).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal, "{err:?}");

    // A subtype the generated server has no codec for.
    let err = call("xml", "<record/>").await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented, "{err:?}");
    assert!(
        err.message()
            .contains(r#"no codec registered for content-subtype "xml""#),
        "{err:?}"
    );
}

/// `jsonmap.Ledger/Put` by hand: keeps the request's bytes and its
/// subtype, answers with `RECORD_JSON`.
#[derive(Clone, Default)]
struct RawLedger {
    seen: Arc<Mutex<Vec<(String, Bytes)>>>,
}

impl Service for RawLedger {
    fn name(&self) -> &'static str {
        "jsonmap.Ledger"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        if method != "Put" {
            return Box::pin(call.unimplemented());
        }
        let seen = Arc::clone(&self.seen);
        let subtype = call.content_subtype().to_string();
        Box::pin(server::unary(
            call,
            BytesCodec,
            move |request: Request<Bytes>| async move {
                seen.lock().unwrap().push((subtype, request.into_inner()));
                Ok(Response::new(Bytes::from_static(RECORD_JSON.as_bytes())))
            },
        ))
    }
}

#[tokio::test]
async fn client_json_follows_the_mapping() {
    let ledger = RawLedger::default();
    let running = common::serve(Server::builder().add_service(ledger.clone())).await;
    let client = LedgerClient::new(running.channel.clone()).with_content_subtype("json");
    let sent = Record {
        record_id: -5,
        kind: Kind::Credit as i32,
        memo: vec![0xff],
        ..Record::default()
    };
    let answer = client.put(sent).await.unwrap().into_inner();
    // The answer, decoded from RECORD_JSON.
    assert_eq!(answer, record(i64::MAX - 1, 7));
    let seen = ledger.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "json");
    assert_eq!(
        std::str::from_utf8(&seen[0].1).unwrap(),
        r#"{"recordId":"-5","kind":"KIND_CREDIT","memo":"/w=="}"#
    );
}
