"""content/write notes, tool-call parts, odd session ids, error envelopes."""
import httpx, json, time, uuid
from urllib.parse import quote
OP = int(open("/tmp/ov/ports").read().split()[1])
acct = "acct-" + uuid.uuid4().hex[:6]
H = {"X-API-Key": "test-root-key", "X-OpenViking-Account": acct, "X-OpenViking-User": "carol"}
c = httpx.Client(base_url=f"http://127.0.0.1:{OP}", headers=H, timeout=60)
def show(label, r, n=700):
    print(f"--- {label}: {r.request.method} {r.request.url.raw_path.decode()} -> {r.status_code}")
    try: print(json.dumps(r.json())[:n])
    except Exception: print(repr(r.text[:n]))
    return r
# notes
for uri, mode in [("viking://user/carol/memories/notes/n1.md", "replace"), ("viking://user/carol/memories/notes/n1.md", "create"),
                  ("viking://resources/notes/n2.md", "create"), ("viking://user/carol/resources/notes/n3.md", "create"),
                  ("viking://user/carol/resources/notes/n3.md", "append"), ("viking://~/resources/notes/n4.md", "create")]:
    show(f"write {mode}", c.post("/api/v1/content/write", json={"uri": uri, "content": "The deploy password rotates every Friday.", "mode": mode, "wait": True}))
show("read", c.get("/api/v1/content/read", params={"uri": "viking://user/carol/resources/notes/n3.md"}))
show("find note", c.post("/api/v1/search/find", json={"query": "deploy password rotates", "limit": 3}), 1500)
show("find note target", c.post("/api/v1/search/find", json={"query": "deploy password", "target_uri": "viking://user/carol/resources", "limit": 3}), 1500)
# tool parts
sid = "tools-" + uuid.uuid4().hex[:4]
show("create", c.post("/api/v1/sessions", json={"session_id": sid}), 200)
show("batch tool", c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [
  {"role": "user", "content": "What's the weather in Oslo? I cycle to work."},
  {"role": "assistant", "parts": [{"type": "text", "text": "Checking."},
     {"type": "tool", "tool_id": "call_9", "tool_name": "get_weather", "tool_input": {"city": "Oslo"}, "tool_output": "rain 8C", "tool_status": "completed"}]},
  {"role": "tool", "content": "rain 8C"},
  {"role": "assistant", "content": "Rain, 8C."}]}))
show("bad part type", c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [{"role": "assistant", "parts": [{"type": "weird"}]}]}))
show("bad role", c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [{"role": "system", "content": "x"}]}))
show("101 msgs", c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [{"role": "user", "content": "x"}]*101}), 400)
show("context", c.get(f"/api/v1/sessions/{sid}/context"), 1500)
r = show("commit", c.post(f"/api/v1/sessions/{sid}/commit", json={}), 300)
tid = r.json()["result"]["task_id"]
while (t := c.get(f"/api/v1/tasks/{tid}").json()["result"])["status"] not in ("completed", "failed"): time.sleep(0.1)
print("task", t["status"], t.get("error"))
show("commit again (nothing new)", c.post(f"/api/v1/sessions/{sid}/commit", json={}), 400)
# odd ids
for raw in ["a/b", "..", "%2e%2e", "a b", "emoji-😀", "a..b", ".hidden", "x" * 300, "ok_id-1.2"]:
    show(f"create id={raw!r}", c.post("/api/v1/sessions", json={"session_id": raw}), 300)
    q = quote(raw, safe="")
    show(f"batch quoted {raw!r}", c.post(f"/api/v1/sessions/{q}/messages/batch", json={"messages": [{"role": "user", "content": "hi"}]}), 300)
    show(f"get quoted {raw!r}", c.get(f"/api/v1/sessions/{q}"), 200)
# unquoted raw paths
for raw in ["a/b", "..", "%2e%2e", "a%20b"]:
    r = c.post(httpx.URL(f"http://127.0.0.1:{OP}/api/v1/sessions/{raw}/messages/batch"), json={"messages": [{"role": "user", "content": "hi"}]})
    show(f"batch raw {raw!r}", r, 300)
show("404 route", c.get("/api/v1/nope"))
show("405", c.get("/api/v1/sessions/x/commit"))
show("bad json", c.post("/api/v1/sessions", content=b"{", headers={"Content-Type": "application/json"}))
show("trusted w/o account header", httpx.post(f"http://127.0.0.1:{OP}/api/v1/sessions", json={}, headers={"X-API-Key": "test-root-key"}))
show("trusted w/o user header", httpx.post(f"http://127.0.0.1:{OP}/api/v1/sessions", json={}, headers={"X-API-Key": "test-root-key", "X-OpenViking-Account": "a"}))
show("Bearer auth", httpx.get(f"http://127.0.0.1:{OP}/api/v1/sessions", headers={"Authorization": "Bearer test-root-key", "X-OpenViking-Account": acct, "X-OpenViking-User": "carol"}), 300)
# isolation: other user does not see carol's note
c2 = httpx.Client(base_url=f"http://127.0.0.1:{OP}", headers={**H, "X-OpenViking-User": "dave"})
show("dave find", c2.post("/api/v1/search/find", json={"query": "deploy password rotates", "limit": 3}), 800)
