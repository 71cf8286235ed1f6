//! docket's client API, as data: what a node and its clients say to each other.
//!
//! * [`wire`]: the HTTP/JSON request and answer shapes;
//! * [`admin`]: cluster operations as signed requests ([`admin::AdminOp`]);
//! * [`read_access`]: signed reads ([`read_access::SignedRead`]).
//!
//! Pure (serde, ed25519, the core's types): the node's service and `docket-client` share it,
//! and an application embedding the client pulls in no server, storage or consensus code.

pub mod admin;
pub mod read_access;
pub mod wire;
