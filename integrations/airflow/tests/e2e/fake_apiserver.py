"""A loopback stand-in for the Kubernetes API server, for running the e2e DAGs with no cluster.

It serves what the Python clients of the provider and of the cncf-kubernetes provider call (namespaces,
custom objects of any plural, pod lists and logs) over plain HTTP, and plays dask-operator for DaskJobs:
``JobCreated``, then ``Running`` after 1 s, then ``Successful`` after 2 s with a termination message
``{"mean": 1.00001}`` (``Failed``/``RunnerFailed`` when the runner's args mention ``raise``). It checks the
integration with Airflow (deferral, serialization, connections, XComs, cleanup), not Dask.

Usage: python fake_apiserver.py KUBECONFIG_OUT   (writes a kubeconfig for it, serves until killed)
"""

from __future__ import annotations

import copy
import json
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

LOCK = threading.Lock()
NAMESPACES: set[str] = {"default"}
OBJECTS: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name) -> object
CREATED: dict[str, float] = {}  # uid -> monotonic creation time

CUSTOM = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(/(?P<name>[^/]+))?$"
)
NAMESPACE = re.compile(r"^/api/v1/namespaces(/(?P<ns>[^/]+))?$")
PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(/(?P<name>[^/]+)(?P<log>/log)?)?$")


def status(code: int, message: str, reason: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v:
                return False
    return True


def progress(obj: dict[str, Any]) -> None:
    """dask-operator's part, by the clock."""
    if obj.get("kind") != "DaskJob":
        return
    age = time.monotonic() - CREATED[obj["metadata"]["uid"]]
    name = obj["metadata"]["name"]
    st = obj.setdefault("status", {})
    if st.get("jobStatus") in ("Successful", "Failed"):
        return
    st.update(jobStatus="JobCreated", clusterName=name)
    if age >= 1:
        st.update(jobStatus="Running", jobRunnerPodName=f"{name}-runner", startTime="2026-01-01T00:00:00Z")
    if age >= 2:
        args = json.dumps(obj["spec"]["job"]["spec"]["containers"][0].get("args", []))
        if "raise" in args:
            st.update(
                jobStatus="Failed",
                reason="RunnerFailed",
                message="runner container job exited with code 1",
                result="ValueError: failed on purpose",
            )
        else:
            st.update(
                jobStatus="Successful",
                reason="RunnerSucceeded",
                message="runner succeeded",
                result=json.dumps({"mean": 1.00001}),
            )


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write("fake-apiserver: " + fmt % args + "\n")

    def send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"null")

    def handle_any(self, method: str) -> None:
        url = urlparse(self.path)
        query = parse_qs(url.query)
        with LOCK:
            if m := NAMESPACE.match(url.path):
                return self.namespace(method, m["ns"])
            if m := PODS.match(url.path):
                if m["log"]:
                    return self.send(200, "starting\nmean of x + x.T: 1.00001\n", "text/plain")
                if m["name"]:
                    return self.send(404, status(404, f'pods "{m["name"]}" not found', "NotFound"))
                return self.send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []})
            if m := CUSTOM.match(url.path):
                return self.custom(method, m["plural"], m["ns"], m["name"], query)
        self.send(404, status(404, "the server could not find the requested resource", "NotFound"))

    def namespace(self, method: str, ns: str | None) -> None:
        if method == "POST":
            name = self.body()["metadata"]["name"]
            NAMESPACES.add(name)
            return self.send(201, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        if ns not in NAMESPACES:
            return self.send(404, status(404, f'namespaces "{ns}" not found', "NotFound"))
        if method == "DELETE":
            NAMESPACES.discard(ns)
            for key in [k for k in OBJECTS if k[1] == ns]:
                del OBJECTS[key]
        return self.send(200, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def custom(
        self, method: str, plural: str, ns: str, name: str | None, query: dict[str, list[str]]
    ) -> None:
        if ns not in NAMESPACES:
            return self.send(404, status(404, f'namespaces "{ns}" not found', "NotFound"))
        if name is None and method == "GET":
            selector = (query.get("labelSelector") or [""])[0]
            items = [
                o
                for (p, n, _), o in OBJECTS.items()
                if p == plural and n == ns and matches(o["metadata"].get("labels") or {}, selector)
            ]
            for o in items:
                progress(o)
            return self.send(200, {"kind": "List", "metadata": {}, "items": items})
        if name is None and method == "POST":
            obj = self.body()
            name = obj["metadata"]["name"]
            if (plural, ns, name) in OBJECTS:
                return self.send(409, status(409, f'{plural} "{name}" already exists', "AlreadyExists"))
            uid = str(uuid.uuid4())
            obj["metadata"].update(namespace=ns, uid=uid, creationTimestamp="2026-01-01T00:00:00Z")
            OBJECTS[(plural, ns, name)] = obj
            CREATED[uid] = time.monotonic()
            return self.send(201, obj)
        key = (plural, ns, name)
        if key not in OBJECTS:
            return self.send(404, status(404, f'{plural} "{name}" not found', "NotFound"))
        if method == "DELETE":
            del OBJECTS[key]
            return self.send(200, {"kind": "Status", "status": "Success"})
        if method == "PATCH":
            patch = self.body()
            OBJECTS[key]["metadata"].setdefault("labels", {}).update(
                (patch.get("metadata") or {}).get("labels") or {}
            )
        progress(OBJECTS[key])
        return self.send(200, copy.deepcopy(OBJECTS[key]))

    def do_GET(self) -> None:
        self.handle_any("GET")

    def do_POST(self) -> None:
        self.handle_any("POST")

    def do_DELETE(self) -> None:
        self.handle_any("DELETE")

    def do_PATCH(self) -> None:
        self.handle_any("PATCH")


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    host, port = server.server_address[:2]
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
        "users": [{"name": "fake", "user": {"token": "fake"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    }
    with open(sys.argv[1], "w") as f:
        yaml.safe_dump(kubeconfig, f)
    print(f"fake-apiserver: serving on http://{host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
