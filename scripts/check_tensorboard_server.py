#!/usr/bin/env python3
"""Serve a vaelab sweep with the real `tensorboard` server on 127.0.0.1 and query it over HTTP the way its web
page does; print what it serves as JSON.

  python3 scripts/check_tensorboard_server.py runs/<experiment>/<sweep-id>
"""
import json, socket, subprocess, sys, time, urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=None if body is None else json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def main(logdir):
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", logdir, "--host", "127.0.0.1",
                               "--port", str(port), "--load_fast", "false"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                get(port, "/data/plugins_listing")
                break
            except OSError:
                time.sleep(0.5)
        # The server loads runs in the background: wait until every run's data is in.
        for _ in range(60):
            runs = get(port, "/data/runs")
            groups = get(port, "/data/plugin/hparams/session_groups", {
                "experimentName": "", "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
                "colParams": [], "startIndex": 0, "sliceSize": 1000})
            # Loaded when every trial has its metrics and its end status (the server reads files incrementally).
            if groups.get("sessionGroups") and all(
                    g.get("metricValues") and all(s.get("status", "STATUS_UNKNOWN") != "STATUS_UNKNOWN" for s in g.get("sessions", []))
                    for g in groups["sessionGroups"]):
                break
            time.sleep(0.5)
        out = {
            "plugins": {k: v.get("enabled") for k, v in get(port, "/data/plugins_listing").items()},
            "runs": runs,
            "scalar_tags": get(port, "/data/plugin/scalars/tags"),
            "image_tags": get(port, "/data/plugin/images/tags"),
            "experiment": get(port, "/data/plugin/hparams/experiment", {"experimentName": ""}),
            "session_groups": groups,
        }
        json.dump(out, sys.stdout)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1])
