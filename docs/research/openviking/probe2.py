import httpx, json, sys, time, uuid
OP = int(open("/tmp/ov/ports").read().split()[1])
acct = "acct-" + uuid.uuid4().hex[:6]
H = {"X-API-Key": "test-root-key", "X-OpenViking-Account": acct, "X-OpenViking-User": "bob"}
c = httpx.Client(base_url=f"http://127.0.0.1:{OP}", headers=H, timeout=60)
def j(r): 
    print(r.request.method, r.request.url.path, r.status_code); return r.json()
sid = "conv-" + uuid.uuid4().hex[:4]
print(j(c.post("/api/v1/sessions", json={"session_id": sid})))
print(j(c.post(f"/api/v1/sessions/{sid}/messages/batch", json={"messages": [
  {"role": "user", "content": "My favourite colour is teal and I live in Lisbon."},
  {"role": "assistant", "content": "Noted: teal, Lisbon."}]})))
t0=time.time()
r = j(c.post(f"/api/v1/sessions/{sid}/commit", json={})); print(r)
tid = r["result"]["task_id"]
while True:
    t = j(c.get(f"/api/v1/tasks/{tid}"))["result"]
    if t["status"] in ("completed","failed","cancelled"): break
    time.sleep(0.2)
print("task", round(time.time()-t0,2), json.dumps(t, indent=1))
print(j(c.post("/api/v1/system/wait", json={}))["result"]["Embedding"]); print("after wait", round(time.time()-t0,2))
for ep, body in [("search", {"query": "what colour does the user like", "session_id": sid, "limit": 5}),
                 ("find", {"query": "favourite colour teal", "limit": 5})]:
    r = j(c.post(f"/api/v1/search/{ep}", json=body))
    print(ep, json.dumps(r["result"], indent=1)[:2500])
print(json.dumps(j(c.get(f"/api/v1/sessions/{sid}"))["result"]["memories_extracted"]))
