// A line diff by longest common subsequence, for the constitution's side-by-side view.
// O(a·b) time and memory: bounded by LINES_MAX lines a side (a constitution is small).

export const LINES_MAX = 4000;

/// Rows `{left, right, kind}`: "same", "del" (left only), "add" (right only), or "change"
/// (a removed line beside the added line that took its place).
export function lineDiff(leftText, rightText) {
  const a = leftText.split("\n"), b = rightText.split("\n");
  if (a.length > LINES_MAX || b.length > LINES_MAX) {
    throw new Error(`a document over ${LINES_MAX} lines is too long to diff here`);
  }
  const n = a.length, m = b.length;
  // lcs[i][j]: the LCS length of a[i..] and b[j..].
  const lcs = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const rows = [];
  let i = 0, j = 0;
  while (i < n || j < m) {
    if (i < n && j < m && a[i] === b[j]) { rows.push({ left: a[i], right: b[j], kind: "same" }); i++; j++; }
    else if (i < n && (j === m || lcs[i + 1][j] >= lcs[i][j + 1])) { rows.push({ left: a[i], right: null, kind: "del" }); i++; }
    else { rows.push({ left: null, right: b[j], kind: "add" }); j++; }
  }
  return pair(rows);
}

/// Puts each run of removed lines beside the run of added lines right after it.
function pair(rows) {
  const out = [];
  for (let k = 0; k < rows.length;) {
    if (rows[k].kind !== "del") { out.push(rows[k]); k++; continue; }
    const dels = [], adds = [];
    while (k < rows.length && rows[k].kind === "del") dels.push(rows[k++].left);
    while (k < rows.length && rows[k].kind === "add") adds.push(rows[k++].right);
    for (let x = 0; x < Math.max(dels.length, adds.length); x++) {
      const left = x < dels.length ? dels[x] : null, right = x < adds.length ? adds[x] : null;
      out.push({ left, right, kind: left !== null && right !== null ? "change" : left !== null ? "del" : "add" });
    }
  }
  return out;
}
