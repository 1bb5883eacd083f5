"""A bare Flask JSON endpoint, served with the shop's gunicorn settings, for comparison."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.post("/bare")
@app.get("/bare")
@app.get("/healthz")
def bare():
    return jsonify({"ok": True})
