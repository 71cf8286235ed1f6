//! `[log]`: how `docket serve` writes its log lines.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The format of the node's log lines on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, each starting `node_id=N`.
    #[default]
    Text,
    /// One JSON object per line, with `node_id` and the event's and its spans' fields.
    Json,
}

impl LogFormat {
    /// Every format, as written in the file, the environment and the flag.
    pub const NAMES: &'static [&'static str] = &["text", "json"];

    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(raw: &str) -> Result<LogFormat, String> {
        match raw {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "{other:?} is not a log format: use {}",
                LogFormat::NAMES.join(" or ")
            )),
        }
    }
}

/// `[log]` section. The level stays with `DOCKET_LOG` (tracing's filter syntax).
///
/// ```toml
/// [log]
/// format = "json"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: LogFormat,
}
