# The web explorer's render benchmark: times its pages in Debian's headless Chromium
# (WebDriver, spoken to chromedriver), from the hash change to the page's content in the
# DOM (50 ledger rows; the inclusion proof verified), N runs per page, against a running
# node. Fill a cluster first (README "Web explorer"), then:
#
#   python3 ops/bench/explorer_render.py http://127.0.0.1:8001 7
#
# A benchmark, not a test: it prints medians with min and max, and asserts nothing.
import json, subprocess, sys, tempfile, time, urllib.request

BASE = sys.argv[1]           # e.g. http://127.0.0.1:8001
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 5

def call(method, url, body=None):
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())

driver = subprocess.Popen(["/usr/bin/chromedriver", "--port=9599"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(1.0)
profile = tempfile.mkdtemp()
try:
    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {"binary": "/usr/bin/chromium",
        "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--window-size=1280,1000"]}}}}
    session = call("POST", "http://127.0.0.1:9599/session", caps)["value"]["sessionId"]
    wd = f"http://127.0.0.1:9599/session/{session}"
    call("POST", wd + "/url", {"url": BASE + "/ui#/find"})
    time.sleep(1.0)
    status = json.loads(urllib.request.urlopen(BASE + "/v1/status").read())
    length = status["ledger_length"]
    mid = length // 2
    routes = {
        "ledger (live, newest 50)": ("#/ledger", "#ledger-rows tr", 50),
        f"ledger page from #{mid}": (f"#/ledger/{mid}", "#ledger-rows tr", 50),
        f"entry #{mid} with its proof verified": (f"#/entry/{mid}", "#proof-status[data-verdict=ok]", 1),
        "cluster": ("#/cluster", "table tr", 2),
    }
    script = """
const [hash, selector, want, done] = arguments;
const t0 = performance.now();
location.hash = hash;
const tick = () => {
  const n = document.querySelectorAll(selector).length;
  if (n >= want && document.body.dataset.page) { done(performance.now() - t0); return; }
  if (performance.now() - t0 > 30000) { done(-1); return; }
  requestAnimationFrame(tick);
};
requestAnimationFrame(tick);
"""
    print(f"ledger length {length}")
    for name, (hash, selector, want) in routes.items():
        times = []
        for i in range(RUNS):
            call("POST", wd + "/url", {"url": BASE + "/ui#/find"})
            time.sleep(0.3)
            ms = call("POST", wd + "/execute/async", {"script": script, "args": [hash, selector, want]})["value"]
            times.append(ms)
        times.sort()
        print(f"{name:45s} median {times[len(times)//2]:7.1f} ms  min {times[0]:7.1f}  max {times[-1]:7.1f}  (n={RUNS})")
    call("DELETE", wd)
finally:
    driver.kill()
