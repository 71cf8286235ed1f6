// Verification in the browser, with WebCrypto only (FORMAT.md §8.2 and §9):
// the RFC 9162 inclusion proof of an entry hash against a checkpoint's root, and the
// checkpoint's cosignatures (Ed25519 over "cosignature/v1\ntime T\n" + body).

export function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) {
    throw new Error(`not lowercase hex: ${hex}`);
  }
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function bytesToHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function base64ToBytes(text) {
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

const leafHash = (leaf) => sha256(concat(Uint8Array.of(0), leaf));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));

/// RFC 9162 §2.1.3.2: the root recomputed from `entryHashHex` (leaf m of n) and the audit
/// path, as hex; throws when the path's shape does not fit (m, n).
export async function inclusionRoot(entryHashHex, m, n, proofHex) {
  if (!(m < n)) throw new Error(`index ${m} is not below size ${n}`);
  let fn = m, sn = n - 1;
  let r = await leafHash(hexToBytes(entryHashHex));
  for (const p of proofHex.map(hexToBytes)) {
    if (sn === 0) throw new Error("the proof is longer than the tree is deep");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("the proof is shorter than the tree is deep");
  return bytesToHex(r);
}

/// The note's body lines (FORMAT.md §9.1) and its signature lines.
export function parseNote(note) {
  const split = note.indexOf("\n\n");
  if (split < 0) throw new Error("the note has no signature block");
  const body = note.slice(0, split + 1);
  const lines = body.split("\n");
  if (lines.length !== 5 || !lines[3].startsWith("state ")) throw new Error("the note's body is not four lines");
  const root = bytesToHex(base64ToBytes(lines[2]));
  const signatures = note.slice(split + 2).split("\n").filter((l) => l.length > 0).map((line) => {
    const m = /^\u2014 (\S+) (\S+)$/.exec(line);
    return m ? { name: m[1], blob: base64ToBytes(m[2]) } : null;
  }).filter(Boolean);
  return { body, origin: lines[0], size: Number(lines[1]), root, state: lines[3].slice(6), signatures };
}

export async function ed25519Supported() {
  try {
    // The 32-byte key of FORMAT.md example (e): importing it works where Ed25519 does.
    await crypto.subtle.importKey("raw",
      hexToBytes("8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394"),
      { name: "Ed25519" }, false, ["verify"]);
    return true;
  } catch (_) {
    return false;
  }
}

/// Counts the valid cosignatures of `note` by the `cosigners` ({node, name, key}):
/// `{supported, valid, quorum, problems}`. A known key with a bad signature is a problem.
export async function verifyCosignatures(note, cosigners) {
  const parsed = parseNote(note);
  const quorum = Math.floor(cosigners.length / 2) + 1;
  if (!(await ed25519Supported())) return { supported: false, valid: 0, quorum, problems: [] };
  const encoder = new TextEncoder();
  const validKeys = new Set();
  const problems = [];
  for (const cosigner of cosigners) {
    if (!cosigner.key) continue;
    const key = hexToBytes(cosigner.key);
    const keyId = (await sha256(concat(encoder.encode(cosigner.name), Uint8Array.of(0x0a, 0x04), key))).slice(0, 4);
    for (const sig of parsed.signatures) {
      if (sig.name !== cosigner.name || sig.blob.length !== 76) continue;
      if (bytesToHex(sig.blob.slice(0, 4)) !== bytesToHex(keyId)) continue;
      const time = new DataView(sig.blob.buffer, sig.blob.byteOffset + 4, 8).getBigUint64(0);
      const message = encoder.encode(`cosignature/v1\ntime ${time}\n${parsed.body}`);
      const publicKey = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
      const ok = await crypto.subtle.verify("Ed25519", publicKey, sig.blob.slice(12), message);
      if (ok) validKeys.add(cosigner.key);
      else problems.push(`${cosigner.name}: the signature does not verify`);
    }
  }
  return { supported: true, valid: validKeys.size, quorum, problems };
}
