"""Start fake OpenAI endpoint + real OpenViking server on free loopback ports.

    /tmp/ov/venv/bin/python /tmp/ov/start_stack.py WORKDIR
Prints one JSON line {"url", "fake_url", "api_key", "ov_pid", "fake_pid", "startup_s"} once GET /ready is 200.
Stop with: kill <ov_pid> <fake_pid>.
"""
import json, os, socket, subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_BIN = os.path.join(HERE, "venv", "bin")

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]

def main(work):
    os.makedirs(work, exist_ok=True)
    fp, op = free_port(), free_port()
    fake = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_openai.py"), str(fp), os.path.join(work, "fake.log")],
                            stdout=open(os.path.join(work, "fake.out"), "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{fp}/v1"
    conf = {
        "server": {"host": "127.0.0.1", "port": op, "root_api_key": "test-root-key", "auth_mode": "trusted"},
        "storage": {"workspace": os.path.join(work, "data")},
        "log": {"level": "WARNING", "output": os.path.join(work, "ov.log")},
        "embedding": {"dense": {"provider": "openai", "model": "fake-embed", "api_key": "x", "api_base": base, "dimension": 64}},
        "vlm": {"provider": "openai", "model": "fake-model", "api_key": "x", "api_base": base, "temperature": 0.0, "max_retries": 0},
    }
    cpath = os.path.join(work, "ov.conf")
    json.dump(conf, open(cpath, "w"), indent=1)
    env = {**os.environ, "HOME": os.path.join(work, "home"), "OPENVIKING_CONFIG_FILE": cpath}
    t0 = time.time()
    ov = subprocess.Popen([os.path.join(VENV_BIN, "openviking-server"), "--config", cpath],
                          stdin=subprocess.DEVNULL, stdout=open(os.path.join(work, "ov.out"), "w"),
                          stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{op}"
    while time.time() - t0 < 60:
        if ov.poll() is not None:
            sys.exit(f"openviking-server exited {ov.returncode}; see {work}/ov.out")
        try:
            if urllib.request.urlopen(url + "/ready", timeout=1).status == 200: break
        except Exception:
            pass
        time.sleep(0.1)
    else:
        sys.exit("not ready after 60 s")
    print(json.dumps({"url": url, "fake_url": base, "api_key": "test-root-key", "ov_pid": ov.pid,
                      "fake_pid": fake.pid, "startup_s": round(time.time() - t0, 2)}))

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/ov/stack")
