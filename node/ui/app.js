// The docket explorer: hash routes over the node's public read API. Plain DOM, no
// framework, no innerHTML (every string from the ledger goes in as text).

import { inclusionRoot, verifyCosignatures, parseNote } from "./verify.js";
import { lineDiff } from "./diff.js";

/// Entries per ledger page: one `GET /v1/ledger?from=&limit=` each, whatever the length.
const PAGE_ENTRIES = 50;
/// Rows the live tail keeps on screen; older ones drop off (page back to see them).
const TAIL_ROWS_MAX = 500;
/// Entries the subject timeline and the constitution history read back at most.
const SCAN_ENTRIES_MAX = 2000;
const SCAN_PAGE_ENTRIES = 200;
/// Status refresh period of the cluster page.
const CLUSTER_REFRESH_MS = 3000;

const main = document.getElementById("main");
let pageAbort = new AbortController();

// ---------------------------------------------------------------------------------------
// DOM and API helpers

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const link = (href, text) => h("a", { href }, text);
const code = (text) => h("code", { class: "hash" }, text);
const short = (hex) => (typeof hex === "string" && hex.length > 16 ? hex.slice(0, 16) + "…" : hex);

function kv(pairs) {
  const dl = h("dl", { class: "kv" });
  for (const [k, v] of pairs) {
    if (v === undefined) continue;
    dl.append(h("dt", {}, k), h("dd", {}, v === null ? h("span", { class: "muted" }, "—") : v));
  }
  return dl;
}

function rawJson(value, summary = "Raw JSON") {
  return h("details", {}, h("summary", {}, summary), h("pre", {}, JSON.stringify(value, null, 2)));
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(`${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

async function api(path, signal) {
  const response = await fetch(path, { headers: { accept: "application/json" }, signal });
  let body = null;
  try { body = await response.json(); } catch (_) { /* not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, body?.code ?? `HTTP ${response.status}`, body?.message ?? response.statusText);
  }
  return body;
}

const READ_REFUSALS = ["SIGNATURE_REQUIRED", "UNAUTHORIZED", "STALE_REQUEST", "BAD_SIGNATURE"];

function errorBox(error) {
  if (error instanceof ApiError && READ_REFUSALS.includes(error.code)) {
    return h("div", { class: "bad", role: "alert", id: "read-refused" },
      h("strong", {}, `The node refused this read (${error.code}). `),
      "The explorer reads without signing. It works when the constitution says ",
      h("code", {}, 'read = "anyone"'),
      ", or, with ", h("code", {}, 'read = "certificate"'),
      ", when this browser presents a client certificate of the cluster CA. Signed reads (",
      h("code", {}, 'read = "roles"'), ") need the CLI's --read-key. The node said: ", error.message);
  }
  return h("div", { class: "bad", role: "alert" }, String(error.message || error));
}

const time = (ms) => (typeof ms === "number" ? new Date(ms).toISOString().replace("T", " ").replace("Z", " UTC") : String(ms));

// ---------------------------------------------------------------------------------------
// Entries

/// The fields the ledger table and filters use, from an entry's JSON.
function summarize(entry) {
  const record = entry.record || {};
  if (record.genesis) {
    return { kind: "genesis", domain: "", action: "GENESIS", subject: record.genesis.ledger_id,
      decision: "genesis", code: "", detail: "", id: null, deps: [] };
  }
  const d = record.decision;
  if (!d) return { kind: Object.keys(record)[0] || "?", domain: "", action: "", subject: "", decision: "", code: "", detail: "", id: null, deps: [] };
  const p = d.proposal?.proposal || {};
  let decision = "", codeName = "", detail = "";
  if (d.decision === "admit") decision = "admit";
  else if (d.decision?.reject) { decision = "reject"; codeName = d.decision.reject.code; detail = d.decision.reject.detail; }
  else if (d.decision?.defer) { decision = "defer"; detail = `waiting on ${d.decision.defer.waiting_on.length}`; }
  return { kind: "decision", domain: p.domain || "", action: p.action || "", subject: p.subject || "",
    decision, code: codeName, detail, id: d.id, deps: p.dependencies || [], access: d.access,
    cause: d.cause, payload: p.payload };
}

function decisionTag(s) {
  const label = s.decision === "reject" ? `REJECT ${s.code}` : s.decision.toUpperCase();
  return h("span", { class: `tag-${s.decision}` }, label);
}

/// A dependency as the proposal names it: an id, or an object carrying one.
function depId(dep) {
  if (typeof dep === "string") return dep;
  if (dep && typeof dep === "object") return dep.id || dep.proposal || dep.outcome || Object.values(dep).find((v) => typeof v === "string");
  return String(dep);
}

function entryRow(entry) {
  const s = summarize(entry);
  return h("tr", { "data-index": entry.index },
    h("td", {}, link(`#/entry/${entry.index}`, `#${entry.index}`)),
    h("td", {}, time(entry.time)),
    h("td", {}, s.domain),
    h("td", {}, s.action),
    h("td", {}, s.subject && s.domain ? link(`#/subject/${encodeURIComponent(s.domain)}/${encodeURIComponent(s.subject)}`, s.subject) : s.subject),
    h("td", {}, decisionTag(s)),
    h("td", {}, s.id ? link(`#/proposal/${s.id}`, short(s.id)) : ""),
    h("td", {}, code(short(entry.hash))));
}

