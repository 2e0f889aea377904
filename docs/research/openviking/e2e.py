"""End-to-end check against a stack started by start_stack.py: create -> batch -> commit -> task -> wait -> search."""
import httpx, json, sys, time, uuid
st = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ov/stack.json"))
H = {"X-API-Key": st["api_key"], "X-OpenViking-Account": "t-" + uuid.uuid4().hex[:8], "X-OpenViking-User": "u1"}
c = httpx.Client(base_url=st["url"], headers=H, timeout=30)
def ok(r):
    b = r.json(); assert r.status_code == 200 and b["status"] == "ok", (r.status_code, b); return b["result"]
sid = "s-" + uuid.uuid4().hex[:6]
t0 = time.time()
ok(c.post("/api/v1/sessions", json={"session_id": sid}))
ok(c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [
    {"role": "user", "content": "I keep my climbing shoes in the blue locker."},
    {"role": "assistant", "parts": [{"type": "text", "text": "Noted."},
        {"type": "tool", "tool_id": "c1", "tool_name": "note", "tool_input": {"k": "v"}, "tool_output": "ok", "tool_status": "completed"}]}]}))
res = ok(c.post(f"/api/v1/sessions/{sid}/commit", json={}))
tid = res["task_id"]
while (t := ok(c.get(f"/api/v1/tasks/{tid}")))["status"] not in ("completed", "failed", "cancelled"):
    time.sleep(0.1)
assert t["status"] == "completed", t
ok(c.post("/api/v1/system/wait", json={}))
hits = ok(c.post("/api/v1/search/search", json={"query": "where are the climbing shoes", "session_id": sid, "limit": 5}))
mem = [h for h in hits["memories"] if "climbing shoes" in h["abstract"]]
print(json.dumps({"commit_to_recall_s": round(time.time() - t0, 2), "task": t["result"]["memories_extracted"], "hit": mem[:1]}, indent=1))
assert mem, hits
