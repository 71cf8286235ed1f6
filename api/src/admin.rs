//! Cluster operations as signed requests: an [`AdminOp`] is filed as a proposal of the
//! constitution domain [`ADMIN_DOMAIN`], signed by an operator, and sent to the admin
//! route that performs it (the node side is `docket_service::admin`).

use docket_core::constitution::Constitution;
use docket_core::proposal::public_key;
use docket_core::{LedgerId, Proposal, PublicKey, SignedProposal, Value};
use ed25519_dalek::SigningKey;

/// The constitution domain whose actions are cluster operations.
pub const ADMIN_DOMAIN: &str = "cluster";
/// The subject of `CLUSTER.INIT`; members are `node-N`.
pub const CLUSTER_SUBJECT: &str = "cluster";
/// How far an admin request's `issued_ms` may be from the leader's clock, either way (clock
/// skew between the operator's machine and the leader included).
pub const ADMIN_REQUEST_AGE_MAX_MS: u64 = 5 * 60 * 1000;

/// One cluster operation, as carried in an admin request's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// Write genesis with the constitution whose version (meaning hash) is `constitution`,
    /// at `node`, whose checkpoint key is `cosigner`.
    Init {
        constitution: String,
        node: u64,
        cosigner: PublicKey,
    },
    MemberAdd {
        node: u64,
        raft_addr: String,
        api_addr: String,
        learner: bool,
        /// The key the node cosigns checkpoints with (its status shows it).
        cosigner: PublicKey,
    },
    MemberPromote {
        node: u64,
    },
    MemberRemove {
        node: u64,
    },
    /// `node` was made the only voter of a new cluster from its own data after a majority
    /// of the voters was lost for good (`docket recover`): it kept `ledger_length` entries
    /// (everything it knew committed, up to Raft log index `log_index_committed`) and
    /// dropped `log_entries_dropped` Raft log entries after that, which it never knew
    /// committed. Filed by the recovered node itself on its first start (no route).
    Recovered {
        node: u64,
        ledger_length: u64,
        log_index_committed: u64,
        log_entries_dropped: u64,
    },
}

