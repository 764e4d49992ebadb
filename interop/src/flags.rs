//! A small command-line parser for the interop flag conventions.
//!
//! Accepted forms, with one or two leading dashes:
//!
//! - `--name=value` and `--name value` for every flag;
//! - for boolean flags also a bare `--name` (true), and `--name true|false`
//!   when the next argument is a boolean word (`true`, `false`, `1`, `0`,
//!   `yes`, `no`, `on`, `off`).
//!
//! A flag given twice keeps its last value. Unknown flags and positional
//! arguments are errors. `-h` / `--help` asks for the usage text.

use std::{collections::HashMap, fmt, str::FromStr};

/// Whether a flag takes a value or is a switch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A boolean switch: bare, `=BOOL` or followed by a boolean word.
    Bool,
    /// A flag with a value.
    Value,
}

/// The description of one flag.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    /// Name without dashes, e.g. `server_port`.
    pub name: &'static str,
    /// Switch or value.
    pub kind: Kind,
    /// Default shown in the usage text (empty: none).
    pub default: &'static str,
    /// One-line help.
    pub help: &'static str,
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// `-h` or `--help` was given.
    Help,
    /// A malformed, unknown or badly valued flag.
    Bad(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Help => f.write_str("help requested"),
            Error::Bad(msg) => f.write_str(msg),
        }
    }
}

/// Parsed flags.
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<&'static str, String>,
}

/// Parses a boolean word.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" => Some(true),
        "false" | "0" | "no" | "n" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `args` (without the program name) against `specs`.
///
/// # Errors
/// [`Error::Help`] for `-h`/`--help`; [`Error::Bad`] for anything not
/// understood.
pub fn parse(args: impl IntoIterator<Item = String>, specs: &[Spec]) -> Result<Flags, Error> {
    let mut flags = Flags::default();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            return Err(Error::Bad(format!("unexpected argument {arg:?}")));
        };
        if body == "h" || body == "help" {
            return Err(Error::Help);
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let spec = specs
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Bad(format!("unknown flag --{name}")))?;
        let value = match (spec.kind, inline) {
            (Kind::Bool, Some(v)) => match parse_bool(&v) {
                Some(b) => b.to_string(),
                None => return Err(Error::Bad(format!("--{name}: not a boolean: {v:?}"))),
            },
            (Kind::Bool, None) => match args.peek().and_then(|next| parse_bool(next)) {
                Some(b) => {
                    args.next();
                    b.to_string()
                }
                None => "true".to_string(),
            },
            (Kind::Value, Some(v)) => v,
            (Kind::Value, None) => args
                .next()
                .ok_or_else(|| Error::Bad(format!("--{name} needs a value")))?,
        };
        flags.values.insert(spec.name, value);
    }
    Ok(flags)
}

/// The usage text: one line per flag.
pub fn usage(program: &str, summary: &str, specs: &[Spec]) -> String {
    let mut text = format!("{summary}\n\nusage: {program} [FLAGS]\n\nflags:\n");
    for spec in specs {
        let arg = match spec.kind {
            Kind::Bool => format!("--{}[=BOOL]", spec.name),
            Kind::Value => format!("--{}=VALUE", spec.name),
        };
        let default = if spec.default.is_empty() {
            String::new()
        } else {
            format!(" (default: {})", spec.default)
        };
        text.push_str(&format!("  {arg:<52} {}{default}\n", spec.help));
    }
    text
}

impl Flags {
    /// The value of a flag, if it was given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// A string flag, or `default`.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or(default).to_string()
    }

    /// A boolean flag; `false` when not given.
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).and_then(parse_bool).unwrap_or(false)
    }

    /// A flag parsed as `T`, or `default` when not given.
    ///
    /// # Errors
    /// When the value does not parse.
    pub fn parse<T: FromStr>(&self, name: &str, default: T) -> Result<T, Error>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| Error::Bad(format!("--{name}={text}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPECS: &[Spec] = &[
        Spec {
            name: "port",
            kind: Kind::Value,
            default: "",
            help: "",
        },
        Spec {
            name: "use_tls",
            kind: Kind::Bool,
            default: "false",
            help: "",
        },
    ];

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_value_forms() {
        let f = parse(args(&["--port=1", "-use_tls"]), SPECS).unwrap();
        assert_eq!(f.parse("port", 0u16), Ok(1));
        assert!(f.bool("use_tls"));
        let f = parse(args(&["--use_tls", "false", "--port", "2"]), SPECS).unwrap();
        assert_eq!(f.parse("port", 0u16), Ok(2));
        assert!(!f.bool("use_tls"));
        let f = parse(args(&["--use_tls=no"]), SPECS).unwrap();
        assert!(!f.bool("use_tls"));
        assert_eq!(f.parse("port", 7u16), Ok(7));
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse(args(&["--nope"]), SPECS),
            Err(Error::Bad(_))
        ));
        assert!(matches!(
            parse(args(&["--port"]), SPECS),
            Err(Error::Bad(_))
        ));
        assert!(matches!(parse(args(&["stray"]), SPECS), Err(Error::Bad(_))));
        assert!(matches!(
            parse(args(&["--use_tls=maybe"]), SPECS),
            Err(Error::Bad(_))
        ));
        assert_eq!(parse(args(&["--help"]), SPECS).unwrap_err(), Error::Help);
        let f = parse(args(&["--port=x"]), SPECS).unwrap();
        assert!(f.parse("port", 0u16).is_err());
    }
}
