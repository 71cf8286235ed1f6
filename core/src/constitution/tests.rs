use super::*;

fn err(document: &str) -> ConstitutionError {
    Constitution::parse(document).expect_err("the document must be refused")
}

/// Replaces `from` with `to` in the default document, asserting the edit applies.
fn edit(from: &str, to: &str) -> String {
    assert!(
        DEFAULT_DOCUMENT.contains(from),
        "test edit target {from:?} not in the default"
    );
    DEFAULT_DOCUMENT.replacen(from, to, 1)
}

fn line_of(document: &str, needle: &str) -> usize {
    document
        .lines()
        .position(|l| l.contains(needle))
        .expect("needle present")
        + 1
}

#[test]
fn default_constitution_parses_with_every_builtin_domain() {
    let c = Constitution::default_constitution();
    let domains: Vec<&str> = c.domains.keys().map(String::as_str).collect();
    assert_eq!(
        domains,
        [
            "auction",
            "cluster",
            "constitution",
            "execution",
            "file",
            "kes",
            "settlement",
            "tender"
        ]
    );
    assert_eq!(
        c.action("kes", "KES.VERSION_RATIFIED").map(|a| a.quorum),
        Some(2)
    );
    assert_eq!(
        c.action("constitution", "CONSTITUTION.APPROVE")
            .map(|a| a.quorum),
        Some(2)
    );
}

#[test]
fn default_principals_are_the_dev_keys() {
    let c = Constitution::default_constitution();
    for (name, roles) in crate::dev::PRINCIPALS {
        let principal = c
            .principal(&crate::dev::key(name))
            .expect("dev principal in default");
        assert_eq!(principal.name, *name);
        let held: Vec<&str> = principal.roles.iter().map(String::as_str).collect();
        assert_eq!(held, *roles, "roles of {name}");
    }
    assert_eq!(c.principals.len(), crate::dev::PRINCIPALS.len());
}

#[test]
fn version_ignores_formatting_but_not_meaning() {
    let base = Constitution::default_constitution().version();
    let reformatted = format!("# a comment\n\n{}", DEFAULT_DOCUMENT.replace(" = ", "="));
    assert_eq!(
        Constitution::parse(&reformatted).expect("valid").version(),
        base
    );
    let changed = edit("deferral_expiry_ms = 600000", "deferral_expiry_ms = 600001");
    assert_ne!(
        Constitution::parse(&changed).expect("valid").version(),
        base
    );
}

#[test]
fn syntax_errors_name_the_line() {
    let document = edit("subject_bytes_max = 128", "subject_bytes_max = = 128");
    let e = err(&document);
    assert_eq!(e.line, Some(line_of(&document, "subject_bytes_max")), "{e}");
}

#[test]
fn unknown_fields_are_refused() {
    let document = edit(
        "subject_bytes_max = 128",
        "subject_bytes_max = 128\nsubject_bytez_max = 1",
    );
    let e = err(&document);
    assert!(e.message.contains("subject_bytez_max"), "{e}");
    assert_eq!(e.line, Some(line_of(&document, "subject_bytez_max")), "{e}");
}

#[test]
fn floats_are_refused() {
    let e = err(&edit(
        "payload_bytes_max = 65536",
        "payload_bytes_max = 65536.5",
    ));
    assert!(e.to_string().contains("line"), "{e}");
}

#[test]
fn unknown_state_in_a_transition_names_field_and_line() {
    let document = edit("to = \"payout_requested\"", "to = \"payout_requestd\"");
    let e = err(&document);
    assert_eq!(
        e.field,
        "domains.settlement.actions.\"SETTLEMENT.PAYOUT_REQUESTED\".to"
    );
    assert_eq!(e.line, Some(line_of(&document, "payout_requestd")));
    assert!(e.message.contains("unknown state"), "{e}");
}

#[test]
fn contradictions_are_refused() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "initial = \"none\"",
            "initial = \"nowhere\"",
            "initial state",
        ),
        (
            "roles = [\"treasurer\", \"petitioner\"]\n\n[principals.bob]",
            "roles = [\"banker\"]\n\n[principals.bob]",
            "unknown role",
        ),
        (
            "invariants = [\"amount_positive\", \"currency_consistent\"]",
            "invariants = [\"amount_is_fine\"]",
            "unknown invariant",
        ),
        (
            "updates = [\"credit_balance\"]",
            "updates = [\"credit_everything\"]",
            "unknown update",
        ),
        (
            "requires = { amount = \"int\", currency = \"string\" }",
            "requires = { amount = \"int\" }",
            "add it to requires",
        ),
        (
            "requires = { amount = \"int\", currency = \"string\" }",
            "requires = { amount = \"string\", currency = \"string\" }",
            "reads amount as int",
        ),
        (
            "requires = { reserve = \"int\", item = \"string\" }",
            "requires = { reserve = \"int\", item = \"float\" }",
            "unknown type",
        ),
        (
            "quorum = 2\nrequires = { version",
            "quorum = 4\nrequires = { version",
            "can never be met",
        ),
        (
            "quorum = 2\nrequires = { version",
            "quorum = 0\nrequires = { version",
            "at least 1",
        ),
        (
            "deferred_max = 10000 ",
            "deferred_max = 0 ",
            "between 1 and",
        ),
        (
            "payload_bytes_max = 65536",
            "payload_bytes_max = 99999999",
            "between 1 and",
        ),
        (
            "[domains.auction.actions.\"AUCTION.BID\"]",
            "[domains.auction.actions.\"AUCTIONS.BID\"]",
            "AUCTION.VERB",
        ),
        (
            "roles = [\"auctioneer\"]\n\n[domains.auction.actions.\"AUCTION.AWARDED\"]",
            "roles = []\n\n[domains.auction.actions.\"AUCTION.AWARDED\"]",
            "nobody could take",
        ),
        (
            "updates = [\"adopt_constitution\"]",
            "updates = []",
            "could never be amended",
        ),
    ];
    for (from, to, expected) in cases {
        let e = err(&edit(from, to));
        assert!(
            e.to_string().contains(expected),
            "editing {from:?} -> {to:?}: got {e}, wanted {expected:?}"
        );
        assert!(e.line.is_some() || e.field.is_empty(), "{e}");
    }
}

