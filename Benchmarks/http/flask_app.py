"""The original's second design, as its README sketches it: a Flask REST API over an in-memory map, run by
gunicorn. The optional comparison row of the `http` bench scenario (asynccom-bench starts it with
`gunicorn -w 2 -k gthread`); same request and reply as POST /v1/commands.

    ASYNCCOM_MAP=map.txt gunicorn -w 2 -k gthread -b 127.0.0.1:PORT flask_app:app
"""
import os
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
MAP = {}
with open(os.environ["ASYNCCOM_MAP"]) as f:
    for line in f:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        rest, wait = line.rsplit(":", 1)
        rest, response = rest.rsplit(":", 1)
        device, command = rest.rsplit(":", 1)
        MAP[(device, command)] = (int(response), float(wait))


@app.post("/v1/commands")
def commands():
    results, slowest = [], 0.0
    for item in request.get_json(force=True)["items"]:
        device, command = item.rsplit(":", 1)
        entry = MAP.get((device, command))
        results.append(entry[0] if entry else None)
        if entry:
            slowest = max(slowest, entry[1])
    if slowest:
        time.sleep(slowest)  # the "device" runs the command: this worker thread waits
    known = [r for r in results if r is not None]
    return jsonify(results=results, sum=sum(known), unknown=len(results) - len(known))
