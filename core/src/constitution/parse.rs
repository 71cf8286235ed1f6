//! Strict parsing and validation of constitution documents, with errors that name the field
//! and the line.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Deserialize;
use toml::Spanned;

use super::{ceilings, Action, Constitution, Domain, FieldType, Limits, Principal, ReadPolicy};
use super::{InvariantName, UpdateName};
use crate::id::{decode_hex, PublicKey};

/// A constitution that cannot be adopted: the field, the line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConstitutionError {
    /// Dotted path of the offending field, e.g. `domains.settlement.initial`; empty for
    /// syntax errors that precede any field.
    pub field: String,
    /// 1-based line in the document, when known.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConstitutionError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match (self.field.is_empty(), self.line) {
            (false, Some(line)) => write!(f, "{} (line {line}): {}", self.field, self.message),
            (false, None) => write!(f, "{}: {}", self.field, self.message),
            (true, Some(line)) => write!(f, "line {line}: {}", self.message),
            (true, None) => f.write_str(&self.message),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConstitution {
    name: Spanned<String>,
    limits: Spanned<RawLimits>,
    roles: Spanned<BTreeMap<String, String>>,
    #[serde(default)]
    principals: BTreeMap<String, Spanned<RawPrincipal>>,
    domains: Spanned<BTreeMap<String, Spanned<RawDomain>>>,
    #[serde(default)]
    access: Option<Spanned<RawAccess>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    read: Spanned<String>,
    #[serde(default)]
    read_roles: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    payload_bytes_max: Spanned<u64>,
    dependencies_max: Spanned<u32>,
    deferred_max: Spanned<u32>,
    deferral_expiry_ms: Spanned<u64>,
    subject_bytes_max: Spanned<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    key: Spanned<String>,
    roles: Spanned<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    states: Spanned<Vec<Spanned<String>>>,
    initial: Spanned<String>,
    actions: BTreeMap<String, Spanned<RawAction>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    from: Spanned<Vec<Spanned<String>>>,
    to: Spanned<String>,
    roles: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    requires: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    invariants: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    updates: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    quorum: Option<Spanned<u32>>,
    #[serde(default)]
    effect: Option<bool>,
}

/// Turns byte offsets into line numbers and builds errors.
struct Doc<'a>(&'a str);

impl Doc<'_> {
    fn line(&self, offset: usize) -> usize {
        let end = offset.min(self.0.len());
        self.0.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn err<T>(
        &self,
        field: impl Into<String>,
        at: &Spanned<T>,
        message: impl Into<String>,
    ) -> ConstitutionError {
        ConstitutionError {
            field: field.into(),
            line: Some(self.line(at.span().start)),
            message: message.into(),
        }
    }
}

/// `[a-z][a-z0-9_]*`, at most 64 bytes: domain, state, role, principal and field names.
fn is_lower_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `DOMAIN.VERB`, where DOMAIN is the upper-cased domain name: the action says which domain
/// it belongs to, so an action name alone is unambiguous in logs and the ledger.
fn is_action_name(domain: &str, action: &str) -> bool {
    let Some((prefix, verb)) = action.split_once('.') else {
        return false;
    };
    let mut verb_bytes = verb.bytes();
    prefix == domain.to_ascii_uppercase()
        && matches!(verb_bytes.next(), Some(b'A'..=b'Z'))
        && verb.len() <= 64
        && verb_bytes.all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
}