impl AdminOp {
    /// The constitution action this operation is filed as.
    pub fn action(&self) -> &'static str {
        match self {
            AdminOp::Init { .. } => "CLUSTER.INIT",
            AdminOp::MemberAdd { .. } => "CLUSTER.MEMBER_ADD",
            AdminOp::MemberPromote { .. } => "CLUSTER.MEMBER_PROMOTE",
            AdminOp::MemberRemove { .. } => "CLUSTER.MEMBER_REMOVE",
            AdminOp::Recovered { .. } => "CLUSTER.RECOVERED",
        }
    }

    /// The node this operation changes, if it changes one.
    pub fn node(&self) -> Option<u64> {
        match self {
            AdminOp::Init { .. } => None,
            AdminOp::MemberAdd { node, .. }
            | AdminOp::MemberPromote { node }
            | AdminOp::MemberRemove { node }
            | AdminOp::Recovered { node, .. } => Some(*node),
        }
    }

    pub fn subject(&self) -> String {
        match self.node() {
            Some(node) => format!("node-{node}"),
            None => CLUSTER_SUBJECT.to_owned(),
        }
    }

    /// The payload: the operation's fields and `issued_ms`.
    pub fn payload(&self, issued_ms: u64) -> Value {
        let issued = ("issued_ms", Value::Int(clamp(issued_ms)));
        match self {
            AdminOp::Init {
                constitution,
                node,
                cosigner,
            } => Value::map([
                ("constitution", Value::Str(constitution.clone())),
                ("node", Value::Int(clamp(*node))),
                ("cosigner", Value::Str(cosigner.to_hex())),
                issued,
            ]),
            AdminOp::MemberAdd {
                node,
                raft_addr,
                api_addr,
                learner,
                cosigner,
            } => Value::map([
                ("node", Value::Int(clamp(*node))),
                ("raft_addr", Value::Str(raft_addr.clone())),
                ("api_addr", Value::Str(api_addr.clone())),
                ("learner", Value::Bool(*learner)),
                ("cosigner", Value::Str(cosigner.to_hex())),
                issued,
            ]),
            AdminOp::MemberPromote { node } | AdminOp::MemberRemove { node } => {
                Value::map([("node", Value::Int(clamp(*node))), issued])
            }
            AdminOp::Recovered {
                node,
                ledger_length,
                log_index_committed,
                log_entries_dropped,
            } => Value::map([
                ("node", Value::Int(clamp(*node))),
                ("ledger_length", Value::Int(clamp(*ledger_length))),
                (
                    "log_index_committed",
                    Value::Int(clamp(*log_index_committed)),
                ),
                (
                    "log_entries_dropped",
                    Value::Int(clamp(*log_entries_dropped)),
                ),
                issued,
            ]),
        }
    }

    /// Signs this operation as the owner of `key`, for `ledger_id`, issued at `issued_ms`
    /// (the signer's clock, Unix milliseconds). `nonce` makes two otherwise identical
    /// requests distinct.
    pub fn sign(
        &self,
        ledger_id: &LedgerId,
        issued_ms: u64,
        nonce: u64,
        key: &SigningKey,
    ) -> SignedProposal {
        Proposal {
            format: docket_core::ProposalFormat::CURRENT,
            ledger_id: ledger_id.clone(),
            domain: ADMIN_DOMAIN.to_owned(),
            action: self.action().to_owned(),
            subject: self.subject(),
            payload: self.payload(issued_ms),
            dependencies: Vec::new(),
            author: public_key(key),
            nonce,
        }
        .sign(key)
    }

    /// Reads the operation and its `issued_ms` from an admin request.
    pub fn parse(proposal: &Proposal) -> Result<(AdminOp, u64), String> {
        if proposal.domain != ADMIN_DOMAIN {
            return Err(format!(
                "an admin request is of domain {ADMIN_DOMAIN:?}, not {:?}",
                proposal.domain
            ));
        }
        if !proposal.dependencies.is_empty() {
            return Err("an admin request has no dependencies".to_owned());
        }
        let Value::Map(fields) = &proposal.payload else {
            return Err("the payload of an admin request is a map".to_owned());
        };
        let int = |name: &str| -> Result<u64, String> {
            match fields.get(name) {
                Some(Value::Int(v)) if *v >= 0 => Ok(*v as u64),
                _ => Err(format!(
                    "payload field {name:?} must be a non-negative integer"
                )),
            }
        };
        let string = |name: &str| -> Result<String, String> {
            match fields.get(name) {
                Some(Value::Str(v)) => Ok(v.clone()),
                _ => Err(format!("payload field {name:?} must be a string")),
            }
        };
        let key = |name: &str| -> Result<PublicKey, String> {
            match fields.get(name) {
                Some(Value::Str(v)) => docket_core::id::decode_hex::<32>(v)
                    .map(PublicKey)
                    .map_err(|_| format!("payload field {name:?} must be 64 hex characters")),
                _ => Err(format!(
                    "payload field {name:?} must be a key (64 hex characters)"
                )),
            }
        };
        let issued_ms = int("issued_ms")?;
        let op = match proposal.action.as_str() {
            "CLUSTER.INIT" => AdminOp::Init {
                constitution: string("constitution")?,
                node: int("node")?,
                cosigner: key("cosigner")?,
            },
            "CLUSTER.MEMBER_ADD" => AdminOp::MemberAdd {
                node: int("node")?,
                raft_addr: string("raft_addr")?,
                api_addr: string("api_addr")?,
                learner: match fields.get("learner") {
                    Some(Value::Bool(b)) => *b,
                    _ => return Err("payload field \"learner\" must be a bool".to_owned()),
                },
                cosigner: key("cosigner")?,
            },
            "CLUSTER.MEMBER_PROMOTE" => AdminOp::MemberPromote { node: int("node")? },
            "CLUSTER.MEMBER_REMOVE" => AdminOp::MemberRemove { node: int("node")? },
            "CLUSTER.RECOVERED" => AdminOp::Recovered {
                node: int("node")?,
                ledger_length: int("ledger_length")?,
                log_index_committed: int("log_index_committed")?,
                log_entries_dropped: int("log_entries_dropped")?,
            },
            other => return Err(format!("no cluster operation {other:?}")),
        };
        if proposal.subject != op.subject() {
            return Err(format!(
                "{} is filed on subject {:?}, not {:?}",
                op.action(),
                op.subject(),
                proposal.subject
            ));
        }
        Ok((op, issued_ms))
    }
}

/// The version (meaning hash, hex) of a constitution document: what `CLUSTER.INIT` signs.
pub fn constitution_version(document: &str) -> Result<String, String> {
    Constitution::parse(document)
        .map(|c| c.version().to_hex())
        .map_err(|e| format!("genesis constitution: {e}"))
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
