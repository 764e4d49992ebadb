//! The service the server targets register: every RPC kind, an error with
//! details and binary trailers, and a slow method (for deadlines).

use std::time::Duration;

use bytes::Bytes;
use ferrogrpc::{
    codec::BytesCodec,
    server::{self, BoxFuture, ServerCall, Service},
    Code, Request, Response, Status,
};

pub struct Echo;

fn echo_metadata(
    req: &ferrogrpc::metadata::MetadataMap,
    resp: &mut ferrogrpc::metadata::MetadataMap,
) {
    if let Some(v) = req.get("x-custom") {
        let _ = resp.insert("x-custom", v);
    }
    if let Some(v) = req.get_bin("x-custom-bin") {
        let _ = resp.insert_bin("x-custom-bin", v);
    }
}

impl Service for Echo {
    fn name(&self) -> &'static str {
        "test.Echo"
    }

    fn call(&self, method: &str, call: ServerCall) -> BoxFuture {
        match method {
            "Unary" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    let mut resp = Response::new(req.get_ref().clone());
                    echo_metadata(req.metadata(), resp.metadata_mut());
                    Ok(resp)
                },
            )),
            "ServerStream" => Box::pin(server::server_streaming(
                call,
                BytesCodec,
                |req: Request<Bytes>, mut sink| async move {
                    let n = req.get_ref().first().copied().unwrap_or(2) % 5;
                    for _ in 0..n {
                        sink.send(req.get_ref().clone()).await?;
                    }
                    Ok(())
                },
            )),
            "ClientStream" => Box::pin(server::client_streaming(
                call,
                BytesCodec,
                |req: Request<ferrogrpc::Streaming<Bytes>>| async move {
                    let mut stream = req.into_inner();
                    let mut total = Vec::new();
                    while let Some(m) = stream.message().await? {
                        if total.len() < 1 << 16 {
                            total.extend_from_slice(&m);
                        }
                    }
                    Ok(Response::new(Bytes::from(total)))
                },
            )),
            "Bidi" => Box::pin(server::streaming(
                call,
                BytesCodec,
                |req: Request<ferrogrpc::Streaming<Bytes>>, mut sink| async move {
                    let mut stream = req.into_inner();
                    while let Some(m) = stream.message().await? {
                        sink.send(m).await?;
                    }
                    Ok(())
                },
            )),
            "Fail" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    // The peer's bytes become the status: message, details
                    // and a binary trailer, all encoded for the wire.
                    let body = req.get_ref();
                    let code = Code::from_i32(i32::from(body.first().copied().unwrap_or(13)));
                    let mut status = Status::with_details(
                        code,
                        String::from_utf8_lossy(body).into_owned(),
                        body.clone(),
                    );
                    let _ = status.metadata_mut().insert_bin("x-trace-bin", body);
                    Err::<Response<Bytes>, _>(status)
                },
            )),
            "Sleep" => Box::pin(server::unary(
                call,
                BytesCodec,
                |req: Request<Bytes>| async move {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(Response::new(req.into_inner()))
                },
            )),
            _ => Box::pin(call.unimplemented()),
        }
    }
}
