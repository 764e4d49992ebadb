//! Generated code shared by the example binaries.

/// The `helloworld` package.
pub mod helloworld {
    ferrogrpc::include_proto!("helloworld");
}

/// The `routeguide` package.
pub mod routeguide {
    ferrogrpc::include_proto!("routeguide");
}
