//! The route guide client: calls each method once.
//! Usage: `route_guide_client [TARGET]` (default 127.0.0.1:10000).

use ferrogrpc::{client::Channel, Request};
use ferrogrpc_examples::routeguide::{
    route_guide_client::RouteGuideClient, Point, Rectangle, RouteNote,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:10000".into());
    let client = RouteGuideClient::new(Channel::from_target(&target)?);

    // Unary.
    let point = Point {
        latitude: 409_146_138,
        longitude: -746_188_906,
    };
    let feature = client.get_feature(point).await?.into_inner();
    println!("GetFeature: {:?} at {:?}", feature.name, feature.location);

    // Server streaming.
    let rect = Rectangle {
        lo: Some(Point {
            latitude: 400_000_000,
            longitude: -750_000_000,
        }),
        hi: Some(Point {
            latitude: 420_000_000,
            longitude: -730_000_000,
        }),
    };
    let mut features = client.list_features(rect).await?.into_inner();
    while let Some(f) = features.message().await? {
        println!("ListFeatures: {}", f.name);
    }

    // Client streaming.
    let mut route = client.record_route(Request::new(())).await?;
    for (latitude, longitude) in [(407_838_351, -746_143_763), (408_122_808, -743_999_179)] {
        route
            .send(Point {
                latitude,
                longitude,
            })
            .await?;
    }
    let summary = route.close_and_recv().await?.into_inner();
    println!(
        "RecordRoute: {} points, {} features, {} m",
        summary.point_count, summary.feature_count, summary.distance
    );

    // Bidirectional streaming.
    let (mut notes_out, mut notes_in) = client.route_chat(Request::new(())).await?;
    for (i, msg) in ["first", "second", "third"].into_iter().enumerate() {
        let location = Some(Point {
            latitude: 0,
            longitude: (i % 2) as i32,
        });
        notes_out
            .send(RouteNote {
                location,
                message: msg.into(),
            })
            .await?;
    }
    notes_out.close()?;
    while let Some(note) = notes_in.message().await? {
        println!("RouteChat: got {:?}", note.message);
    }
    Ok(())
}
