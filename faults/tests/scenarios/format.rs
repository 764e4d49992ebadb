//! The binaries' flag parser and the client's output format, which every
//! scenario relies on.

mod flags {
    use faults::flags::*;

    const FLAGS: &[Flag] = &[
        Flag {
            name: "addr",
            switch: false,
            default: "127.0.0.1:0",
            help: "",
        },
        Flag {
            name: "calls",
            switch: false,
            default: "10",
            help: "",
        },
        Flag {
            name: "quiet",
            switch: true,
            default: "",
            help: "",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn values_defaults_and_switches() {
        let p = parse(args(&["--calls", "5", "--quiet"]), FLAGS).unwrap();
        assert_eq!(p.get::<u32>("calls").unwrap(), 5);
        assert_eq!(p.text("addr"), "127.0.0.1:0");
        assert!(p.on("quiet"));
        let p = parse(args(&["--addr=10.0.0.1:5", "--quiet=false"]), FLAGS).unwrap();
        assert_eq!(p.text("addr"), "10.0.0.1:5");
        assert!(!p.on("quiet"));
    }

    #[test]
    fn mistakes_are_named() {
        assert!(parse(args(&["--nope"]), FLAGS)
            .unwrap_err()
            .contains("--nope"));
        assert!(parse(args(&["--calls"]), FLAGS)
            .unwrap_err()
            .contains("needs a value"));
        assert!(parse(args(&["calls"]), FLAGS)
            .unwrap_err()
            .contains("unexpected"));
        let p = parse(args(&["--calls", "x"]), FLAGS).unwrap();
        assert!(p.get::<u32>("calls").unwrap_err().contains("--calls"));
    }
}

mod report {
    use faults::report::*;

    #[test]
    fn lines_parse_back() {
        let call = Call {
            seq: 3,
            worker: 1,
            start_ms: 1000,
            elapsed_ms: 25,
            wfr: true,
            code: "UNAVAILABLE".into(),
            server_pid: None,
            msg: "connecting to 10.0.0.1:5 failed: connection refused\n(os error 111)".into(),
        };
        let ok = Call {
            seq: 4,
            code: "OK".into(),
            server_pid: Some(77),
            msg: "Hello 4".into(),
            ..call.clone()
        };
        let pending = Pending {
            seq: 5,
            start_ms: 1100,
            wfr: false,
        };
        let state = StateChange {
            at_ms: 990,
            state: "TRANSIENT_FAILURE".into(),
        };
        let output = [
            "CONFIG target=10.0.0.1:5 retry=off".to_string(),
            "some log line".to_string(),
            state_line(&state),
            call_line(&call),
            call_line(&ok),
            pending_line(&pending),
        ]
        .join("\n");
        let report = Report::parse(&output).unwrap();
        assert_eq!(report.config["target"], "10.0.0.1:5");
        assert_eq!(report.states, vec![state]);
        assert_eq!(report.calls[0].msg, call.msg.replace('\n', " "));
        assert_eq!(report.calls[1], ok);
        assert_eq!(report.pending, vec![pending]);
        assert_eq!(report.ok_count(), 1);
        assert_eq!(report.failures_by_code()["UNAVAILABLE"], 1);
        let summary = report.summary_lines();
        assert_eq!(summary[0], "SUMMARY calls=3 ok=1 failed=1 pending=1");
        assert_eq!(summary[1], "FAILED code=UNAVAILABLE count=1");
        assert!(summary[2].starts_with("MESSAGE code=UNAVAILABLE count=1 msg=connecting"));
    }

    #[test]
    fn a_bad_line_is_an_error() {
        assert!(Report::parse("CALL seq=x").is_err());
    }
}
