//! Command-line flags of the two binaries: `--name=value` or `--name value`
//! for a value, a bare `--name` for a switch. Unknown flags are errors.

use std::{collections::HashMap, str::FromStr};

/// One flag the program accepts.
#[derive(Clone, Copy, Debug)]
pub struct Flag {
    /// The name, without dashes.
    pub name: &'static str,
    /// Whether it is a bare switch (no value).
    pub switch: bool,
    /// The default value shown in the usage (empty: none).
    pub default: &'static str,
    /// What it does.
    pub help: &'static str,
}

/// The parsed flags.
#[derive(Debug, Default)]
pub struct Parsed {
    values: HashMap<&'static str, String>,
    defaults: HashMap<&'static str, &'static str>,
}

/// The usage text of a program with `flags`.
pub fn usage(program: &str, flags: &[Flag]) -> String {
    let mut text = format!("usage: {program} [flags]\n");
    for flag in flags {
        let value = if flag.switch { "" } else { "=VALUE" };
        let default = if flag.default.is_empty() {
            String::new()
        } else {
            format!(" (default {})", flag.default)
        };
        text.push_str(&format!(
            "  --{}{value}  {}{default}\n",
            flag.name, flag.help
        ));
    }
    text
}

/// Parses `args` (without the program name).
///
/// # Errors
/// A message naming the argument that is not understood; `"help"` for
/// `-h` / `--help`.
pub fn parse(args: impl IntoIterator<Item = String>, flags: &[Flag]) -> Result<Parsed, String> {
    let mut parsed = Parsed {
        values: HashMap::new(),
        defaults: flags.iter().map(|f| (f.name, f.default)).collect(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Err("help".to_string());
        }
        let Some(body) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument {arg:?}"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (body, None),
        };
        let Some(flag) = flags.iter().find(|f| f.name == name) else {
            return Err(format!("unknown flag --{name}"));
        };
        let value = match (flag.switch, inline) {
            (true, None) => "true".to_string(),
            (_, Some(value)) => value,
            (false, None) => args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?,
        };
        parsed.values.insert(flag.name, value);
    }
    Ok(parsed)
}

impl Parsed {
    /// The flag's value, or its default.
    pub fn text(&self, name: &str) -> &str {
        self.values
            .get(name)
            .map(String::as_str)
            .or_else(|| self.defaults.get(name).copied())
            .unwrap_or("")
    }

    /// The flag's value parsed as `T`.
    ///
    /// # Errors
    /// A message naming the flag and the value that does not parse.
    pub fn get<T: FromStr>(&self, name: &str) -> Result<T, String> {
        let text = self.text(name);
        text.parse()
            .map_err(|_| format!("--{name}: cannot use {text:?}"))
    }

    /// Whether a switch is on (`true`, `1`, `yes`, `on`).
    pub fn on(&self, name: &str) -> bool {
        matches!(self.text(name), "true" | "1" | "yes" | "on")
    }
}
