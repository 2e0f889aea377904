import httpx, json, sys, time
OP = int(open("/tmp/ov/ports").read().split()[1])
H = {"X-API-Key": "test-root-key", "X-OpenViking-Account": "acct1", "X-OpenViking-User": "alice"}
c = httpx.Client(base_url=f"http://127.0.0.1:{OP}", headers=H, timeout=60)
def show(label, r):
    print(f"--- {label}: {r.request.method} {r.request.url.raw_path.decode()} -> {r.status_code}")
    try: print(json.dumps(r.json(), indent=1)[:1500])
    except Exception: print(r.text[:500])
    return r
show("health", c.get("/health"))
show("create", c.post("/api/v1/sessions", json={"session_id": "s1"}))
show("create again", c.post("/api/v1/sessions", json={"session_id": "s1"}))
show("create auto id", c.post("/api/v1/sessions", json={}))
show("batch", c.post("/api/v1/sessions/s1/messages/batch", json={"messages": [
  {"role": "user", "content": "My favourite colour is teal and I live in Lisbon."},
  {"role": "assistant", "parts": [
     {"type": "text", "text": "Let me look up the weather in Lisbon."},
     {"type": "tool", "tool_id": "call_1", "tool_name": "get_weather", "tool_input": {"city": "Lisbon"},
      "tool_output": "sunny, 24C", "tool_status": "completed"}]},
  {"role": "assistant", "content": "It is sunny in Lisbon, 24C."},
]}))
show("unknown session batch", c.post("/api/v1/sessions/nosuch-zzz/messages/batch", json={"messages":[{"role":"user","content":"hi"}]}))
show("get unknown session", c.get("/api/v1/sessions/never-created-q"))
show("commit unknown", c.post("/api/v1/sessions/never-created-r/commit", json={}))
show("get session", c.get("/api/v1/sessions/s1"))
t0=time.time(); r = show("commit", c.post("/api/v1/sessions/s1/commit", json={})); print("commit took", time.time()-t0)
tid = r.json()["result"].get("task_id")
for i in range(120):
    t = c.get(f"/api/v1/tasks/{tid}").json()
    st = t["result"]["status"] if t.get("result") else t
    if st in ("completed", "failed", "cancelled"): break
    time.sleep(0.25)
print("task after", time.time()-t0); print(json.dumps(t, indent=1)[:2000])
t0=time.time(); show("wait", c.post("/api/v1/system/wait", json={})); print("wait took", time.time()-t0)
show("search", c.post("/api/v1/search/search", json={"query": "favourite colour", "session_id": "s1", "limit": 5}))
show("find", c.post("/api/v1/search/find", json={"query": "favourite colour", "limit": 5}))
show("bad key", httpx.post(f"http://127.0.0.1:{OP}/api/v1/search/find", json={"query":"x"}, headers={"X-API-Key":"wrong"}))
show("no key", httpx.post(f"http://127.0.0.1:{OP}/api/v1/search/find", json={"query":"x"}))
show("validation", c.post("/api/v1/sessions/s1/messages/batch", json={"messages":[{"role":"user"}]}))
show("task unknown", c.get("/api/v1/tasks/nope"))