#[test]
fn bad_principal_keys_are_refused() {
    let alice = crate::dev::key("alice").to_hex();
    let bob = crate::dev::key("bob").to_hex();
    let e = err(&DEFAULT_DOCUMENT.replacen(&alice, "abcd", 1));
    assert_eq!(e.field, "principals.alice.key", "{e}");
    let e = err(&DEFAULT_DOCUMENT.replacen(&alice, &alice.to_uppercase(), 1));
    assert_eq!(e.field, "principals.alice.key", "{e}");
    let e = err(&DEFAULT_DOCUMENT.replacen(&bob, &alice, 1));
    assert!(e.message.contains("another principal"), "{e}");
    let mut identity = "01".to_owned();
    identity.push_str(&"00".repeat(31));
    let e = err(&DEFAULT_DOCUMENT.replacen(&alice, &identity, 1));
    assert!(e.message.contains("weak"), "{e}");
}

#[test]
fn oversize_documents_are_refused() {
    let huge = format!(
        "{DEFAULT_DOCUMENT}\n#{}",
        "x".repeat(ceilings::DOCUMENT_BYTES_MAX)
    );
    assert!(err(&huge).message.contains("ceiling"));
}

#[test]
fn every_rule_is_named_uniquely_and_described() {
    let mut names = std::collections::BTreeSet::new();
    for i in InvariantName::ALL {
        assert!(names.insert(i.name()), "duplicate {i}");
        assert_eq!(InvariantName::from_name(i.name()), Some(*i));
        assert!(!i.description().is_empty());
    }
    for u in UpdateName::ALL {
        assert!(names.insert(u.name()), "duplicate {u}");
        assert_eq!(UpdateName::from_name(u.name()), Some(*u));
    }
}

#[test]
fn read_policy_is_parsed_and_checked() {
    let with = |access: &str| DEFAULT_DOCUMENT.replace("[access]\nread = \"anyone\"\n", access);
    let base = Constitution::default_constitution();
    assert_eq!(base.reads, crate::constitution::ReadPolicy::Anyone);
    // Leaving the section out is the same constitution, with the same version.
    let without = Constitution::parse(&with("")).expect("valid");
    assert_eq!(without.version(), base.version());

    let certificate =
        Constitution::parse(&with("[access]\nread = \"certificate\"\n")).expect("valid");
    assert_eq!(
        certificate.reads,
        crate::constitution::ReadPolicy::Certificate
    );
    assert_ne!(certificate.version(), base.version());

    let roles = Constitution::parse(&with(
        "[access]\nread = \"roles\"\nread_roles = [\"operator\", \"treasurer\"]\n",
    ))
    .expect("valid");
    assert_eq!(
        roles.reads,
        crate::constitution::ReadPolicy::Roles(
            ["operator".to_owned(), "treasurer".to_owned()].into()
        )
    );

    for (access, message) in [
        ("[access]\nread = \"roles\"\n", "needs read_roles"),
        (
            "[access]\nread = \"roles\"\nread_roles = []\n",
            "at least one role",
        ),
        (
            "[access]\nread = \"roles\"\nread_roles = [\"nobody\"]\n",
            "unknown role",
        ),
        ("[access]\nread = \"everyone\"\n", "unknown read policy"),
        (
            "[access]\nread = \"anyone\"\nread_roles = [\"operator\"]\n",
            "read = \"roles\" only",
        ),
    ] {
        let error = Constitution::parse(&with(access)).expect_err(access);
        assert!(error.to_string().contains(message), "{access}: {error}");
    }
}

#[test]
fn effect_false_keeps_the_version_and_true_changes_it() {
    let base = Constitution::default_constitution();
    assert!(base.action("file", "FILE.WRITE").is_some_and(|a| a.effect));
    assert!(base
        .action("settlement", "SETTLEMENT.DEPOSIT_CONFIRMED")
        .is_some_and(|a| !a.effect));
    let explicit_false = edit(
        "updates = [\"credit_balance\"]",
        "updates = [\"credit_balance\"]\neffect = false",
    );
    assert_eq!(
        Constitution::parse(&explicit_false)
            .expect("valid")
            .version(),
        base.version()
    );
    let without = edit(
        "updates = [\"record_file_write\"]\neffect = true",
        "updates = [\"record_file_write\"]",
    );
    assert_ne!(
        Constitution::parse(&without).expect("valid").version(),
        base.version()
    );
}
