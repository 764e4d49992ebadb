//! `ferrogrpc`: list, describe, call and health-check any gRPC server.
//!
//! The command works against any server, not only ferrogrpc's: it learns
//! the server's services by server reflection (`grpc.reflection.v1`, or
//! `v1alpha` for older servers) or from `.proto` files compiled in-process
//! (no protoc), and speaks protobuf's JSON mapping on the command line.
//! Flags follow grpcurl's names where grpcurl has one.

mod bench;
mod call;
mod channelz;
mod connect;
mod describe;
mod descriptors;
mod error;
mod health;
mod plot;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::{connect::ConnectArgs, descriptors::SourceArgs, error::Error};

/// Lists, describes, calls and health-checks gRPC servers.
#[derive(Parser, Debug)]
#[command(name = "ferrogrpc", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Lists the server's services, or the methods of one service.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        source: SourceArgs,
        /// A service: list its methods instead.
        service: Option<String>,
    },
    /// Describes a service, method, message or enum, as proto source
    /// (every service when no symbol is given).
    Describe {
        #[command(flatten)]
        connect: ConnectArgs,
        #[command(flatten)]
        source: SourceArgs,
        /// A fully-qualified name, e.g. `grpc.testing.TestService`,
        /// `grpc.testing.TestService.UnaryCall` or `grpc.testing.SimpleRequest`.
        symbol: Option<String>,
    },
    /// Calls a method with JSON requests and prints the responses as JSON,
    /// one per line.
    Call(call::CallArgs),
    /// Checks a server's health (`grpc.health.v1`); exits 0 when SERVING.
    Health(health::HealthArgs),
    /// Shows the server's channelz: servers, listen sockets and
    /// connections, channels and subchannels, with states and counts.
    Channelz(channelz::ChannelzArgs),
    /// Load-tests one method, as ghz: calls in flight, connections, a count
    /// or a duration, a rate limit; prints latency percentiles, a histogram
    /// and the status codes.
    Bench(bench::BenchArgs),
    /// Prints a shell completion script, e.g.
    /// `ferrogrpc completions bash > ~/.local/share/bash-completion/completions/ferrogrpc`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("ferrogrpc: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli.command));
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("ferrogrpc: {err}");
            ExitCode::from(err.exit_code())
        }
    }
}

async fn run(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::List {
            connect,
            source,
            service,
        } => {
            let mut source = source.open(&connect).await?;
            let lines = match service {
                None => source.list_services().await?,
                Some(service) => source.list_methods(&service).await?,
            };
            for line in lines {
                println!("{line}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Describe {
            connect,
            source,
            symbol,
        } => {
            let mut source = source.open(&connect).await?;
            let text = match symbol {
                Some(symbol) => {
                    let pool = source.pool_for(&symbol).await?;
                    describe::describe(&pool, &symbol)?
                }
                None => {
                    let mut out = String::new();
                    for service in source.list_services().await? {
                        let pool = source.pool_for(&service).await?;
                        out.push_str(&describe::describe(&pool, &service)?);
                    }
                    out
                }
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Call(args) => call::run(args).await,
        Command::Health(args) => health::run(args).await,
        Command::Channelz(args) => channelz::run(args).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "ferrogrpc",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
