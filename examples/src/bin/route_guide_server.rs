//! The route guide server: one method of each RPC kind.
//! Usage: `route_guide_server [ADDR]` (default 127.0.0.1:10000). Stops
//! gracefully on Ctrl-C or SIGTERM.

use std::{
    collections::HashMap,
    process::ExitCode,
    sync::Mutex,
    time::{Duration, Instant},
};

use ferrogrpc::{server::ResponseSink, server::Server, Request, Response, Status, Streaming};
use ferrogrpc_examples::{
    routeguide::{
        route_guide_server::{RouteGuide, RouteGuideServer},
        Feature, Point, Rectangle, RouteNote, RouteSummary,
    },
    serving::{bind, stop_signal},
};

struct Guide {
    features: Vec<Feature>,
    notes: Mutex<HashMap<(i32, i32), Vec<RouteNote>>>,
}

fn in_rect(p: &Point, r: &Rectangle) -> bool {
    let (lo, hi) = (r.lo.unwrap_or_default(), r.hi.unwrap_or_default());
    let (lat_lo, lat_hi) = (lo.latitude.min(hi.latitude), lo.latitude.max(hi.latitude));
    let (lon_lo, lon_hi) = (
        lo.longitude.min(hi.longitude),
        lo.longitude.max(hi.longitude),
    );
    (lat_lo..=lat_hi).contains(&p.latitude) && (lon_lo..=lon_hi).contains(&p.longitude)
}

/// Great-circle distance in metres between two E7 points.
fn distance(a: &Point, b: &Point) -> i32 {
    let rad = |e7: i32| f64::from(e7) / 1e7 * std::f64::consts::PI / 180.0;
    let (la1, la2) = (rad(a.latitude), rad(b.latitude));
    let (dla, dlo) = (la2 - la1, rad(b.longitude) - rad(a.longitude));
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    (6_371_000.0 * 2.0 * h.sqrt().atan2((1.0 - h).sqrt())) as i32
}

impl Guide {
    fn feature_at(&self, p: &Point) -> Option<&Feature> {
        self.features
            .iter()
            .find(|f| f.location.as_ref() == Some(p))
    }
}

impl RouteGuide for Guide {
    async fn get_feature(&self, request: Request<Point>) -> Result<Response<Feature>, Status> {
        let p = request.into_inner();
        let feature = self.feature_at(&p).cloned().unwrap_or(Feature {
            name: String::new(),
            location: Some(p),
        });
        Ok(Response::new(feature))
    }

    async fn list_features(
        &self,
        request: Request<Rectangle>,
        mut responses: ResponseSink<Feature>,
    ) -> Result<(), Status> {
        let rect = request.into_inner();
        for f in &self.features {
            if f.location.as_ref().is_some_and(|p| in_rect(p, &rect)) {
                responses.send_ref(f).await?;
            }
        }
        Ok(())
    }

    async fn record_route(
        &self,
        request: Request<Streaming<Point>>,
    ) -> Result<Response<RouteSummary>, Status> {
        let start = Instant::now();
        let mut points = request.into_inner();
        let mut summary = RouteSummary::default();
        let mut last: Option<Point> = None;
        while let Some(p) = points.message().await? {
            summary.point_count += 1;
            if self.feature_at(&p).is_some() {
                summary.feature_count += 1;
            }
            if let Some(l) = &last {
                summary.distance += distance(l, &p);
            }
            last = Some(p);
        }
        summary.elapsed_time = start.elapsed().as_secs() as i32;
        Ok(Response::new(summary))
    }

    async fn route_chat(
        &self,
        request: Request<Streaming<RouteNote>>,
        mut responses: ResponseSink<RouteNote>,
    ) -> Result<(), Status> {
        let mut notes = request.into_inner();
        while let Some(note) = notes.message().await? {
            let loc = note.location.unwrap_or_default();
            let earlier = {
                let mut all = self.notes.lock().unwrap_or_else(|e| e.into_inner());
                let at = all.entry((loc.latitude, loc.longitude)).or_default();
                let earlier = at.clone();
                at.push(note);
                earlier
            };
            for n in earlier {
                responses.send(n).await?;
            }
        }
        Ok(())
    }
}

fn sample_features() -> Vec<Feature> {
    let places = [
        (
            "Patriots Path, Mendham, NJ 07945, USA",
            407_838_351,
            -746_143_763,
        ),
        (
            "101 New Jersey 10, Whippany, NJ 07981, USA",
            408_122_808,
            -743_999_179,
        ),
        ("U.S. 6, Shohola, PA 18458, USA", 413_628_156, -749_015_468),
        (
            "5 Conners Road, Kingston, NY 12401, USA",
            419_999_544,
            -740_371_136,
        ),
        (
            "Mid Hudson Psychiatric Center, New Hampton, NY 10958, USA",
            414_008_389,
            -743_951_297,
        ),
    ];
    places
        .into_iter()
        .map(|(name, latitude, longitude)| Feature {
            name: name.into(),
            location: Some(Point {
                latitude,
                longitude,
            }),
        })
        .collect()
}

#[tokio::main]
async fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10000".into());
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(err) => {
            eprintln!("route_guide_server: cannot handle signals: {err}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match bind(&addr).await {
        Ok(listener) => listener,
        Err(message) => {
            eprintln!("route_guide_server: {message}");
            return ExitCode::FAILURE;
        }
    };
    let guide = Guide {
        features: sample_features(),
        notes: Mutex::default(),
    };
    let server = Server::builder()
        .add_service(RouteGuideServer::new(guide))
        .build();
    println!("route guide server listening on {addr}");
    tokio::select! {
        result = server.serve_listener(listener) => {
            if let Err(err) = result {
                eprintln!("route_guide_server: {err}");
                return ExitCode::FAILURE;
            }
        }
        () = stop => {
            // No new calls; those under way (a RouteChat may last as long as
            // its client likes) get a few seconds to finish.
            println!("route guide server stopping");
            server.graceful_stop_timeout(Duration::from_secs(5)).await;
        }
    }
    ExitCode::SUCCESS
}
