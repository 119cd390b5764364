"""Baseline for the ingest benchmark: a bare Flask view that reads the body and answers 204."""

from flask import Flask, request


def create_app() -> Flask:
    app = Flask("bare")

    @app.post("/webhooks/github")
    def receive() -> tuple[str, int]:
        request.get_data()
        return "", 204

    return app
