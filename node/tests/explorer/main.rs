//! The web explorer (`/ui`) in a real headless Chromium against a real 3-node cluster:
//! the ledger page shows entries appended after it was opened (the change feed's live
//! tail); a rejected proposal's page shows its code and the failed rule; an honest
//! inclusion proof is verified in the browser (green check) while one with a flipped hash,
//! served through a tampering proxy, shows the red warning; after an amendment the
//! constitution page's diff shows the changed lines; the execution page shows a payout the
//! leader's agent paid, by effect and result; the explorer's `verify.js` agrees with
//! FORMAT.md's worked examples; every page's text has WCAG AA contrast (4.5:1) and Tab
//! walks the ledger page's links and controls with a visible focus ring; under signed reads
//! the page explains the refusal. Screenshots of every page go to `target/ui-screenshots/`.
//!
//! Needs Debian's `chromium` and `chromium-driver`: without them the test fails saying so.

mod browser;
#[path = "../common/mod.rs"]
mod common;
mod proxy;

use std::time::Instant;

use browser::Browser;
use common::{client, deposit, formed_cluster_with_config, ledger_id, phase};
use docket_core::{dev, Decision, Value};
use docket_node::local_cluster::{operator_key, LocalCluster};
use docket_node::rail::Rail;

/// Deadline of one wait for the page (a render, a verification, the live tail).
const PAGE_TIMEOUT_MS: u64 = 20_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_explorer_in_a_real_browser() {
    let start = Instant::now();
    phase(
        start,
        "start chromedriver first: a missing Chromium fails before any cluster",
    );
    let browser = Browser::start().await;
    let rail = Rail::start().await.expect("rail");
    let (_dir, cluster) = formed_cluster_with_config("ui", 3, |root| {
        let key = root.join("exec.key");
        docket_node::cli::write_key_file(&key, &dev::signing_key("exec"), true).expect("key");
        format!(
            "[execution]\nenabled = true\nkey_file = {key:?}\nallowed_urls = [{url:?}]\n\n\
             [execution.rail]\nurl = {url:?}\n",
            key = key.display().to_string(),
            url = rail.url(),
        )
    })
    .await;
    let ledger = ledger_id(&cluster);
    let leader = cluster.leader().await.expect("leader");
    let url = cluster.node(leader).url();
    let c = client(&url);

    phase(
        start,
        "file an admitted deposit (alice) and a rejected one (mallory)",
    );
    let admitted = deposit(&ledger, "alice", "ui-admitted", 10);
    let rejected = deposit(&ledger, "mallory", "ui-rejected", 10);
    for (signed, expect_admit) in [(&admitted, true), (&rejected, false)] {
        let response = c.submit(signed).await.expect("submit");
        let decision = &response
            .entry
            .decision_record()
            .expect("a decision")
            .decision;
        assert_eq!(*decision == Decision::Admit, expect_admit, "{decision:?}");
    }

    phase(
        start,
        "the assets load with their types and the strict policy",
    );
    let index = reqwest::get(format!("{url}/ui")).await.expect("GET /ui");
    assert_eq!(index.status(), 200);
    let policy = index.headers()["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    let script = reqwest::get(format!("{url}/ui/app.js"))
        .await
        .expect("app.js");
    assert_eq!(
        script.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );

    phase(
        start,
        "verify.js against FORMAT.md's examples (d) and (e), run in the browser",
    );
    browser.goto(&format!("{url}/ui#/find")).await;
    let vectors = browser.eval_async(KNOWN_ANSWERS).await;
    assert_eq!(
        vectors,
        serde_json::json!({
            "root": "85e20cac1f02fda7bcdb2fc3f908568c57018c77815f1fa361acad13994f08bf",
            "swapped_root_differs": true,
            "honest": {"supported": true, "valid": 1, "quorum": 1, "problems": []},
            "forged_valid": 0,
            "forged_problems": 1,
        }),
        "the browser's verification of the documented examples"
    );

    phase(
        start,
        "the cluster page shows the members and no divergence alarm",
    );
    browser.goto(&format!("{url}/ui#/cluster")).await;
    browser
        .wait_for(
            "no divergence alarm",
            "#divergence",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("No divergence alarms"),
        )
        .await;
    let members = browser
        .wait_for("three members", "table", PAGE_TIMEOUT_MS, |t, _| {
            t.contains("node 3") && t.contains("leader")
        })
        .await;
    assert!(
        members.contains("node 1") && members.contains("node 2"),
        "{members}"
    );
    browser.screenshot("cluster").await;
    assert_readable(&browser, "cluster").await;

    phase(
        start,
        "the execution page shows a payout the leader's agent paid, by effect and result",
    );
    let payout = dev::proposal(
        &ledger,
        "alice",
        "SETTLEMENT.PAYOUT_REQUESTED",
        "ui-admitted",
        Value::map([("amount", Value::Int(5)), ("beneficiary", "acme".into())]),
        vec![],
        1,
    );
    c.submit(&payout).await.expect("payout");
    common::wait_for("the payout's outcome", PAGE_TIMEOUT_MS, || {
        let c = c.clone();
        let id = payout.id();
        async move {
            match c.proposal(id).await.map_err(|e| e.to_string())?.outcome {
                Some(_) => Ok(()),
                None => Err("not reported yet".to_owned()),
            }
        }
    })
    .await;
    browser.goto(&format!("{url}/ui#/execution")).await;
    let outcomes = browser
        .wait_for(
            "outcomes by effect",
            "#outcomes",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("rail") && t.contains("success"),
        )
        .await;
    assert!(outcomes.contains("rail"), "{outcomes}");
    browser.screenshot("execution-overview").await;
    assert_readable(&browser, "execution overview").await;

    phase(
        start,
        "open the live ledger, then append entries: they appear without a reload",
    );
    browser.goto(&format!("{url}/ui#/ledger")).await;
    browser
        .wait_for(
            "the page's first rows",
            "#ledger-rows",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("ui-rejected"),
        )
        .await;
    browser
        .wait_for(
            "the change feed open",
            "#live-count",
            PAGE_TIMEOUT_MS,
            |t, _| t.starts_with("Live: following"),
        )
        .await;
    let (rows, _) = browser.read("#ledger-rows").await.expect("rows");
    assert!(
        !rows.contains("after-open"),
        "nothing appended yet:\n{rows}"
    );
    for i in 0..2 {
        let signed = deposit(&ledger, "bob", &format!("after-open-{i}"), 5);
        c.submit(&signed)
            .await
            .expect("submit after the page opened");
    }
    browser
        .wait_for(
            "the appended entries",
            "#ledger-rows",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("after-open-0") && t.contains("after-open-1"),
        )
        .await;
    browser
        .wait_for(
            "the live counter",
            "#live-count",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("2 new entries"),
        )
        .await;
    browser.screenshot("ledger").await;
    assert_readable(&browser, "ledger").await;
    assert_keyboard_reachable(&browser, "ledger", 12).await;

    phase(
        start,
        "the rejected proposal's page: its code and the failed rule",
    );
    browser
        .goto(&format!("{url}/ui#/proposal/{}", rejected.id().to_hex()))
        .await;
    browser
        .wait_for(
            "the rejection code",
            "#reject-code",
            PAGE_TIMEOUT_MS,
            |t, _| t == "UNAUTHORIZED",
        )
        .await;
    let rule = browser
        .wait_for(
            "the failed rule",
            "#failed-rule",
            PAGE_TIMEOUT_MS,
            |t, _| !t.is_empty(),
        )
        .await;
    assert!(
        rule.contains("SETTLEMENT.DEPOSIT_CONFIRMED") && rule.contains("treasurer"),
        "{rule}"
    );
    browser
        .wait_for(
            "its proof verified",
            "#proof-status",
            PAGE_TIMEOUT_MS,
            |_, v| v == "ok",
        )
        .await;
    browser.screenshot("proposal-rejected").await;
    assert_readable(&browser, "proposal-rejected").await;

    phase(
        start,
        "an honest proof: the green check, computed in the browser",
    );
    browser
        .goto(&format!("{url}/ui#/proposal/{}", admitted.id().to_hex()))
        .await;
    let verdict = browser
        .wait_for(
            "the green check",
            "#proof-status",
            PAGE_TIMEOUT_MS,
            |_, v| v != "pending",
        )
        .await;
    let (_, state) = browser.read("#proof-status").await.expect("status");
    assert_eq!(state, "ok", "honest proof: {verdict}");
    assert!(verdict.contains("✔ Verified in this browser"), "{verdict}");
    browser.screenshot("proposal-verified").await;
    assert_readable(&browser, "proposal-verified").await;

    phase(
        start,
        "a proof with one flipped hash (through a proxy): the red warning",
    );
    let tampering = proxy::tampering_proxy(&url).await;
    browser
        .goto(&format!(
            "{tampering}/ui#/proposal/{}",
            admitted.id().to_hex()
        ))
        .await;
    let verdict = browser
        .wait_for(
            "the red warning",
            "#proof-status",
            PAGE_TIMEOUT_MS,
            |_, v| v != "pending",
        )
        .await;
    let (_, state) = browser.read("#proof-status").await.expect("status");
    assert_eq!(state, "bad", "tampered proof: {verdict}");
    assert!(verdict.contains("Verification FAILED"), "{verdict}");
    browser.screenshot("proof-tampered").await;
    assert_readable(&browser, "proof-tampered").await;

    phase(start, "the entry, subject and execution pages render");
    let entry = c.proposal(admitted.id()).await.expect("proposal").entries[0]
        .index
        .0;
    browser.goto(&format!("{url}/ui#/entry/{entry}")).await;
    browser
        .wait_for(
            "the entry's proof",
            "#proof-status",
            PAGE_TIMEOUT_MS,
            |_, v| v == "ok",
        )
        .await;
    browser.screenshot("entry").await;
    assert_readable(&browser, "entry").await;
    browser
        .goto(&format!("{url}/ui#/subject/settlement/ui-admitted"))
        .await;
    let timeline = browser
        .wait_for(
            "the subject's timeline",
            "#timeline",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("SETTLEMENT.DEPOSIT_CONFIRMED"),
        )
        .await;
    assert!(timeline.contains(&format!("#{entry}")), "{timeline}");
    browser.screenshot("subject").await;
    assert_readable(&browser, "subject").await;
    browser
        .goto(&format!("{url}/ui#/execution/{}", admitted.id().to_hex()))
        .await;
    browser
        .wait_for("the execution page", "h1", PAGE_TIMEOUT_MS, |t, _| {
            t.starts_with("Execution of")
        })
        .await;
    browser.screenshot("execution").await;
    assert_readable(&browser, "execution").await;

    phase(
        start,
        "amend the constitution: grace amends, grace and heidi approve",
    );
    let active = c.constitution().await.expect("constitution");
    assert!(active.document.contains("subject_bytes_max = 128"));
    let candidate = active
        .document
        .replace("subject_bytes_max = 128", "subject_bytes_max = 96");
    let approve = |who: &str, nonce: u64| {
        dev::proposal(
            &ledger,
            who,
            "CONSTITUTION.APPROVE",
            "ui-amend",
            Value::Map(Default::default()),
            vec![],
            nonce,
        )
    };
    let amend = dev::proposal(
        &ledger,
        "grace",
        "CONSTITUTION.AMEND",
        "ui-amend",
        Value::map([
            ("document", Value::Str(candidate)),
            ("parent", Value::Str(active.version.to_hex())),
        ]),
        vec![],
        1,
    );
    for signed in [amend, approve("grace", 2), approve("heidi", 3)] {
        let response = c.submit(&signed).await.expect("submit");
        let decision = &response.entry.decision_record().expect("decision").decision;
        assert_eq!(*decision, Decision::Admit, "{}", signed.proposal.action);
    }
    assert_ne!(
        c.constitution().await.expect("constitution").version,
        active.version
    );

    phase(
        start,
        "the constitution page's diff shows exactly the changed line",
    );
    browser.goto(&format!("{url}/ui#/constitution")).await;
    browser
        .wait_for(
            "the diff summary",
            "#diff-summary",
            PAGE_TIMEOUT_MS,
            |t, _| t.contains("removed"),
        )
        .await;
    let changed = browser
        .eval(
            "return [...document.querySelectorAll('#diff .del, #diff .add')].map(e => e.innerText);",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(
        changed,
        serde_json::json!(["- subject_bytes_max = 128", "+ subject_bytes_max = 96"]),
        "the diff's changed lines"
    );
    let (summary, _) = browser.read("#diff-summary").await.expect("summary");
    assert_eq!(summary, "1 line(s) removed, 1 line(s) added.");
    let history = browser
        .wait_for("the ratifiers", "table", PAGE_TIMEOUT_MS, |t, _| {
            t.contains("heidi")
        })
        .await;
    assert!(history.contains("grace (amend)"), "{history}");
    browser.screenshot("constitution").await;
    assert_readable(&browser, "constitution").await;

    phase(
        start,
        "negative control: the contrast check flags light grey on white",
    );
    browser
        .eval(
            "const p = document.createElement('p'); p.textContent = 'faint words';
             p.style.color = '#aaaaaa'; document.getElementById('main').append(p);",
            serde_json::json!([]),
        )
        .await;
    let low = browser.eval(LOW_CONTRAST, serde_json::json!([])).await;
    assert_eq!(
        low,
        serde_json::json!(["2.32 faint words"]),
        "the contrast check"
    );

    phase(
        start,
        &format!("screenshots in {}", browser::screenshots_dir().display()),
    );
    browser.close().await;
}

/// Under `read = "roles"` the explorer's unsigned reads are refused: the assets still load
/// and the page says why, naming the policies it works with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_reads_get_a_clear_message() {
    let start = Instant::now();
    let browser = Browser::start().await;
    phase(
        start,
        "a one-node cluster whose constitution wants signed reads",
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut cluster =
        LocalCluster::new(common::binary(), dir.path(), "ui-reads", 1).expect("prepare cluster");
    cluster.start_all().await.expect("start");
    let node = cluster.node(1).client();
    let document = docket_core::constitution::DEFAULT_DOCUMENT.replace(
        "[access]\nread = \"anyone\"\n",
        "[access]\nread = \"roles\"\nread_roles = [\"governor\"]\n",
    );
    assert_ne!(document, docket_core::constitution::DEFAULT_DOCUMENT);
    node.init_as(Some(document), &operator_key())
        .await
        .expect("init");
    let url = cluster.node(1).url();

    phase(start, "the explorer loads and explains the refusal");
    browser.goto(&format!("{url}/ui#/ledger")).await;
    let message = browser
        .wait_for("the refusal", "#read-refused", PAGE_TIMEOUT_MS, |t, _| {
            t.contains("SIGNATURE_REQUIRED")
        })
        .await;
    assert!(
        message.contains("read = \"anyone\"") && message.contains("--read-key"),
        "{message}"
    );
    browser.screenshot("read-refused").await;
    assert_readable(&browser, "read-refused").await;
    browser.close().await;
}

/// WCAG contrast of every visible text node's colour against the background it sits on
/// (the nearest opaque one): answers the ones under 4.5:1, as "ratio text".
const LOW_CONTRAST: &str = r#"
const rgb = (c) => (c.match(/[\d.]+/g) || []).map(Number);
const lum = ([r, g, b]) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
};
const background = (el) => {
  for (let e = el; e; e = e.parentElement) {
    const c = rgb(getComputedStyle(e).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
  }
  return [255, 255, 255];
};
const low = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n = walker.nextNode(); n; n = walker.nextNode()) {
  const el = n.parentElement;
  if (!n.textContent.trim() || !el.offsetParent && el !== document.body) continue;
  const [a, b] = [lum(rgb(getComputedStyle(el).color).slice(0, 3)), lum(background(el))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) low.push(`${ratio.toFixed(2)} ${n.textContent.trim().slice(0, 40)}`);
}
return low;
"#;

/// Every text on the page has at least 4.5:1 contrast.
async fn assert_readable(browser: &Browser, page: &str) {
    let low = browser.eval(LOW_CONTRAST, serde_json::json!([])).await;
    assert_eq!(
        low,
        serde_json::json!([]),
        "low-contrast text on the {page} page"
    );
}

/// Tab moves through the page's links and controls, each showing a visible focus ring.
async fn assert_keyboard_reachable(browser: &Browser, page: &str, presses: usize) {
    let mut reached = Vec::new();
    for _ in 0..presses {
        browser.press_tab().await;
        let focused = browser
            .eval(
                "const e = document.activeElement;
                 const s = getComputedStyle(e);
                 return [e.tagName, e.innerText || e.name || '', s.outlineStyle, s.outlineWidth];",
                serde_json::json!([]),
            )
            .await;
        let tag = focused[0].as_str().unwrap_or_default().to_owned();
        assert!(
            ["A", "BUTTON", "INPUT", "SELECT", "SUMMARY"].contains(&tag.as_str()),
            "Tab on the {page} page reached {focused} after {reached:?}"
        );
        assert!(
            focused[2] == "solid" && focused[3] != "0px",
            "no visible focus on {focused} ({page} page)"
        );
        reached.push(focused[1].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(reached[0], "Skip to content", "{reached:?}");
}

/// Runs the explorer's own `verify.js` in the page on FORMAT.md's worked examples: the
/// inclusion proof of leaf 2 in the five-leaf tree of example (d) (and the same path in
/// the wrong order), and the cosigned checkpoint of example (e) (and its body altered).
const KNOWN_ANSWERS: &str = r#"
const done = arguments[arguments.length - 1];
(async () => {
  const v = await import("/ui/verify.js");
  const leaf2 = "02".repeat(32);
  const h3 = "acaa04663a8547a2f70c60cc18f9378796b13c4f9a08f70d6adae662365b30c6";
  const n01 = "28fb81e496897e0ce886f08602392e9239b65c659041e5202163e58ad898f444";
  const h4 = "1da033bf8927ed69376d91533748494f7f5e88c20603dede2afc9bfd43d46f17";
  const root = await v.inclusionRoot(leaf2, 2, 5, [h3, n01, h4]);
  const swapped = await v.inclusionRoot(leaf2, 2, 5, [n01, h3, h4]);
  const note = "demo\n2\nASiO+kF4FR/9Tg/vI0GigP7bNvxaHS57E1bvHyULqrU=\nstate c9f9ed8b486cfe086c1fd469d614112498a6184f9689adc7c236cbae01fa02e3\n\n\u2014 demo/node-1 hUjElwAAAABpVbkBH9CSF9X9lMgtyeOK6AtNScHJovZ62/4jkNpPh6BsNBzvy/im3YVD6b0LF+szc2vytk5MMC0QPzKcbLMI+fGUAQ==\n";
  const cosigners = [{ node: 1, name: "demo/node-1", key: "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394" }];
  const honest = await v.verifyCosignatures(note, cosigners);
  const forged = await v.verifyCosignatures(note.replace("state c9", "state d9"), cosigners);
  return { root, swapped_root_differs: swapped !== root, honest,
           forged_valid: forged.valid, forged_problems: forged.problems.length };
})().then(done, (e) => done({ error: String(e) }));
"#;

/// Without Chromium the tests fail, saying what to install; they never skip.
#[test]
#[should_panic(
    expected = "is missing: the explorer's browser tests drive a real headless Chromium"
)]
fn a_missing_chromium_fails_saying_what_to_install() {
    browser::require("/nonexistent/chromium");
}

/// The tampering itself is checked, so the red-warning case cannot pass by the proxy
/// failing to change anything.
#[test]
fn the_proxy_flips_exactly_one_hash() {
    let honest = serde_json::json!({"proof": ["ab0", "cd"], "root": "ee"});
    let mut tampered = honest.clone();
    proxy::tamper(&mut tampered);
    assert_eq!(tampered["proof"][0], "ab1");
    assert_eq!(tampered["proof"][1], honest["proof"][1]);
    assert_eq!(tampered["root"], honest["root"]);
}