const ENTRY_HEAD = ["index", "time", "domain", "action", "subject", "decision", "proposal", "hash"];

// ---------------------------------------------------------------------------------------
// Verification panel: inclusion in the latest cosigned checkpoint, checked here.

async function proofPanel(entry, signal) {
  const panel = h("section", { "aria-labelledby": "proof-h" }, h("h2", { id: "proof-h" }, "Inclusion proof"));
  const status = h("div", { id: "proof-status", "data-verdict": "pending", role: "status" }, "Verifying…");
  panel.append(status);
  (async () => {
    const steps = [];
    const fail = (why) => {
      status.className = "bad";
      status.dataset.verdict = "bad";
      status.replaceChildren(h("strong", {}, "✘ Verification FAILED: "), why);
    };
    try {
      const checkpoint = await api("/v1/checkpoint", signal);
      const note = parseNote(checkpoint.note);
      if (note.size !== checkpoint.size) return fail(`the note says size ${note.size}, the answer ${checkpoint.size}`);
      if (entry.index >= note.size) {
        status.className = "warn";
        status.dataset.verdict = "uncovered";
        status.textContent = `Entry #${entry.index} is newer than the latest checkpoint (size ${note.size}); reload to verify it.`;
        return;
      }
      const proof = await api(`/v1/proofs/inclusion?index=${entry.index}&size=${note.size}`, signal);
      if (proof.entry_hash !== entry.hash) return fail(`the proof is about entry hash ${proof.entry_hash}, not this entry's ${entry.hash}`);
      let computed;
      try {
        computed = await inclusionRoot(entry.hash, entry.index, note.size, proof.proof);
      } catch (e) {
        return fail(`the audit path does not fit: ${e.message}`);
      }
      steps.push(["root recomputed from the entry hash and audit path (SHA-256)", code(computed)]);
      steps.push(["checkpoint's root (signed note)", code(note.root)]);
      if (computed !== note.root) return fail(`the root recomputed from the audit path (${computed}) is not the cosigned checkpoint's root (${note.root})`);
      const cosigned = await verifyCosignatures(checkpoint.note, checkpoint.cosigners);
      steps.push(["checkpoint", `${note.origin}, size ${note.size}, state ${short(note.state)}`]);
      if (!cosigned.supported) {
        status.className = "warn";
        status.dataset.verdict = "inclusion-only";
        status.replaceChildren(h("strong", {}, "✔ Inclusion verified; cosignatures NOT checked: "),
          "this browser's WebCrypto has no Ed25519. The root matches the checkpoint the node served.");
      } else if (cosigned.problems.length > 0 || cosigned.valid < cosigned.quorum) {
        return fail(`${cosigned.valid} valid cosignature(s), quorum ${cosigned.quorum}. ${cosigned.problems.join("; ")}`);
      } else {
        status.className = "ok";
        status.dataset.verdict = "ok";
        status.replaceChildren(h("strong", {}, "✔ Verified in this browser: "),
          `entry #${entry.index} is in the ledger of ${note.size} entries whose root is cosigned by ${cosigned.valid} of ${checkpoint.cosigners.length} voters (quorum ${cosigned.quorum}).`);
      }
      panel.append(kv(steps), h("p", { class: "muted" },
        "The voters' keys are the ones this node declares; pin them with `docket checkpoint --save-cosigners` and `docket verify` to trust no node."));
    } catch (e) {
      if (signal.aborted) return;
      status.className = "bad";
      status.dataset.verdict = "error";
      status.replaceChildren(errorBox(e));
    }
  })();
  return panel;
}

// ---------------------------------------------------------------------------------------
// Pages

