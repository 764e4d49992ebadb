//! The services of the other test protos, over loopback: well-known types,
//! no package, a nested package using other packages' messages, and awkward
//! names.

mod common;

use codegen_tests::{
    a::b::{
        c::{
            lookup_client::LookupClient,
            lookup_server::{Lookup, LookupServer},
            Local,
        },
        Parent,
    },
    edge::{
        awkward_client::AwkwardClient,
        awkward_server::{self, Awkward, AwkwardServer},
        empty_client::EmptyClient,
        empty_server::{self, EmptyServer},
        lower_case_service_client::LowerCaseServiceClient,
        lower_case_service_server::{LowerCaseService, LowerCaseServiceServer},
    },
    nopackage::{
        pinger_client::PingerClient,
        pinger_server::{self, Pinger, PingerServer},
        PingReply, PingRequest,
    },
    other::pkg::Thing,
    wkt::{
        clock_client::ClockClient,
        clock_server::{Clock, ClockServer},
        AddRequest, Count,
    },
};
use ferrogrpc::{
    server::{ResponseSink, Server},
    Code, Request, Response, Status, Streaming,
};
use prost_types::{Any, Duration, Timestamp};

struct ClockImpl;

const NOW: Timestamp = Timestamp {
    seconds: 1_700_000_000,
    nanos: 5,
};

impl Clock for ClockImpl {
    async fn now(&self, _request: Request<()>) -> Result<Response<Timestamp>, Status> {
        Ok(Response::new(NOW))
    }

    async fn add(&self, request: Request<AddRequest>) -> Result<Response<Timestamp>, Status> {
        let req = request.into_inner();
        let (time, duration) = (
            req.time.unwrap_or_default(),
            req.duration.unwrap_or_default(),
        );
        Ok(Response::new(Timestamp {
            seconds: time.seconds + duration.seconds,
            nanos: time.nanos + duration.nanos,
        }))
    }

    async fn inspect(&self, request: Request<Any>) -> Result<Response<()>, Status> {
        let any = request.into_inner();
        let time: Timestamp = any
            .to_msg()
            .map_err(|e| Status::invalid_argument(format!("not a Timestamp: {e}")))?;
        if time == NOW {
            Ok(Response::new(()))
        } else {
            Err(Status::not_found(format!("{} at {time}", any.type_url)))
        }
    }

    async fn echo(
        &self,
        request: Request<Streaming<Timestamp>>,
        mut responses: ResponseSink<Timestamp>,
    ) -> Result<(), Status> {
        let mut times = request.into_inner();
        while let Some(t) = times.message().await? {
            responses.send(t).await?;
        }
        Ok(())
    }

    async fn count_empties(
        &self,
        request: Request<Streaming<()>>,
    ) -> Result<Response<Count>, Status> {
        let mut empties = request.into_inner();
        let mut n = 0;
        while empties.message().await?.is_some() {
            n += 1;
        }
        Ok(Response::new(Count { n }))
    }