fn quoted(key: &str) -> String {
    if key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

pub(super) fn parse(document: &str) -> Result<Constitution, ConstitutionError> {
    let doc = Doc(document);
    if document.len() > ceilings::DOCUMENT_BYTES_MAX {
        return Err(ConstitutionError {
            field: String::new(),
            line: None,
            message: format!(
                "document is {} bytes; the ceiling is {}",
                document.len(),
                ceilings::DOCUMENT_BYTES_MAX
            ),
        });
    }
    let raw: RawConstitution = toml::from_str(document).map_err(|e| ConstitutionError {
        field: String::new(),
        line: e.span().map(|s| doc.line(s.start)),
        message: e.message().trim().to_owned(),
    })?;

    let name = raw.name.get_ref().trim().to_owned();
    if name.is_empty() || name.len() > 128 {
        return Err(doc.err("name", &raw.name, "must be 1 to 128 characters"));
    }

    let limits = validate_limits(&doc, &raw.limits)?;

    let mut roles = BTreeMap::new();
    for (role, description) in raw.roles.get_ref() {
        if !is_lower_name(role) {
            return Err(doc.err(
                format!("roles.{}", quoted(role)),
                &raw.roles,
                "role names are [a-z][a-z0-9_]*",
            ));
        }
        roles.insert(role.clone(), description.clone());
    }

    let mut principals = BTreeMap::new();
    let mut names = BTreeSet::new();
    for (name, spanned) in &raw.principals {
        let field = format!("principals.{}", quoted(name));
        let principal = spanned.get_ref();
        if !is_lower_name(name) {
            return Err(doc.err(&field, spanned, "principal names are [a-z][a-z0-9_]*"));
        }
        names.insert(name.clone());
        let key = decode_hex::<32>(principal.key.get_ref())
            .map_err(|e| doc.err(format!("{field}.key"), &principal.key, e.to_string()))?;
        match ed25519_dalek::VerifyingKey::from_bytes(&key) {
            Ok(point) if !point.is_weak() => {}
            Ok(_) => {
                return Err(doc.err(
                    format!("{field}.key"),
                    &principal.key,
                    "weak (small-order) ed25519 key",
                ))
            }
            Err(_) => {
                return Err(doc.err(
                    format!("{field}.key"),
                    &principal.key,
                    "not a valid ed25519 public key",
                ))
            }
        }
        let mut held = BTreeSet::new();
        for role in principal.roles.get_ref() {
            if !roles.contains_key(role.get_ref()) {
                return Err(doc.err(
                    format!("{field}.roles"),
                    role,
                    format!("unknown role {:?}", role.get_ref()),
                ));
            }
            held.insert(role.get_ref().clone());
        }
        if principals
            .insert(
                PublicKey(key),
                Principal {
                    name: name.clone(),
                    roles: held,
                },
            )
            .is_some()
        {
            return Err(doc.err(
                format!("{field}.key"),
                &principal.key,
                "key already belongs to another principal",
            ));
        }
    }

    let mut domains = BTreeMap::new();
    for (domain_name, spanned) in raw.domains.get_ref() {
        let field = format!("domains.{}", quoted(domain_name));
        if !is_lower_name(domain_name) || domain_name.len() > 32 {
            return Err(doc.err(
                &field,
                spanned,
                "domain names are [a-z][a-z0-9_]*, at most 32 bytes",
            ));
        }
        let domain = validate_domain(
            &doc,
            &field,
            domain_name,
            spanned.get_ref(),
            &roles,
            &principals,
        )?;
        domains.insert(domain_name.clone(), domain);
    }
    if domains.is_empty() {
        return Err(doc.err(
            "domains",
            &raw.domains,
            "a constitution declares at least one domain",
        ));
    }

    let updates: BTreeSet<UpdateName> = domains
        .values()
        .flat_map(|d| d.actions.values())
        .flat_map(|a| a.updates.iter().copied())
        .collect();
    if !updates.contains(&UpdateName::AdoptConstitution)
        || !updates.contains(&UpdateName::RecordAmendment)
    {
        return Err(doc.err(
            "domains",
            &raw.domains,
            "no action records and adopts amendments (record_amendment, adopt_constitution): \
             this constitution could never be amended again",
        ));
    }

    let reads = match &raw.access {
        None => ReadPolicy::Anyone,
        Some(access) => validate_access(&doc, access, &roles)?,
    };

    Ok(Constitution {
        name,
        limits,
        roles,
        principals,
        domains,
        reads,
    })
}

fn validate_access(
    doc: &Doc,
    raw: &Spanned<RawAccess>,
    roles: &BTreeMap<String, String>,
) -> Result<ReadPolicy, ConstitutionError> {
    let access = raw.get_ref();
    let policy = match (access.read.get_ref().as_str(), &access.read_roles) {
        ("anyone", None) => ReadPolicy::Anyone,
        ("certificate", None) => ReadPolicy::Certificate,
        ("roles", Some(listed)) => {
            let mut held = BTreeSet::new();
            for role in listed.get_ref() {
                if !roles.contains_key(role.get_ref()) {
                    return Err(doc.err(
                        "access.read_roles",
                        role,
                        format!("unknown role {:?}", role.get_ref()),
                    ));
                }
                held.insert(role.get_ref().clone());
            }
            if held.is_empty() {
                return Err(doc.err(
                    "access.read_roles",
                    listed,
                    "names at least one role (nobody could read otherwise)",
                ));
            }
            ReadPolicy::Roles(held)
        }
        ("roles", None) => {
            return Err(doc.err(
                "access.read_roles",
                &access.read,
                "read = \"roles\" needs read_roles = [...], the roles that may read",
            ))
        }
        ("anyone" | "certificate", Some(listed)) => {
            return Err(doc.err(
                "access.read_roles",
                listed,
                "read_roles goes with read = \"roles\" only",
            ))
        }
        (other, _) => {
            return Err(doc.err(
                "access.read",
                &access.read,
                format!(
                    "unknown read policy {other:?}; use \"anyone\", \"certificate\" or \"roles\""
                ),
            ))
        }
    };
    Ok(policy)
}

fn validate_limits(doc: &Doc, raw: &Spanned<RawLimits>) -> Result<Limits, ConstitutionError> {
    let l = raw.get_ref();
    fn check<T: PartialOrd + Copy + fmt::Display + Default>(
        doc: &Doc,
        name: &str,
        value: &Spanned<T>,
        ceiling: T,
    ) -> Result<T, ConstitutionError> {
        let v = *value.get_ref();
        if v <= T::default() || v > ceiling {
            return Err(doc.err(
                format!("limits.{name}"),
                value,
                format!("must be between 1 and {ceiling}, got {v}"),
            ));
        }
        Ok(v)
    }
    Ok(Limits {
        payload_bytes_max: check(
            doc,
            "payload_bytes_max",
            &l.payload_bytes_max,
            ceilings::PAYLOAD_BYTES_MAX,
        )?,
        dependencies_max: check(
            doc,
            "dependencies_max",
            &l.dependencies_max,
            ceilings::DEPENDENCIES_MAX,
        )?,
        deferred_max: check(doc, "deferred_max", &l.deferred_max, ceilings::DEFERRED_MAX)?,
        deferral_expiry_ms: check(
            doc,
            "deferral_expiry_ms",
            &l.deferral_expiry_ms,
            ceilings::DEFERRAL_EXPIRY_MS_MAX,
        )?,
        subject_bytes_max: check(
            doc,
            "subject_bytes_max",
            &l.subject_bytes_max,
            ceilings::SUBJECT_BYTES_MAX,
        )?,
    })
}

fn validate_domain(
    doc: &Doc,
    field: &str,
    domain_name: &str,
    raw: &RawDomain,
    roles: &BTreeMap<String, String>,
    principals: &BTreeMap<PublicKey, Principal>,
) -> Result<Domain, ConstitutionError> {
    let mut states = BTreeSet::new();
    for state in raw.states.get_ref() {
        if !is_lower_name(state.get_ref()) {
            return Err(doc.err(
                format!("{field}.states"),
                state,
                "state names are [a-z][a-z0-9_]*",
            ));
        }
        if !states.insert(state.get_ref().clone()) {
            return Err(doc.err(
                format!("{field}.states"),
                state,
                format!("state {:?} is listed twice", state.get_ref()),
            ));
        }
    }
    if !states.contains(raw.initial.get_ref()) {
        return Err(doc.err(
            format!("{field}.initial"),
            &raw.initial,
            format!(
                "initial state {:?} is not among the domain's states",
                raw.initial.get_ref()
            ),
        ));
    }
    if raw.actions.is_empty() {
        return Err(doc.err(
            format!("{field}.states"),
            &raw.states,
            "a domain declares at least one action",
        ));
    }

    let mut actions = BTreeMap::new();
    for (action_name, spanned) in &raw.actions {
        let field = format!("{field}.actions.{}", quoted(action_name));
        if !is_action_name(domain_name, action_name) {
            return Err(doc.err(
                &field,
                spanned,
                format!(
                    "action names are {}.VERB (upper case, digits, '_')",
                    domain_name.to_ascii_uppercase()
                ),
            ));
        }
        let a = spanned.get_ref();

        let mut from = BTreeSet::new();
        for state in a.from.get_ref() {
            if !states.contains(state.get_ref()) {
                return Err(doc.err(
                    format!("{field}.from"),
                    state,
                    format!("unknown state {:?}", state.get_ref()),
                ));
            }
            from.insert(state.get_ref().clone());
        }
        if from.is_empty() {
            return Err(doc.err(format!("{field}.from"), &a.from, "list at least one state"));
        }
        if !states.contains(a.to.get_ref()) {
            return Err(doc.err(
                format!("{field}.to"),
                &a.to,
                format!("unknown state {:?}", a.to.get_ref()),
            ));
        }

        let mut action_roles = BTreeSet::new();
        for role in a.roles.get_ref() {
            if !roles.contains_key(role.get_ref()) {
                return Err(doc.err(
                    format!("{field}.roles"),
                    role,
                    format!("unknown role {:?}", role.get_ref()),
                ));
            }
            action_roles.insert(role.get_ref().clone());
        }
        if action_roles.is_empty() {
            return Err(doc.err(
                format!("{field}.roles"),
                &a.roles,
                "list at least one role: nobody could take this action",
            ));
        }

        let mut requires = BTreeMap::new();
        if let Some(raw_requires) = &a.requires {
            for (name, ty) in raw_requires.get_ref() {
                if !is_lower_name(name) {
                    return Err(doc.err(
                        format!("{field}.requires"),
                        ty,
                        "field names are [a-z][a-z0-9_]*",
                    ));
                }
                let parsed = FieldType::from_name(ty.get_ref()).ok_or_else(|| {
                    let known: Vec<&str> = FieldType::NAMES.iter().map(|(n, _)| *n).collect();
                    doc.err(
                        format!("{field}.requires.{name}"),
                        ty,
                        format!(
                            "unknown type {:?}; use one of {}",
                            ty.get_ref(),
                            known.join(", ")
                        ),
                    )
                })?;
                requires.insert(name.clone(), parsed);
            }
        }

        let mut invariants = Vec::new();
        if let Some(list) = &a.invariants {
            for name in list.get_ref() {
                let invariant = InvariantName::from_name(name.get_ref()).ok_or_else(|| {
                    doc.err(
                        format!("{field}.invariants"),
                        name,
                        format!("unknown invariant {:?}", name.get_ref()),
                    )
                })?;
                check_reads(doc, &field, name, invariant.reads(), &requires)?;
                invariants.push(invariant);
            }
        }
        let mut updates = Vec::new();
        if let Some(list) = &a.updates {
            for name in list.get_ref() {
                let update = UpdateName::from_name(name.get_ref()).ok_or_else(|| {
                    doc.err(
                        format!("{field}.updates"),
                        name,
                        format!("unknown update {:?}", name.get_ref()),
                    )
                })?;
                check_reads(doc, &field, name, update.reads(), &requires)?;
                updates.push(update);
            }
        }

        let quorum = match &a.quorum {
            None => 1,
            Some(q) => {
                let eligible = principals
                    .values()
                    .filter(|p| !p.roles.is_disjoint(&action_roles))
                    .count();
                let q_value = *q.get_ref();
                if q_value == 0 {
                    return Err(doc.err(format!("{field}.quorum"), q, "quorum must be at least 1"));
                }
                if q_value as usize > eligible {
                    return Err(doc.err(
                        format!("{field}.quorum"),
                        q,
                        format!("quorum {q_value} can never be met: only {eligible} principals hold a role allowed to take this action"),
                    ));
                }
                q_value
            }
        };

        actions.insert(
            action_name.clone(),
            Action {
                from,
                to: a.to.get_ref().clone(),
                roles: action_roles,
                requires,
                invariants,
                updates,
                quorum,
                effect: a.effect.unwrap_or(false),
            },
        );
    }
    Ok(Domain {
        states,
        initial: raw.initial.get_ref().clone(),
        actions,
    })
}

/// A rule may only read payload fields the action requires, with a compatible type.
fn check_reads(
    doc: &Doc,
    field: &str,
    rule: &Spanned<String>,
    reads: &[(&str, FieldType)],
    requires: &BTreeMap<String, FieldType>,
) -> Result<(), ConstitutionError> {
    for (name, needed) in reads {
        match requires.get(*name) {
            Some(declared) if *needed == FieldType::Any || declared == needed => {}
            Some(declared) => {
                return Err(doc.err(
                    format!("{field}.requires.{name}"),
                    rule,
                    format!(
                        "{} reads {name} as {needed}, but the action requires it as {declared}",
                        rule.get_ref()
                    ),
                ))
            }
            None => {
                return Err(doc.err(
                    format!("{field}.requires"),
                    rule,
                    format!(
                        "{} reads payload field {name:?} ({needed}); add it to requires",
                        rule.get_ref()
                    ),
                ))
            }
        }
    }
    Ok(())
}
