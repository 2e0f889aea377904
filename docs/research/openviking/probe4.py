import httpx, json, uuid
OP = int(open("/tmp/ov/ports").read().split()[1])
H = {"X-API-Key": "test-root-key", "X-OpenViking-Account": "acct-" + uuid.uuid4().hex[:6], "X-OpenViking-User": "erin"}
c = httpx.Client(base_url=f"http://127.0.0.1:{OP}", headers=H, timeout=60)
r = c.post("/api/v1/content/write", json={"uri": "viking://user/erin/resources/notes/k.md", "content": "Kettle descaling happens monthly.", "mode": "create", "wait": True}); print(r.status_code, r.json()["result"]["semantic_status"])
r = c.post("/api/v1/content/write", json={"uri": "viking://user/erin/memories/notes/k2.md", "content": "Bicycle tyre pressure is 4 bar.", "mode": "create", "wait": True}); print(r.status_code)
r = c.post("/api/v1/content/write", json={"uri": "viking://user/erin/resources/notes/k.md", "content": "dup", "mode": "create"}); print("create existing:", r.status_code, r.json())
r = c.post("/api/v1/content/write", json={"uri": "viking://user/erin/resources/new/z.md", "content": "z", "mode": "replace"}); print("replace missing:", r.status_code, json.dumps(r.json())[:300])
r = c.post("/api/v1/content/write", json={"uri": "viking://user/frank/memories/x.md", "content": "z", "mode": "create"}); print("other user:", r.status_code, json.dumps(r.json())[:300])
c.post("/api/v1/sessions", json={"session_id": "s"})
for q in ["kettle descaling", "tyre pressure"]:
    r = c.post("/api/v1/search/search", json={"query": q, "session_id": "s", "limit": 3}).json()["result"]
    print(q, [(h["uri"], round(h["score"],3), h["abstract"][:50]) for k in ("memories","resources") for h in r[k]][:3])
