"""Schemathesis hooks and checks for scripts/fuzz-api (loaded through SCHEMATHESIS_HOOKS).

The agent under test is reached over HTTPS by schemathesis; this module watches it through
its unix socket (FUZZ_SOCKET), which is trusted and never fuzzed:

- before each request it records what a refused request must not change (instances, images
  and aliases, certificates, cluster members, placement groups, server config);
- after each request it logs (method, route, status) to FUZZ_LOG for the per-route counts,
  and waits for an operation the request started, so the next snapshot is not taken while
  that operation is still changing things;
- its checks fail a case on a 4xx/5xx that is not LXD's error shape, a 2xx that is not LXD's
  sync/async envelope, a state change from a refused request, and an agent that stopped
  answering (FUZZ_DEAD_MARKER, written by the watchdog in scripts/fuzz-api).

FUZZ_FIXTURES names real objects (the instance, image, alias, member, operation, certificate,
placement group that scripts/fuzz-api made) that path parameters are sometimes replaced with, so
routes on one object get past their 404; deleting them is left to the stateful links, which
delete only what they created, except for one image made to be deleted.
"""

import http.client
import json
import os
import socket
import time

import schemathesis
from hypothesis import strategies as st

SOCKET = os.environ["FUZZ_SOCKET"]
LOG_PATH = os.environ["FUZZ_LOG"]
DEAD_MARKER = os.environ.get("FUZZ_DEAD_MARKER", "")
FIXTURES = json.load(open(os.environ["FUZZ_FIXTURES"])) if os.environ.get("FUZZ_FIXTURES") else {}


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("lxd", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def local(method, path, timeout=10.0, body=None):
    """(status, parsed JSON or None) of one request over the unix socket (`body`: sent as JSON)."""
    conn = UnixConnection(SOCKET, timeout)
    try:
        if body is None:
            conn.request(method, path)
        else:
            conn.request(method, path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        try:
            return r.status, json.loads(body)
        except ValueError:
            return r.status, None
    finally:
        conn.close()


def snapshot():
    """What refused requests must leave alone, in a comparable form."""
    def meta(path):
        status, body = local("GET", path)
        if status != 200 or not isinstance(body, dict):
            raise AssertionError(f"watching the agent: GET {path} over the unix socket answered {status}")
        return body.get("metadata")

    instances = {
        i["name"]: {"status": i.get("status"), "config": i.get("config"), "devices": i.get("devices"),
                    "description": i.get("description"), "location": i.get("location")}
        for i in meta("/1.0/instances?recursion=1") or []
    }
    images = {
        i["fingerprint"]: sorted(a["name"] for a in i.get("aliases") or [])
        for i in meta("/1.0/images?recursion=1") or []
    }
    aliases = {a["name"]: a.get("target") for a in meta("/1.0/images/aliases?recursion=1") or []}
    certificates = {
        c["fingerprint"]: {"name": c.get("name"), "type": c.get("type")}
        for c in meta("/1.0/certificates?recursion=1") or []
    }
    members = {
        m["server_name"]: {"config": m.get("config"), "failure_domain": m.get("failure_domain"), "url": m.get("url")}
        for m in meta("/1.0/cluster/members?recursion=1") or []
    }
    groups = {g["name"]: {"config": g.get("config"), "description": g.get("description")}
              for g in meta("/1.0/placement-groups?recursion=1") or []}
    server = (meta("/1.0") or {}).get("config")
    return {"instances": instances, "images": images, "aliases": aliases, "certificates": certificates,
            "members": members, "placement-groups": groups, "server config": server}


def differences(before, after):
    out = []
    for kind in before:
        b, a = before[kind], after.get(kind)
        if b == a:
            continue
        if isinstance(b, dict) and isinstance(a, dict):
            for key in sorted(set(b) | set(a)):
                if key not in a:
                    out.append(f"{kind}: {key} removed")
                elif key not in b:
                    out.append(f"{kind}: {key} added")
                elif a[key] != b[key]:
                    out.append(f"{kind}: {key} changed from {json.dumps(b[key])} to {json.dumps(a[key])}")
        else:
            out.append(f"{kind} changed from {json.dumps(b)} to {json.dumps(a)}")
    return out


# The snapshot taken before the request whose response is being checked (workers = 1).
_before = {"state": None, "error": None}


# A batch launch the schema allows (up to 5000 instances) would make the run about launching;
# valid counts are cut to this, invalid ones are sent as generated.
MAX_BATCH = 2


@schemathesis.hook
def before_call(context, case, kwargs):
    op = case.operation
    if op.method.upper() == "POST" and op.path == "/1.0/instances" and isinstance(case.body, dict):
        count = case.body.get("count")
        if isinstance(count, int) and not isinstance(count, bool) and MAX_BATCH < count <= 5000:
            case.body["count"] = MAX_BATCH
    _spares_client_certificate(case)
    try:
        _before["state"], _before["error"] = snapshot(), None
    except Exception as e:  # the state check reports it against this case
        _before["state"], _before["error"] = None, str(e)


def _json(response):
    try:
        return json.loads(response.content)
    except ValueError:
        return None


@schemathesis.hook
def after_call(context, case, response):
    body = response.request.body or b""
    if isinstance(body, str):
        body = body.encode()
    record = {"method": case.operation.method.upper(), "path": case.operation.path, "status": response.status_code,
              "sent": f"{response.request.method} {response.request.url}",
              "body": body[:300].decode("utf-8", "replace"), "answer": response.content[:300].decode("utf-8", "replace")}
    with open(LOG_PATH, "a") as f:
        f.write(json.dumps(record) + "\n")
    # Let an operation this request started finish before the next snapshot (exec operations
    # wait for websocket clients that never come: they are left alone).
    if response.status_code == 202:
        body = _json(response)
        if isinstance(body, dict) and isinstance(body.get("operation"), str) and body["operation"].startswith("/1.0/operations/"):
            op = body.get("metadata") or {}
            if op.get("class") != "websocket":
                try:
                    local("GET", body["operation"] + "/wait?timeout=20", timeout=25)
                except OSError:
                    pass
    _restore_after_evacuation(case, response)


def _restore_after_evacuation(case, response):
    """An evacuation that was accepted leaves the (only) member EVACUATED, where nothing can be
    launched: restore it, so the rest of the run still exercises the instance routes."""
    if case.operation.method.upper() != "POST" or case.operation.path != "/1.0/cluster/members/{member}/state":
        return
    if response.status_code != 202 or not isinstance(case.body, dict) or case.body.get("action") != "evacuate":
        return
    member = (case.path_parameters or {}).get("member")
    try:
        status, answer = local("POST", f"/1.0/cluster/members/{member}/state", body={"action": "restore"})
        if status == 202 and isinstance(answer, dict) and isinstance(answer.get("operation"), str):
            local("GET", answer["operation"] + "/wait?timeout=20", timeout=25)
    except OSError:
        pass


def _content_type(response):
    values = response.headers.get("content-type") or response.headers.get("Content-Type") or []
    if isinstance(values, str):
        values = [values]
    return ",".join(values)


@schemathesis.check
def lxd_error_shape(ctx, response, case):
    """Every 4xx/5xx is LXD's error: {"type":"error","error":"...","error_code":<status>}."""
    if response.status_code < 400:
        return None
    body = _json(response)
    what = f"{response.status_code} answer to {response.request.method} {response.request.url}"
    if not isinstance(body, dict):
        raise AssertionError(f"{what} is not JSON in LXD's error shape: {response.content[:200]!r}")
    if body.get("type") != "error":
        raise AssertionError(f"{what} has type {body.get('type')!r}, not \"error\"")
    if not isinstance(body.get("error"), str) or not body["error"]:
        raise AssertionError(f"{what} has no error message")
    if body.get("error_code") != response.status_code:
        raise AssertionError(f"{what} has error_code {body.get('error_code')!r}, not the HTTP status")
    return None


@schemathesis.check
def lxd_envelope(ctx, response, case):
    """A 2xx JSON answer is LXD's sync envelope (200) or async envelope (202)."""
    if not 200 <= response.status_code < 300 or "application/json" not in _content_type(response):
        return None
    body = _json(response)
    what = f"{response.status_code} answer to {response.request.method} {response.request.url}"
    if not isinstance(body, dict):
        raise AssertionError(f"{what} is not a JSON object")
    if response.status_code == 202:
        if body.get("type") != "async" or not str(body.get("operation", "")).startswith("/1.0/operations/"):
            raise AssertionError(f"{what} is not LXD's async envelope (type async, operation URL)")
    elif body.get("type") != "sync" or body.get("status_code") != 200:
        raise AssertionError(f"{what} is not LXD's sync envelope (type sync, status_code 200)")
    return None


@schemathesis.check
def refused_request_changes_nothing(ctx, response, case):
    """A request answered 4xx/5xx leaves instances, images, trust, members and config as they were."""
    if response.status_code < 400:
        return None
    if _before["error"]:
        raise AssertionError(f"could not snapshot the agent before this request: {_before['error']}")
    if _before["state"] is None:
        return None
    after = snapshot()
    changes = differences(_before["state"], after)
    if changes:
        raise AssertionError(f"refused request ({response.status_code}) changed state: " + "; ".join(changes))
    return None


@schemathesis.check
def agent_stays_up(ctx, response, case):
    """The agent's unix socket kept answering GET /1.0 (watchdog in scripts/fuzz-api)."""
    if DEAD_MARKER and os.path.exists(DEAD_MARKER):
        raise AssertionError("the agent stopped answering GET /1.0 on its unix socket: " + open(DEAD_MARKER).read().strip())
    return None


# Path parameters: sometimes a real object, so per-object routes get past their 404.
_REAL = {
    "name": FIXTURES.get("instance"),
    "fingerprint": None,  # per route below
    "alias": FIXTURES.get("alias"),
    "member": FIXTURES.get("member"),
    "id": FIXTURES.get("operation"),
    "group": FIXTURES.get("group"),
    "file": "console.log",
}


def _spares_client_certificate(case):
    """DELETE /1.0/certificates/X takes a prefix: keep the run's own certificate trusted."""
    op = case.operation
    if op.method.upper() != "DELETE" or op.path != "/1.0/certificates/{fingerprint}" or not case.path_parameters:
        return
    value = str(case.path_parameters.get("fingerprint", ""))
    own = FIXTURES.get("certificate", "")
    if own and value and own.startswith(value.lower()):
        case.path_parameters["fingerprint"] = "f" * 64 if not own.startswith("f") else "0" * 64


def _real_value(method, path, key):
    if method == "DELETE":
        # Deleting the fixtures would leave later cases nothing to act on; one image is there to go.
        return FIXTURES.get("victim_image") if path == "/1.0/images/{fingerprint}" else None
    if key == "fingerprint":
        return FIXTURES.get("certificate") if path.startswith("/1.0/certificates/") else FIXTURES.get("image")
    return _REAL.get(key)


@schemathesis.hook
def flatmap_path_parameters(context, path_parameters):
    op = context.operation
    if op is None or not path_parameters:
        return st.just(path_parameters)
    real = dict(path_parameters)
    changed = False
    for key in path_parameters:
        value = _real_value(op.method.upper(), op.path, key)
        if value:
            real[key] = value
            changed = True
    # The real object first: it is what hypothesis tries first and shrinks towards.
    return st.sampled_from([real, path_parameters]) if changed else st.just(path_parameters)