async function clusterPage(_args, signal) {
  const root = h("div", {});
  const changes = [];
  let last = null;
  const draw = async () => {
    const status = await api("/v1/status", signal);
    let checkpoint = null, checkpointError = null;
    try { checkpoint = await api("/v1/checkpoint", signal); } catch (e) { checkpointError = e; }
    const seen = `${status.term}/${status.leader_id}`;
    if (seen !== last) { changes.unshift({ at: Date.now(), term: status.term, leader: status.leader_id }); last = seen; }
    const members = h("table", {},
      h("thead", {}, h("tr", {}, ["node", "role", "api address", "matched index", "lag"].map((t) => h("th", {}, t)))),
      h("tbody", {}, status.members.map((m) => h("tr", {},
        h("td", {}, `node ${m.id}${m.id === status.node_id ? " (this node)" : ""}`),
        h("td", {}, m.id === status.leader_id ? "leader" : m.voter ? "follower (voter)" : "learner"),
        h("td", {}, m.api_addr),
        h("td", {}, m.matched_index ?? "—"),
        h("td", {}, m.lag ?? "—")))));
    const divergence = status.divergence || []; // absent when empty
    const alarms = divergence.length === 0
      ? h("p", { class: "ok", id: "divergence" }, "No divergence alarms.")
      : h("div", { class: "bad", id: "divergence", role: "alert" }, h("strong", {}, `${divergence.length} divergence alarm(s): `),
        h("ul", {}, divergence.map((a) => h("li", {}, `node ${a.node} refused the checkpoint of size ${a.size} (root ${short(a.root)}, state ${short(a.state)}) at ${time(a.detected_ms)}`))));
    root.replaceChildren(
      h("h1", {}, `Cluster ${status.cluster_id}`),
      kv([
        ["this node", `node ${status.node_id} (${status.role})`],
        ["leader", status.leader_id === null ? "none" : `node ${status.leader_id}`],
        ["term", status.term],
        ["ledger length", link(`#/ledger`, String(status.ledger_length))],
        ["applied index", status.applied_index],
        ["state hash", status.state_hash ? code(status.state_hash) : null],
        ["ledger root", status.ledger_root ? code(status.ledger_root) : null],
        ["constitution", status.constitution_version ? link("#/constitution", short(status.constitution_version)) : null],
        ["deferred proposals", status.deferred],
      ]),
      h("h2", {}, "Divergence"), alarms,
      h("h2", {}, "Members"), members,
      h("h2", {}, "Last cosigned checkpoint"),
      checkpoint ? kv([["size", checkpoint.size], ["root", code(checkpoint.root)], ["state", code(checkpoint.state)],
        ["cosigners", `${checkpoint.cosigners.length} voters, quorum ${checkpoint.quorum}`]]) : errorBox(checkpointError),
      checkpoint ? h("pre", {}, checkpoint.note) : null,
      h("h2", {}, "Leader changes seen while this page was open"),
      h("ul", {}, changes.map((c) => h("li", {}, `${time(c.at)}: term ${c.term}, leader ${c.leader ?? "none"}`))));
  };
  await draw();
  const timer = setInterval(() => draw().catch((e) => { if (!signal.aborted) root.prepend(errorBox(e)); }), CLUSTER_REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  return root;
}

async function ledgerPage(args, signal) {
  const tail = args.from === undefined;
  const status = await api("/v1/status", signal);
  const length = status.ledger_length;
  const from = tail ? Math.max(0, length - PAGE_ENTRIES) : Math.max(0, Number(args.from));
  const page = await api(`/v1/ledger?from=${from}&limit=${PAGE_ENTRIES}`, signal);
  let entries = page.entries.slice().reverse(); // newest first
  const filters = { domain: "", action: "", subject: "", decision: "", code: "" };
  const tbody = h("tbody", { id: "ledger-rows" });
  const counter = h("span", { id: "live-count", role: "status" });
  const matches = (entry) => {
    const s = summarize(entry);
    return (!filters.domain || s.domain === filters.domain)
      && (!filters.action || s.action.includes(filters.action.toUpperCase()))
      && (!filters.subject || s.subject.includes(filters.subject))
      && (!filters.decision || s.decision === filters.decision)
      && (!filters.code || s.code.includes(filters.code.toUpperCase()));
  };
  const redraw = () => {
    tbody.replaceChildren(...entries.filter(matches).map(entryRow));
  };
  const domains = [...new Set(entries.map((e) => summarize(e).domain).filter(Boolean))].sort();
  const input = (name, label) => h("label", {}, label, h("input", { name, type: "text", oninput: (e) => { filters[name] = e.target.value; redraw(); } }));
  const select = (name, label, options) => h("label", {}, label, h("select", { name, onchange: (e) => { filters[name] = e.target.value; redraw(); } },
    h("option", { value: "" }, "any"), options.map((o) => h("option", { value: o }, o))));
  const first = page.entries.length ? page.entries[0].index : from;
  const end = first + page.entries.length;
  const nav = h("div", { class: "controls" },
    first > 0 ? link(`#/ledger/${Math.max(0, first - PAGE_ENTRIES)}`, "← Older") : null,
    !tail && end < length ? link(`#/ledger/${end}`, "Newer →") : null,
    !tail ? link("#/ledger", "Latest (live)") : null,
    h("form", { onsubmit: (e) => { e.preventDefault(); location.hash = `#/ledger/${e.target.elements.go.value}`; } },
      h("label", {}, "from index ", h("input", { name: "go", type: "number", min: 0, required: true })), " ", h("button", { type: "submit" }, "Go")));
  redraw();
  const root = h("div", {},
    h("h1", {}, tail ? "Ledger (live)" : `Ledger from #${first}`),
    h("p", {}, tail ? `${length} entries when opened; showing the newest, from #${first} on, newest first. ` : `${length} entries; showing #${first}–#${Math.max(first, end - 1)}, newest first. `, tail ? counter : null),
    nav,
    h("div", { class: "controls", role: "search" }, select("domain", "domain", domains), input("action", "action"), input("subject", "subject"),
      select("decision", "decision", ["admit", "reject", "defer", "genesis"]), input("code", "rejection code")),
    h("p", { class: "muted" }, "Filters apply to the entries loaded on this page."),
    h("table", {}, h("thead", {}, h("tr", {}, ENTRY_HEAD.map((t) => h("th", { scope: "col" }, t)))), tbody));
  if (tail) follow(end, signal, counter, (entry) => {
    entries.unshift(entry);
    if (entries.length > TAIL_ROWS_MAX) entries = entries.slice(0, TAIL_ROWS_MAX);
    if (matches(entry)) {
      tbody.prepend(entryRow(entry));
      while (tbody.children.length > TAIL_ROWS_MAX) tbody.lastChild.remove();
    }
  });
  return root;
}

/// The change feed from `next` on: NDJSON, one entry a line, empty keep-alive lines;
/// reconnects with the next index after a drop.
async function follow(next, signal, counter, onEntry) {
  let received = 0;
  counter.textContent = "Live: following the change feed.";
  while (!signal.aborted) {
    try {
      const response = await fetch(`/v1/ledger/watch?from=${next}`, { signal });
      if (!response.ok) throw new Error(`change feed: HTTP ${response.status}`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffered = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += decoder.decode(value, { stream: true });
        let newline;
        while ((newline = buffered.indexOf("\n")) >= 0) {
          const line = buffered.slice(0, newline).trim();
          buffered = buffered.slice(newline + 1);
          if (!line) continue;
          const entry = JSON.parse(line);
          if (entry.index < next) continue;
          next = entry.index + 1;
          received++;
          onEntry(entry);
          counter.textContent = `Live: ${received} new entr${received === 1 ? "y" : "ies"} since this page opened.`;
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      counter.textContent = `Live: reconnecting (${e.message})…`;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function entryPage(args, signal) {
  const index = Number(args.index);
  const page = await api(`/v1/ledger?from=${index}&limit=1`, signal);
  const entry = page.entries[0];
  if (!entry || entry.index !== index) throw new Error(`no entry #${index} (the ledger has ${page.length})`);
  const s = summarize(entry);
  return h("div", {},
    h("h1", {}, `Entry #${index}`),
    kv([
      ["time", time(entry.time)],
      ["hash", code(entry.hash)],
      ["previous entry", index > 0 ? h("span", {}, link(`#/entry/${index - 1}`, `#${index - 1}`), " ", code(entry.prev_hash)) : code(entry.prev_hash)],
      ["next entry", index + 1 < page.length ? link(`#/entry/${index + 1}`, `#${index + 1}`) : "none yet"],
      ["constitution", code(entry.constitution)],
      ["record", s.kind],
      ["proposal", s.id ? link(`#/proposal/${s.id}`, s.id) : undefined],
      ["action", s.action || undefined],
      ["subject", s.domain ? link(`#/subject/${encodeURIComponent(s.domain)}/${encodeURIComponent(s.subject)}`, `${s.domain}/${s.subject}`) : undefined],
      ["decision", s.decision ? h("span", {}, decisionTag(s), " ", s.detail) : undefined],
      ["dependencies", s.deps.length ? h("span", {}, s.deps.map((d) => [link(`#/proposal/${depId(d)}`, short(depId(d))), " "])) : undefined],
    ]),
    await proofPanel(entry, signal),
    rawJson(entry));
}

function depTree(nodes, omitted) {
  if (!nodes || nodes.length === 0) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "tree" }, nodes.map((n) => h("li", {},
    link(`#/proposal/${n.outcome_of || n.id}`, short(n.id)), ` ${String(n.status).replace(/_/g, " ")}`,
    n.index !== null && n.index !== undefined ? [" at ", link(`#/entry/${n.index}`, `#${n.index}`)] : null,
    n.expires_at ? ` (expires ${time(n.expires_at)})` : null,
    n.omitted ? ` (+${n.omitted} omitted)` : null,
    n.dependencies && n.dependencies.length ? depTree(n.dependencies, 0) : null)),
  omitted ? h("li", { class: "muted" }, `${omitted} more omitted`) : null);
}

function explainView(explain) {
  const why = explain.explanation.why;
  const rows = [["cause", explain.explanation.cause], ["decision", why.decision]];
  if (why.decision === "rejected") {
    rows.push(["failed step", typeof why.step === "object" ? `${why.step.number}. ${why.step.name}` : String(why.step)], ["code", h("strong", { id: "reject-code" }, why.code)],
      ["meaning", why.code_description], ["rule", h("code", { id: "failed-rule" }, why.rule)],
      ["named rule", why.named_rule ? `${why.named_rule.kind} ${why.named_rule.name}: ${why.named_rule.description}` : null],
      ["detail", why.detail],
      ["data read", why.reads.length ? h("table", {}, h("tr", {}, h("th", {}, "field"), h("th", {}, "type"), h("th", {}, "value")),
        why.reads.map((r) => h("tr", {}, h("td", {}, r.field), h("td", {}, JSON.stringify(r.type)), h("td", {}, JSON.stringify(r.value))))) : null],
      ["dependencies", depTree(why.dependencies, why.dependencies_omitted)]);
  } else if (why.decision === "admitted") {
    rows.push(["principal", why.principal], ["role", why.role], ["rule", h("code", {}, why.rule)],
      ["outcome", why.outcome ? h("pre", {}, JSON.stringify(why.outcome, null, 2)) : null]);
  } else if (why.decision === "deferred") {
    rows.push(["waiting on", depTree(why.waiting_on, why.waiting_on_omitted)], ["expires", why.expires_at ? time(why.expires_at) : null]);
  }
  return kv(rows);
}

async function proposalPage(args, signal) {
  const id = args.id;
  const proposal = await api(`/v1/proposals/${id}`, signal);
  let explain = null, explainError = null;
  try { explain = await api(`/v1/proposals/${id}/explain`, signal); } catch (e) { explainError = e; }
  const last = proposal.entries[proposal.entries.length - 1];
  const s = summarize(last);
  const access = s.access || {};
  const exec = explain?.execution;
  return h("div", {},
    h("h1", {}, `Proposal ${short(id)}`),
    kv([
      ["id", code(id)],
      ["status", h("span", { id: "proposal-status" }, proposal.status)],
      ["decision", h("span", {}, decisionTag(s), " ", s.detail)],
      ["action", s.action],
      ["subject", link(`#/subject/${encodeURIComponent(s.domain)}/${encodeURIComponent(s.subject)}`, `${s.domain}/${s.subject}`)],
      ["entries", h("span", {}, proposal.entries.map((e) => [link(`#/entry/${e.index}`, `#${e.index}`), ` (${summarize(e).decision}) `]))],
      ["dependencies", s.deps.length ? h("span", {}, s.deps.map((d) => [link(`#/proposal/${depId(d)}`, short(depId(d))), " "])) : "none"],
    ]),
    h("h2", {}, "Access decision"),
    kv([["verdict", access.verdict], ["principal", access.principal ?? null], ["role", access.role ?? null], ["rule", access.rule ? h("code", {}, access.rule) : null], ["key", access.key ? code(access.key) : null]]),
    h("h2", {}, "Why (explain)"),
    explain ? explainView(explain) : errorBox(explainError),
    h("h2", {}, "Execution"),
    exec ? kv([["node", exec.node_id], ["effect", exec.effect], ["phase", exec.phase], ["attempts", exec.attempts],
      ["last outcome", exec.last_outcome ?? null], ["reason", exec.last_reason ?? null], ["resolution", exec.resolution ?? null]])
      : h("p", { class: "muted" }, "No execution job on this node."),
    h("p", {}, link(`#/execution/${id}`, "Execution evidence")),
    h("h2", {}, "Recorded outcome"),
    proposal.outcome ? h("pre", {}, JSON.stringify(proposal.outcome, null, 2)) : h("p", { class: "muted" }, "No outcome recorded."),
    await proofPanel(last, signal),
    rawJson(proposal),
    explain ? rawJson(explain, "Raw explain") : null);
}

async function executionPage(args, signal) {
  const view = await api(`/v1/execution/${args.id}`, signal);
  const job = view.job;
  const attempts = job && Array.isArray(job.attempts) ? job.attempts : null;
  return h("div", {},
    h("h1", {}, `Execution of ${short(args.id)}`),
    kv([["proposal", link(`#/proposal/${args.id}`, args.id)], ["node", view.node_id], ["execution enabled", String(view.enabled)]]),
    job ? kv(Object.entries(job).filter(([, v]) => typeof v !== "object" || v === null).map(([k, v]) => [k, v === null ? null : String(v)]))
      : h("p", { class: "muted" }, "This node holds no execution job for the proposal."),
    attempts ? [h("h2", {}, "Attempts"), h("pre", {}, JSON.stringify(attempts, null, 2))] : null,
    rawJson(view));
}

/// Jobs the execution overview reads (one `GET /v1/execution?limit=` page).
const JOBS_MAX = 500;

const phaseName = (phase) => (typeof phase === "string" ? phase : Object.keys(phase || {})[0] || "?");

/// This node's execution jobs: in flight, outcomes by effect and result, refusals.
async function executionOverviewPage(_args, signal) {
  const list = await api(`/v1/execution?limit=${JOBS_MAX}`, signal);
  if (!list.enabled) {
    return h("div", {}, h("h1", {}, "Execution"),
      h("p", { class: "muted" }, `Node ${list.node_id} runs no execution agent; ask the leader.`));
  }
  const jobs = list.jobs;
  const lastOf = (job) => (job.evidence && job.evidence.length ? job.evidence[job.evidence.length - 1] : null);
  const inFlight = jobs.filter((j) => phaseName(j.phase) !== "resolved");
  const counts = new Map();
  for (const job of jobs) {
    const last = lastOf(job);
    if (!last) continue;
    const key = `${job.effect}\u0000${last.outcome}`;
    counts.set(key, (counts.get(key) || 0) + 1);
  }
  const refused = jobs.filter((j) => lastOf(j)?.outcome === "refused");
  const jobLink = (job) => link(`#/execution/${job.proposal_id}`, short(job.proposal_id));
  return h("div", {},
    h("h1", {}, `Execution on node ${list.node_id}`),
    h("p", { class: "muted" }, `${jobs.length} jobs${list.next ? ` (the first ${JOBS_MAX})` : ""}; jobs live in the journal of the node that ran them.`),
    h("h2", {}, `In flight (${inFlight.length})`),
    inFlight.length
      ? h("table", { id: "jobs-in-flight" }, h("tr", {}, h("th", {}, "proposal"), h("th", {}, "effect"), h("th", {}, "command"), h("th", {}, "phase")),
        inFlight.map((j) => h("tr", {}, h("td", {}, jobLink(j)), h("td", {}, j.effect), h("td", {}, j.command), h("td", {}, phaseName(j.phase)))))
      : h("p", { class: "muted" }, "Nothing in flight."),
    h("h2", {}, "Outcomes by effect"),
    h("table", { id: "outcomes" }, h("tr", {}, h("th", {}, "effect"), h("th", {}, "result"), h("th", {}, "jobs")),
      [...counts.entries()].sort().map(([key, n]) => {
        const [effect, outcome] = key.split("\u0000");
        return h("tr", {}, h("td", {}, effect), h("td", {}, outcome), h("td", {}, String(n)));
      })),
    h("h2", {}, `Refused (${refused.length})`),
    refused.length
      ? h("table", { id: "refused" }, h("tr", {}, h("th", {}, "proposal"), h("th", {}, "effect"), h("th", {}, "reason")),
        refused.map((j) => h("tr", {}, h("td", {}, jobLink(j)), h("td", {}, j.effect), h("td", {}, lastOf(j).reason || ""))))
      : h("p", { class: "muted" }, "No refused effects."));
}

/// Entries matching `test` read back from `from` (inclusive) towards genesis, at most
/// SCAN_ENTRIES_MAX of them, in pages: `{found, scannedFrom}`.
async function scanBack(from, test, signal, stop) {
  const found = [];
  let hi = from + 1, scanned = 0;
  while (hi > 0 && scanned < SCAN_ENTRIES_MAX) {
    const lo = Math.max(0, hi - SCAN_PAGE_ENTRIES);
    const page = await api(`/v1/ledger?from=${lo}&limit=${hi - lo}`, signal);
    for (const e of page.entries.slice().reverse()) if (test(e)) found.push(e);
    scanned += hi - lo;
    hi = lo;
    if (stop && stop(found)) break;
  }
  return { found, scannedFrom: hi };
}

async function subjectPage(args, signal) {
  const { domain, subject } = args;
  const view = await api(`/v1/state/${encodeURIComponent(domain)}/${encodeURIComponent(subject)}`, signal);
  const state = view.state;
  const root = h("div", {},
    h("h1", {}, `Subject ${domain}/${subject}`),
    kv([["state", state ? h("strong", {}, state.state) : `untouched (initial: ${view.initial_state})`],
      ["last entry that moved it", state ? link(`#/entry/${state.last_index}`, `#${state.last_index}`) : null],
      ["as of ledger length", view.as_of_length]]),
    state ? [h("h2", {}, "Data"), h("pre", {}, JSON.stringify(state.fields, null, 2))] : null);
  if (!state) return root;
  const { found, scannedFrom } = await scanBack(state.last_index, (e) => {
    const s = summarize(e);
    return s.domain === domain && s.subject === subject;
  }, signal);
  root.append(h("h2", {}, "Timeline"),
    h("p", { class: "muted" }, `Entries on this subject from #${scannedFrom} to #${state.last_index}, newest first (read back at most ${SCAN_ENTRIES_MAX} entries).`),
    h("ol", { class: "timeline", id: "timeline" }, found.map((e) => {
      const s = summarize(e);
      return h("li", {}, link(`#/entry/${e.index}`, `#${e.index}`), ` ${time(e.time)} `, s.action, " ", decisionTag(s), " ",
        link(`#/proposal/${s.id}`, short(s.id)));
    })));
  return root;
}

/// The document a constitution version was adopted with, from the ledger: genesis, or the
/// CONSTITUTION.AMEND of the subject the adopting approval names (read back, bounded).
async function versionDocument(index, active, signal) {
  if (index === active.adopted_at) return { document: active.document, approvers: await approvers(index, signal) };
  const page = await api(`/v1/ledger?from=${index}&limit=1`, signal);
  const entry = page.entries[0];
  if (entry.record.genesis) return { document: entry.record.genesis.document, approvers: ["genesis"] };
  const s = summarize(entry);
  if (s.action === "CONSTITUTION.AMEND") return { document: s.payload.document, approvers: await approvers(index, signal) };
  const { found } = await scanBack(index, (e) => {
    const t = summarize(e);
    return t.domain === s.domain && t.subject === s.subject && t.action === "CONSTITUTION.AMEND" && t.decision === "admit";
  }, signal, (f) => f.length > 0);
  if (found.length === 0) throw new Error(`the amendment adopted at #${index} is more than ${SCAN_ENTRIES_MAX} entries back`);
  return { document: summarize(found[0]).payload.document, approvers: await approvers(index, signal) };
}

async function approvers(index, signal) {
  if (index === 0) return ["genesis"];
  const page = await api(`/v1/ledger?from=${index}&limit=1`, signal);
  const s = summarize(page.entries[0]);
  const { found } = await scanBack(index, (e) => {
    const t = summarize(e);
    return t.subject === s.subject && t.domain === s.domain && t.decision === "admit";
  }, signal, (f) => f.some((e) => summarize(e).action === "CONSTITUTION.AMEND"));
  return found.reverse().map((e) => { const t = summarize(e); return `${t.access?.principal ?? short(t.access?.key)} (${t.action.replace("CONSTITUTION.", "").toLowerCase()})`; });
}

/// Unchanged lines further than DIFF_CONTEXT_LINES from a change fold into one "skip" row.
const DIFF_CONTEXT_LINES = 3;
function collapse(rows) {
  const near = rows.map(() => false);
  rows.forEach((r, k) => {
    if (r.kind === "same") return;
    for (let x = Math.max(0, k - DIFF_CONTEXT_LINES); x <= Math.min(rows.length - 1, k + DIFF_CONTEXT_LINES); x++) near[x] = true;
  });
  const out = [];
  for (let k = 0; k < rows.length; k++) {
    if (rows[k].kind !== "same" || near[k]) { out.push(rows[k]); continue; }
    const last = out[out.length - 1];
    if (last && last.kind === "skip") last.count++;
    else out.push({ kind: "skip", count: 1 });
  }
  return out;
}

async function constitutionPage(args, signal) {
  const active = await api("/v1/constitution", signal);
  const history = active.history.map(([index, version]) => ({ index: Number(index), version }));
  const pick = (name, fallback) => {
    const v = args.query.get(name);
    return v !== null && history.some((x) => String(x.index) === v) ? Number(v) : fallback;
  };
  const b = pick("b", active.adopted_at);
  const before = history.filter((x) => x.index < b);
  const a = pick("a", before.length ? before[before.length - 1].index : b);
  const rows = [];
  for (const x of history) {
    let by = "";
    try { by = (await approvers(x.index, signal)).join(", "); } catch (e) { by = `(${e.message})`; }
    rows.push(h("tr", {}, h("td", {}, link(`#/entry/${x.index}`, `#${x.index}`)), h("td", {}, code(x.version)),
      h("td", {}, x.version === active.version ? "active" : ""), h("td", {}, by)));
  }
  const choose = (name, selected) => h("label", {}, name === "a" ? "left (older)" : "right (newer)",
    h("select", { name }, history.map((x) => h("option", { value: x.index, selected: x.index === selected }, `#${x.index} ${short(x.version)}`))));
  const form = h("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    location.hash = `#/constitution?a=${e.target.elements.a.value}&b=${e.target.elements.b.value}`;
  } }, choose("a", a), choose("b", b), h("button", { type: "submit" }, "Compare"));
  const [left, right] = [await versionDocument(a, active, signal), await versionDocument(b, active, signal)];
  const diff = lineDiff(left.document, right.document);
  const removed = diff.filter((r) => r.left !== null && r.kind !== "same").length;
  const added = diff.filter((r) => r.right !== null && r.kind !== "same").length;
  const side = (text, changed, mark, cls) =>
    h("div", { class: text === null ? "gap" : changed ? cls : "" }, text === null ? "" : (changed ? mark : "  ") + text);
  const grid = h("div", { class: "diff", id: "diff", role: "table", "aria-label": "side-by-side diff" },
    h("div", { class: "gap", role: "columnheader" }, `#${a}`), h("div", { class: "gap", role: "columnheader" }, `#${b}`),
    collapse(diff).map((r) => r.kind === "skip"
      ? [h("div", { class: "gap" }, `… ${r.count} unchanged line(s) …`), h("div", { class: "gap" }, `… ${r.count} unchanged line(s) …`)]
      : [side(r.left, r.kind !== "same", "- ", "del"), side(r.right, r.kind !== "same", "+ ", "add")]));
  return h("div", {},
    h("h1", {}, `Constitution ${active.name}`),
    kv([["active version", code(active.version)], ["adopted at", link(`#/entry/${active.adopted_at}`, `#${active.adopted_at}`)]]),
    h("h2", {}, "History"),
    h("table", {}, h("thead", {}, h("tr", {}, ["adopted at", "version", "", "ratified by"].map((t) => h("th", {}, t)))), h("tbody", {}, rows)),
    h("h2", {}, "Compare versions"), form,
    h("p", { id: "diff-summary" }, removed + added === 0 ? "The two versions are identical." : `${removed} line(s) removed, ${added} line(s) added.`),
    grid,
    h("h2", {}, "Active document"), h("pre", {}, active.document));
}

async function findPage() {
  const go = (build) => (e) => { e.preventDefault(); location.hash = build(e.target.elements); };
  return h("div", {},
    h("h1", {}, "Find"),
    h("form", { class: "controls", onsubmit: go((f) => `#/proposal/${f.id.value.trim()}`) },
      h("label", {}, "proposal id", h("input", { name: "id", required: true, size: 64 })), h("button", { type: "submit" }, "Open proposal")),
    h("form", { class: "controls", onsubmit: go((f) => `#/execution/${f.id.value.trim()}`) },
      h("label", {}, "execution of proposal id", h("input", { name: "id", required: true, size: 64 })), h("button", { type: "submit" }, "Open execution")),
    h("form", { class: "controls", onsubmit: go((f) => `#/entry/${f.index.value}`) },
      h("label", {}, "entry index", h("input", { name: "index", type: "number", min: 0, required: true })), h("button", { type: "submit" }, "Open entry")),
    h("form", { class: "controls", onsubmit: go((f) => `#/subject/${encodeURIComponent(f.domain.value.trim())}/${encodeURIComponent(f.subject.value.trim())}`) },
      h("label", {}, "domain", h("input", { name: "domain", required: true })),
      h("label", {}, "subject", h("input", { name: "subject", required: true })), h("button", { type: "submit" }, "Open subject")));
}

// ---------------------------------------------------------------------------------------
// Router

const ROUTES = [
  [/^\/?$/, clusterPage, []],
  [/^\/cluster$/, clusterPage, []],
  [/^\/ledger$/, ledgerPage, []],
  [/^\/ledger\/(\d+)$/, ledgerPage, ["from"]],
  [/^\/entry\/(\d+)$/, entryPage, ["index"]],
  [/^\/proposal\/([0-9a-f]{64})$/, proposalPage, ["id"]],
  [/^\/execution$/, executionOverviewPage, []],
  [/^\/execution\/([0-9a-f]{64})$/, executionPage, ["id"]],
  [/^\/subject\/([^/]+)\/([^/]+)$/, subjectPage, ["domain", "subject"]],
  [/^\/constitution$/, constitutionPage, []],
  [/^\/find$/, findPage, []],
];

async function route() {
  pageAbort.abort();
  pageAbort = new AbortController();
  const signal = pageAbort.signal;
  const hash = location.hash.replace(/^#/, "");
  const [path, query] = hash.split("?");
  for (const [pattern, page, names] of ROUTES) {
    const m = pattern.exec(path);
    if (!m) continue;
    const args = { query: new URLSearchParams(query || "") };
    names.forEach((n, i) => { args[n] = decodeURIComponent(m[i + 1]); });
    main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const content = await page(args, signal);
      if (!signal.aborted) main.replaceChildren(content);
    } catch (e) {
      if (!signal.aborted) main.replaceChildren(errorBox(e));
    }
    document.body.dataset.page = page.name;
    return;
  }
  main.replaceChildren(errorBox(new Error(`no page ${hash}; see the links above`)));
}

async function header() {
  try {
    const status = await api("/v1/status");
    document.getElementById("node").textContent = `node ${status.node_id} · ${status.cluster_id} · ${status.role}`;
  } catch (_) { /* the page says why */ }
}

window.addEventListener("hashchange", route);
header();
route();
