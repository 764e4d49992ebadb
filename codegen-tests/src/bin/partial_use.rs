//! Uses a small part of the generated code from a private module, as an
//! application's `main.rs` does. The rest must not warn: CI builds this
//! binary under `clippy -D warnings`.

mod pb {
    ferrogrpc::include_proto!("routeguide");
}

fn main() {
    let channel = ferrogrpc::client::Channel::from_target("127.0.0.1:1").expect("a valid target");
    let _client = pb::route_guide_client::RouteGuideClient::new(channel);
}
