//! The example servers say they listen only once they do, name the address
//! when it is taken, and stop gracefully on SIGTERM and SIGINT.
#![cfg(unix)]

use std::{
    io::{BufRead, BufReader, Read},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const SERVERS: [(&str, &str); 2] = [
    ("helloworld_server", env!("CARGO_BIN_EXE_helloworld_server")),
    (
        "route_guide_server",
        env!("CARGO_BIN_EXE_route_guide_server"),
    ),
];

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn start(binary: &str, addr: &str) -> Child {
    Command::new(binary)
        .arg(addr)
        .env_remove("FERROGRPC_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit (at most 20 s) and returns its status code.
fn exit_code(child: &mut Child) -> Option<i32> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn listening_means_bound_and_a_taken_port_is_named() {
    for (name, binary) in SERVERS {
        let addr = free_addr();
        let mut server = start(binary, &addr);
        let mut stdout = BufReader::new(server.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(
            line.contains(&format!("listening on {addr}")),
            "{name}: {line}"
        );
        // Printed after the bind: the port takes connections now.
        TcpStream::connect(&addr).unwrap();

        let mut second = start(binary, &addr);
        assert_eq!(exit_code(&mut second), Some(1), "{name}");
        let mut stderr = String::new();
        second
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(
            stderr.trim(),
            format!("{name}: cannot listen on {addr}: address already in use")
        );

        server.kill().unwrap();
        server.wait().unwrap();
    }
}

#[test]
fn sigterm_and_sigint_stop_gracefully() {
    for (name, binary) in SERVERS {
        for signal in ["TERM", "INT"] {
            let addr = free_addr();
            let mut server = start(binary, &addr);
            let mut stdout = BufReader::new(server.stdout.take().unwrap());
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            assert!(line.contains("listening"), "{name}: {line}");
            let kill = Command::new("kill")
                .args([format!("-{signal}"), server.id().to_string()])
                .status()
                .unwrap();
            assert!(kill.success());
            assert_eq!(exit_code(&mut server), Some(0), "{name} on SIG{signal}");
            let mut rest = String::new();
            stdout.read_to_string(&mut rest).unwrap();
            assert!(rest.contains("stopping"), "{name} on SIG{signal}: {rest}");
        }
    }
}
