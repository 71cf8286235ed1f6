//! What can go wrong while loading a configuration, and where a value came from.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Where the effective value of a field came from. Every [`ConfigError::InvalidValue`]
/// carries one, so the operator knows which of the four layers to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (see the `*_DEFAULT` constants).
    Default,
    /// A default computed from another field, e.g. `raft_addr` from `node_id`.
    Derived {
        /// Dotted path of the field the default was computed from.
        from: &'static str,
    },
    /// The configuration file, at a 1-based line.
    File {
        /// The file as it was given to [`NodeConfig::load`](crate::NodeConfig::load).
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
    },
    /// A `DOCKET_*` environment variable.
    Env {
        /// The variable's name, e.g. `DOCKET_RAFT_HEARTBEAT_INTERVAL_MS`.
        var: String,
    },
    /// A command-line flag, passed in through [`Overrides`](crate::Overrides).
    Flag {
        /// The flag's name, e.g. `--node-id`.
        flag: &'static str,
    },
    /// The value was set in code on a [`NodeConfig`](crate::NodeConfig) that was then passed
    /// to [`NodeConfig::validate`](crate::NodeConfig::validate).
    Programmatic,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Derived { from } => write!(f, "default derived from {from}"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => f.write_str(var),
            Origin::Flag { flag } => f.write_str(flag),
            Origin::Programmatic => f.write_str("value set in code"),
        }
    }
}

/// Why a configuration could not be loaded. Every variant names the file, the variable or
/// the field the operator has to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read (missing, unreadable, not UTF-8, too large).
    #[error("cannot read config file {}: {source}", path.display())]
    FileUnreadable {
        /// The file as given.
        path: PathBuf,
        /// What the OS (or the size check) said.
        #[source]
        source: io::Error,
    },

    /// The file is not valid TOML, or a value has the wrong type, or a key is unknown.
    #[error("{}: {message}{}", location(path, *line, *column), quote_line(source_line))]
    FileSyntax {
        /// The file as given.
        path: PathBuf,
        /// 1-based line of the offending text, when the parser reported where it is.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, with `line`.
        column: Option<usize>,
        /// The offending line of the file, trimmed (it names the key when the message
        /// does not, e.g. for a type error).
        source_line: Option<String>,
        /// The parser's message, e.g. ``unknown field `hearbeat_interval_ms` ``.
        message: String,
    },

    /// A value is well-typed but not acceptable.
    #[error("{field} (from {origin}): {message}")]
    InvalidValue {
        /// Dotted path of the field, e.g. `raft.election_timeout_min_ms`.
        field: &'static str,
        /// Where the rejected value came from.
        origin: Origin,
        /// What is wrong and, where it is not obvious, why the rule exists.
        message: String,
    },

    /// A `DOCKET_*` environment variable that names no field and is not reserved
    /// (see [`RESERVED_ENV_VARS`](crate::RESERVED_ENV_VARS)): almost always a typo, which
    /// would otherwise be silently ignored.
    #[error(
        "unknown environment variable {var}{}: a DOCKET_* variable must name a config field \
         (DOCKET_NODE_ID, DOCKET_RAFT_HEARTBEAT_INTERVAL_MS, ...) or be one of {}",
        suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default(),
        crate::RESERVED_ENV_VARS.join(", ")
    )]
    UnknownEnvVar {
        /// The variable's name.
        var: String,
        /// The closest known variable, if one is close enough to be a likely typo.
        suggestion: Option<&'static str>,
    },
}

impl ConfigError {
    /// Dotted path of the field this error is about, when it is about one field.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ConfigError::InvalidValue { field, .. } => Some(field),
            _ => None,
        }
    }

    /// Where the rejected value came from, for [`ConfigError::InvalidValue`].
    pub fn origin(&self) -> Option<&Origin> {
        match self {
            ConfigError::InvalidValue { origin, .. } => Some(origin),
            _ => None,
        }
    }
}

fn location(path: &std::path::Path, line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!("{}:{line}:{column}", path.display()),
        (Some(line), None) => format!("{}:{line}", path.display()),
        _ => path.display().to_string(),
    }
}

fn quote_line(source_line: &Option<String>) -> String {
    match source_line {
        Some(text) if !text.is_empty() => format!(" (in `{text}`)"),
        _ => String::new(),
    }
}