    async fn empties(
        &self,
        request: Request<Count>,
        mut responses: ResponseSink<()>,
    ) -> Result<(), Status> {
        for _ in 0..request.get_ref().n {
            responses.send(()).await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_known_types() {
    let running = common::serve(Server::builder().add_service(ClockServer::new(ClockImpl))).await;
    let client = ClockClient::new(running.channel.clone());

    assert_eq!(client.now(()).await.unwrap().into_inner(), NOW);

    let added = client
        .add(AddRequest {
            time: Some(NOW),
            duration: Some(Duration {
                seconds: 60,
                nanos: 1,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        added,
        Timestamp {
            seconds: NOW.seconds + 60,
            nanos: 6
        }
    );

    client.inspect(Any::from_msg(&NOW).unwrap()).await.unwrap();
    let err = client
        .inspect(Any::from_msg(&Timestamp::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(
        err.message()
            .starts_with("type.googleapis.com/google.protobuf.Timestamp"),
        "{err:?}"
    );
    let err = client
        .inspect(Any::from_msg(&Duration::default()).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let (mut sink, mut echoes) = client.echo(()).await.unwrap();
    for seconds in 0..3 {
        let t = Timestamp { seconds, nanos: 0 };
        sink.send(t).await.unwrap();
        assert_eq!(echoes.message().await.unwrap(), Some(t));
    }
    sink.close().unwrap();
    assert_eq!(echoes.message().await.unwrap(), None);

    let mut call = client.count_empties(()).await.unwrap();
    for _ in 0..4 {
        call.send(()).await.unwrap();
    }
    assert_eq!(
        call.close_and_recv().await.unwrap().into_inner(),
        Count { n: 4 }
    );

    let mut empties = client.empties(Count { n: 3 }).await.unwrap().into_inner();
    let mut n = 0;
    while empties.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
}

struct PingerImpl;

impl Pinger for PingerImpl {
    async fn ping(&self, request: Request<PingRequest>) -> Result<Response<PingReply>, Status> {
        Ok(Response::new(PingReply {
            payload: request.into_inner().payload,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_without_package() {
    assert_eq!(pinger_server::SERVICE_NAME, "Pinger");
    let running = common::serve(Server::builder().add_service(PingerServer::new(PingerImpl))).await;
    let client = PingerClient::new(running.channel.clone());
    let reply = client
        .ping(PingRequest {
            payload: "hi".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.payload, "hi");
}

struct LookupImpl;

impl Lookup for LookupImpl {
    async fn get(&self, request: Request<Thing>) -> Result<Response<Local>, Status> {
        let thing = request.into_inner();
        Ok(Response::new(Local {
            thing: Some(thing),
            parent: Some(Parent {
                name: format!("parent of {}", thing.id),
            }),
        }))
    }

    async fn put(&self, request: Request<Local>) -> Result<Response<Thing>, Status> {
        request
            .into_inner()
            .thing
            .map(Response::new)
            .ok_or_else(|| Status::invalid_argument("no thing"))
    }

    async fn parents(
        &self,
        request: Request<Streaming<Parent>>,
        mut responses: ResponseSink<Parent>,
    ) -> Result<(), Status> {
        let mut parents = request.into_inner();
        while let Some(p) = parents.message().await? {
            responses
                .send(Parent {
                    name: p.name.to_uppercase(),
                })
                .await?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_package_with_foreign_messages() {
    let running = common::serve(Server::builder().add_service(LookupServer::new(LookupImpl))).await;
    let client = LookupClient::new(running.channel.clone());

    let local = client.get(Thing { id: 7 }).await.unwrap().into_inner();
    assert_eq!(local.thing, Some(Thing { id: 7 }));
    assert_eq!(local.parent.as_ref().unwrap().name, "parent of 7");
    assert_eq!(
        client.put(local).await.unwrap().into_inner(),
        Thing { id: 7 }
    );
    let err = client.put(Local::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let (mut sink, mut parents) = client.parents(()).await.unwrap();
    sink.send(Parent { name: "abc".into() }).await.unwrap();
    sink.close().unwrap();
    assert_eq!(
        parents.message().await.unwrap(),
        Some(Parent { name: "ABC".into() })
    );
    assert_eq!(parents.message().await.unwrap(), None);
}

struct AwkwardImpl;

impl Awkward for AwkwardImpl {
    async fn new(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Ok(Response::new(()))
    }

    async fn channel(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("channel"))
    }

    async fn r#type(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("type"))
    }

    async fn from_parts(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("from_parts"))
    }

    async fn into_parts(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("into_parts"))
    }

    async fn parts_mut(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("parts_mut"))
    }

    async fn snake_case_method(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("snake_case_method"))
    }
}

struct LowerCase;

impl LowerCaseService for LowerCase {
    async fn r#do(&self, _request: Request<()>) -> Result<Response<()>, Status> {
        Err(Status::aborted("do"))
    }
}

struct Nothing;

impl empty_server::Empty for Nothing {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_names_and_empty_service() {
    assert_eq!(awkward_server::SERVICE_NAME, "edge.Awkward");
    assert_eq!(empty_server::SERVICE_NAME, "edge.Empty");
    let running = common::serve(
        Server::builder()
            .add_service(AwkwardServer::new(AwkwardImpl))
            .add_service(EmptyServer::new(Nothing))
            .add_service(LowerCaseServiceServer::new(LowerCase)),
    )
    .await;
    let client = AwkwardClient::new(running.channel.clone());
    client.new_(()).await.unwrap();
    // Each call reaches the handler of its own name.
    for (result, name) in [
        (client.channel_(()).await, "channel"),
        (client.r#type(()).await, "type"),
        (client.from_parts(()).await, "from_parts"),
        (client.into_parts(()).await, "into_parts"),
        (client.parts_mut(()).await, "parts_mut"),
        (client.snake_case_method(()).await, "snake_case_method"),
    ] {
        let err = result.unwrap_err();
        assert_eq!((err.code(), err.message()), (Code::Aborted, name));
    }
    let err = LowerCaseServiceClient::new(running.channel.clone())
        .r#do(())
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Aborted, "do"));

    // The empty service is known to the server and answers every method
    // with UNIMPLEMENTED.
    let empty = EmptyClient::new(running.channel.clone());
    assert_eq!(empty.channel().target(), running.channel.target());
    let err = running
        .channel
        .unary(
            ferrogrpc::__codegen::PathAndQuery::from_static("/edge.Empty/Anything"),
            Request::new(prost::bytes::Bytes::new()),
            ferrogrpc::codec::BytesCodec,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert!(err.message().contains("/edge.Empty/Anything"), "{err:?}");
}
