#!/usr/bin/env python3
"""Bytes of table and blob files fjall writes per keyspace of one node, per ledger entry.

fjall's files are immutable once written, so the bytes of the files that appear (or
grow, while being written) under a keyspace's directory over a window are what its
flushes and compactions wrote there. Divided by the ledger entries appended meanwhile,
that is each keyspace's write cost per entry, the figure that showed the state map's
compaction growing with the ledger (ARCHITECTURE.md, "Storage engines").

  usage: ops/bench/keyspace-writes.py DATA_DIR/node-N API_ADDR [WINDOW_S]
  e.g.   ops/bench/keyspace-writes.py /tmp/grow/node-1 127.0.0.1:46423 30

Keyspace names are by fjall's numeric directory ids, which follow the order
`FjallDisk::open` creates them in on a new store (raft/src/disk/fjall_disk.rs).
"""
import os
import re
import sys
import time
import urllib.request

NAMES = {"1": "log", "2": "meta", "3": "ledger", "4": "sm", "5": "sm_state",
         "6": "merkle", "7": "snap_stage", "8": "map"}


def files(root):
    sizes = {}
    for keyspace in os.listdir(root):
        for directory, _, names in os.walk(os.path.join(root, keyspace)):
            for name in names:
                path = os.path.join(directory, name)
                try:
                    sizes[path] = (keyspace, os.path.getsize(path))
                except OSError:
                    pass  # removed by a compaction meanwhile
    return sizes


def entries(api):
    text = urllib.request.urlopen(f"http://{api}/metrics", timeout=2).read().decode()
    return int(float(re.search(r"^docket_ledger_entries (\S+)", text, re.M).group(1)))


def main():
    node, api = sys.argv[1], sys.argv[2]
    window = float(sys.argv[3]) if len(sys.argv) > 3 else 30.0
    root = os.path.join(node, "fjall", "keyspaces")
    seen = files(root)
    written = {}
    start, began = entries(api), time.time()
    while time.time() - began < window:
        time.sleep(0.5)
        for path, (keyspace, size) in files(root).items():
            grown = size - seen.get(path, (keyspace, 0))[1]
            if grown > 0:
                written[keyspace] = written.get(keyspace, 0) + grown
                seen[path] = (keyspace, size)
    end = entries(api)
    appended = max(end - start, 1)
    print(f"ledger {start}..{end} ({appended / window:.0f} entries/s): " + ", ".join(
        f"{NAMES.get(k, k)} {v / appended:.0f} B/entry"
        for k, v in sorted(written.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
