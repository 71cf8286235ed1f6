//! The one table of stable rejection codes.
//!
//! A code is part of the ledger: once recorded it must mean the same thing forever. Codes
//! are never renumbered and never reused; a retired code keeps its row. The numeric value is
//! what the canonical encoding stores; the name is what JSON and the CLI show.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! reject_codes {
    ($($variant:ident = $num:literal, $name:literal, $doc:literal;)+) => {
        /// Why a proposal was rejected. See [`RejectCode::ALL`] for the table.
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        #[repr(u16)]
        pub enum RejectCode {
            $(#[doc = $doc] $variant = $num,)+
        }

        impl RejectCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [RejectCode] = &[$(RejectCode::$variant,)+];

            /// The stable name (`SCREAMING_SNAKE_CASE`) shown in JSON, logs and the CLI.
            pub fn name(self) -> &'static str {
                match self { $(RejectCode::$variant => $name,)+ }
            }

            /// One line saying what the code means.
            pub fn description(self) -> &'static str {
                match self { $(RejectCode::$variant => $doc,)+ }
            }

            pub fn number(self) -> u16 {
                self as u16
            }

            pub fn from_number(number: u16) -> Option<RejectCode> {
                match number { $($num => Some(RejectCode::$variant),)+ _ => None }
            }
        }

        impl FromStr for RejectCode {
            type Err = UnknownCode;
            fn from_str(s: &str) -> Result<Self, UnknownCode> {
                match s { $($name => Ok(RejectCode::$variant),)+ _ => Err(UnknownCode(s.to_owned())) }
            }
        }
    };
}

reject_codes! {
    BadSignature = 1, "BAD_SIGNATURE",
        "the signature does not verify strictly against the author key and the proposal id";
    WrongLedger = 2, "WRONG_LEDGER",
        "the proposal was signed for a different ledger id than this ledger's";
    Unauthorized = 3, "UNAUTHORIZED",
        "no role held by the author may take this action under the active constitution";
    UnknownDomain = 4, "UNKNOWN_DOMAIN",
        "the active constitution declares no such domain";
    UnknownAction = 5, "UNKNOWN_ACTION",
        "the domain declares no such action, or the action does not belong to the domain";
    InvalidTransition = 6, "INVALID_TRANSITION",
        "the subject's lifecycle state does not allow this action";
    Schema = 7, "SCHEMA",
        "the payload is not a map, or lacks a field the action requires, or a field has the wrong type";
    Invariant = 8, "INVARIANT",
        "a named domain invariant of the action does not hold (the detail names it)";
    DependencyRejected = 9, "DEPENDENCY_REJECTED",
        "a proposal this one depends on was rejected, so this one is rejected too";
    DependencyExpired = 10, "DEPENDENCY_EXPIRED",
        "the proposal stayed deferred past the deferral expiry without its dependencies being decided";
    LimitExceeded = 11, "LIMIT_EXCEEDED",
        "a limit of the constitution was exceeded (payload bytes, dependencies, deferred set, ...)";
    Constitution = 12, "CONSTITUTION",
        "a constitutional amendment is invalid, or is stale because the active constitution changed";
    AlreadyApproved = 13, "ALREADY_APPROVED",
        "the author already approved this subject's pending quorum action; approvals count distinct principals";
    DependencyFailed = 14, "DEPENDENCY_FAILED",
        "an effect this proposal depends on the outcome of failed, or its execution agent refused it";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rejection code {0:?}")]
pub struct UnknownCode(String);

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for RejectCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(self.name())
        } else {
            serializer.serialize_u16(self.number())
        }
    }
}

impl<'de> Deserialize<'de> for RejectCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let name = String::deserialize(deserializer)?;
            name.parse().map_err(D::Error::custom)
        } else {
            let number = u16::deserialize(deserializer)?;
            RejectCode::from_number(number)
                .ok_or_else(|| D::Error::custom(format!("unknown rejection code number {number}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table is append-only. This pins every (number, name) pair ever issued; editing a
    /// row here means breaking the meaning of recorded ledgers.
    #[test]
    fn codes_are_pinned() {
        let pinned: Vec<(u16, &str)> = RejectCode::ALL
            .iter()
            .map(|c| (c.number(), c.name()))
            .collect();
        assert_eq!(
            pinned,
            vec![
                (1, "BAD_SIGNATURE"),
                (2, "WRONG_LEDGER"),
                (3, "UNAUTHORIZED"),
                (4, "UNKNOWN_DOMAIN"),
                (5, "UNKNOWN_ACTION"),
                (6, "INVALID_TRANSITION"),
                (7, "SCHEMA"),
                (8, "INVARIANT"),
                (9, "DEPENDENCY_REJECTED"),
                (10, "DEPENDENCY_EXPIRED"),
                (11, "LIMIT_EXCEEDED"),
                (12, "CONSTITUTION"),
                (13, "ALREADY_APPROVED"),
                (14, "DEPENDENCY_FAILED"),
            ]
        );
    }

    #[test]
    fn names_and_numbers_round_trip() {
        for code in RejectCode::ALL {
            assert_eq!(code.name().parse::<RejectCode>(), Ok(*code));
            assert_eq!(RejectCode::from_number(code.number()), Some(*code));
            assert!(!code.description().is_empty());
        }
        assert!(RejectCode::from_number(0).is_none());
    }
}
