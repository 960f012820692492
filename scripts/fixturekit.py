"""Helpers shared by the providers' fixture composers (Providers/<Name>/Fixtures/compose_fixtures.py)."""
import datetime, hashlib, json, os

NOW = "2026-11-20T12:00:00Z"
NOW_UNIX = 1795176000  # 2026-11-20T12:00:00Z


def eid(n):
    """A UUIDv7-shaped event id, distinct per n."""
    return "019aa0f4-7c00-7000-8000-%012d" % n


def iso(ts, ms=False):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S") + (".000Z" if ms else "Z")


def unix(text):
    return int(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp())


def event(n, name="api_request", customer="acme", ts=NOW_UNIX - 60, qty="5", props=None, id=None):
    e = {"id": id or eid(n), "name": name, "customer": customer, "timestamp": iso(ts), "quantity": qty}
    if props:
        e["properties"] = props
    return e


def derived_id(parts):
    """EventID.derived(from:) in Python: ub_ + the first 32 hex digits of SHA-256 over the parts."""
    joined = "\x1f".join(p.replace("\x1f", "\x1f\x1f") for p in parts)
    return "ub_" + hashlib.sha256(joined.encode()).hexdigest()[:32]


def number(text):
    """A quantity string as the JSON number the adapters send."""
    f = float(text)
    return int(f) if f == int(f) else f


class Writer:
    def __init__(self, folder, source):
        self.folder = folder
        self.source = source
        self.request_id = 0

    def rid(self, prefix="req_"):
        self.request_id += 1
        return "%s%06d" % (prefix, self.request_id)

    def write(self, name, fixture):
        fixture.setdefault("now", NOW)
        fixture.setdefault("source", self.source)
        with open(os.path.join(self.folder, name + ".json"), "w") as f:
            json.dump(fixture, f, indent=2, sort_keys=True)
            f.write("\n")


def write_api(folder, name, description, source, exchanges):
    """An API fixture (exchanges only) under Fixtures/api/."""
    os.makedirs(os.path.join(folder, "api"), exist_ok=True)
    with open(os.path.join(folder, "api", name + ".json"), "w") as f:
        json.dump({"description": description, "source": source, "exchanges": exchanges}, f, indent=2, sort_keys=True)
        f.write("\n")


def window_record(namespace, customer, meter, start, end, qty, events=1, revision=0, total=None):
    """A window record as WindowAggregator emits it: id derived from (lane, customer, meter,
    window start[, rN]), timestamp = window start, the window facts as ub_* properties."""
    parts = [namespace, customer, meter, str(start)] + (["r%d" % revision] if revision else [])
    return {"id": derived_id(parts), "name": meter, "customer": customer, "timestamp": iso(start), "quantity": qty,
            "properties": {"ub_window_start": iso(start), "ub_window_end": iso(end), "ub_revision": revision,
                           "ub_events": events, "ub_window_total": number(total if total is not None else qty)}}
