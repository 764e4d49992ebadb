//! Cancellation, in one process: a client stops two streaming calls
//! half-way, and the server's handlers stop with them.
//!
//! - Server streaming: the client reads a few features of an endless
//!   `ListFeatures` and drops the response stream, which cancels the call.
//! - Bidi streaming: the client calls `cancel()` on its `RouteChat` request
//!   sink; its response stream then ends with CANCELLED.
//!
//! On the server, a cancelled call's handler future is dropped (or its next
//! send fails with CANCELLED): a guard dropped with it tells `main` how far
//! the handler got. A handler holding resources frees them the same way.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin cancellation`

use std::time::Duration;

use ferrogrpc::{
    client::Channel, server::ResponseSink, server::Server, Request, Response, Status, Streaming,
};
use ferrogrpc_examples::{
    local,
    routeguide::{
        route_guide_client::RouteGuideClient,
        route_guide_server::{RouteGuide, RouteGuideServer},
        Feature, Point, Rectangle, RouteNote, RouteSummary,
    },
};
use tokio::sync::mpsc;

/// Reports, when dropped, how many messages its handler sent.
struct Guard {
    method: &'static str,
    sent: usize,
    report: mpsc::UnboundedSender<String>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let line = format!(
            "server: {} stopped after {} messages",
            self.method, self.sent
        );
        let _ = self.report.send(line);
    }
}

struct Guide {
    report: mpsc::UnboundedSender<String>,
}

impl Guide {
    fn guard(&self, method: &'static str) -> Guard {
        let report = self.report.clone();
        Guard {
            method,
            sent: 0,
            report,
        }
    }
}

impl RouteGuide for Guide {
    /// Sends a feature every 50 ms until the client goes away.
    async fn list_features(
        &self,
        _request: Request<Rectangle>,
        mut responses: ResponseSink<Feature>,
    ) -> Result<(), Status> {
        let mut guard = self.guard("ListFeatures");
        loop {
            let feature = Feature {
                name: format!("feature {}", guard.sent + 1),
                location: None,
            };
            if let Err(status) = responses.send(feature).await {
                println!("server: ListFeatures send failed: {}", status.code());
                return Err(status);
            }
            guard.sent += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Echoes each note back.
    async fn route_chat(
        &self,
        request: Request<Streaming<RouteNote>>,
        mut responses: ResponseSink<RouteNote>,
    ) -> Result<(), Status> {
        let mut guard = self.guard("RouteChat");
        let mut notes = request.into_inner();
        while let Some(note) = notes.message().await? {
            responses.send(note).await?;
            guard.sent += 1;
        }
        Ok(())
    }

    async fn get_feature(&self, _: Request<Point>) -> Result<Response<Feature>, Status> {
        Err(Status::unimplemented("not part of this example"))
    }

    async fn record_route(
        &self,
        _: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        Err(Status::unimplemented("not part of this example"))
    }
}

/// Waits (a bounded time) for the server to report that a handler ended.
async fn server_saw(reports: &mut mpsc::UnboundedReceiver<String>) {
    match tokio::time::timeout(Duration::from_secs(5), reports.recv()).await {
        Ok(Some(line)) => println!("{line}"),
        _ => println!("server: no handler stopped within 5 s"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (report, mut reports) = mpsc::unbounded_channel();
    let (server, addr) =
        local::start(Server::builder().add_service(RouteGuideServer::new(Guide { report })))
            .await?;
    let client = RouteGuideClient::new(Channel::from_target(&addr.to_string())?);

    println!("== server streaming ==");
    let mut features = client
        .list_features(Rectangle::default())
        .await?
        .into_inner();
    for _ in 0..3 {
        if let Some(feature) = features.message().await? {
            println!("client: got {}", feature.name);
        }
    }
    println!("client: dropping the response stream");
    drop(features);
    server_saw(&mut reports).await;

    println!("== bidi streaming ==");
    let (mut notes_out, mut notes_in) = client.route_chat(Request::new(())).await?;
    for text in ["one", "two"] {
        notes_out
            .send(RouteNote {
                location: None,
                message: text.into(),
            })
            .await?;
        if let Some(echo) = notes_in.message().await? {
            println!("client: echoed {:?}", echo.message);
        }
    }
    println!("client: cancelling the call");
    notes_out.cancel();
    match notes_in.message().await {
        Ok(next) => println!("client: stream went on: {next:?}"),
        Err(status) => println!("client: the stream ended with {}", status.code()),
    }
    server_saw(&mut reports).await;

    server.graceful_stop().await;
    Ok(())
}
