"""A local stand-in for the few Hugging Face Hub endpoints `HfApi.create_repo` and `upload_folder`
call, on 127.0.0.1 only, so the export's push is tested through huggingface_hub itself.

    with HubStandIn(token="hf_test") as hub:
        HfApi(endpoint=hub.url, token="hf_test").upload_folder(...)
        hub.repos["me/model"]          # {path in repo: bytes}

Endpoints: POST /api/validate-yaml (the card's metadata: a YAML mapping whose license is a string,
tags a list, and every model-index metric a type and a number), POST /api/repos/create, POST
/api/models/<repo>/preupload/<rev> (every file "regular", so the client sends contents inline in the
commit, no LFS or Xet storage behind it), POST /api/models/<repo>/commit/<rev> (NDJSON: header +
base64 files). Anything else is a 404, recorded in `unknown`. A wrong or missing token is a 401.
Each request is served by a thread; the server stops when the block ends.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


def card_errors(readme: str) -> list[str]:
    """What the stand-in refuses in a model card's metadata (a few of the Hub's own checks)."""
    match = re.match(r"---\n(.*?)\n---\n", readme, flags=re.DOTALL)
    if not match:
        return ["no YAML metadata block"]
    meta = yaml.safe_load(match.group(1))
    if not isinstance(meta, dict):
        return ["metadata is not a mapping"]
    errors = [] if isinstance(meta.get("license"), str) else ['"license" must be a string']
    errors += [] if isinstance(meta.get("tags", []), list) else ['"tags" must be a list']
    for entry in meta.get("model-index", []):
        for result in entry["results"]:
            errors += [f"metric {m.get('name')} needs a type and a numeric value" for m in result["metrics"]
                       if not m.get("type") or not isinstance(m.get("value"), (int, float))]
    return errors


class HubStandIn:
    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, dict[str, bytes]] = {}
        self.private: dict[str, bool] = {}
        self.commits: list[dict] = []
        self.unknown: list[str] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HubStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _reply(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802 — http.server's naming
                hub.unknown.append(f"GET {self.path}")
                self._reply(404, {"error": "not in the stand-in"})

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("authorization") != f"Bearer {hub.token}":
                    return self._reply(401, {"error": "Invalid credentials in Authorization header"})
                path = self.path.split("?")[0]
                if path == "/api/validate-yaml":
                    errors = card_errors(json.loads(body)["content"])
                    return self._reply(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})
                if path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req.get('organization') or 'user'}/{req['name']}"
                    hub.repos.setdefault(repo, {})
                    hub.private[repo] = req.get("visibility") == "private" or bool(req.get("private"))
                    return self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if m := re.fullmatch(rf"/api/models/{REPO}/preupload/(?P<rev>[^/]+)", path):
                    if m["repo"] not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    files = json.loads(body)["files"]
                    return self._reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                       for f in files]})
                if m := re.fullmatch(rf"/api/models/{REPO}/commit/(?P<rev>[^/]+)", path):
                    if m["repo"] not in hub.repos:
                        return self._reply(404, {"error": "Repository not found"})
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    header = next(item["value"] for item in lines if item["key"] == "header")
                    for item in lines:
                        if item["key"] == "file":
                            hub.repos[m["repo"]][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                    oid = hashlib.sha1(body).hexdigest()
                    hub.commits.append({"repo": m["repo"], "summary": header.get("summary"), "oid": oid})
                    return self._reply(200, {"commitUrl": f"{hub.url}/{m['repo']}/commit/{oid}", "commitOid": oid})
                hub.unknown.append(f"POST {self.path}")
                return self._reply(404, {"error": "not in the stand-in"})

        return Handler
