#!/usr/bin/env python3
"""Validates every recorded HTTP exchange in Providers/<Name>/Fixtures against that provider's
trimmed official OpenAPI spec, vendored in Providers/<Name>/Spec (see PROVENANCE-*.md there).

For each exchange: find the spec operation by method and path template (honouring
operation-level `servers`, e.g. Stripe's meter-events host); validate the request body (form
bodies are decoded into nested objects from their bracketed keys, and string values are coerced
to the integer/number/boolean types the schema asks for, as the server does) and the response
body against the response schema for its status (or `default`).

Stripe quirks handled, both documented in Providers/Stripe/Spec/PROVENANCE-stripe.md:
- `oneOf` that lists specific v2 errors plus the generic `v2.error` can never match exactly one
  branch, so `oneOf` is checked as `anyOf`;
- `nullable` + `enum` (billing.meter.event_time_window): null is accepted.
Exit status 1 with one line per problem; 0 with a count when everything validates.
"""
import copy, json, os, re, sys
from urllib.parse import parse_qsl, urlsplit

try:
    import jsonschema
except ImportError:
    sys.exit("validate_fixtures: the Python package 'jsonschema' is missing; run: pip install jsonschema")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Every folder under Providers/ with Fixtures is checked against the specs vendored in its Spec/:
# every Spec/*.openapi.json, unless Spec/specs.json says otherwise. specs.json (optional) holds
#   "validate": the spec files to check against (when some vendored one is stale), with "why";
#   "outside_specs": {"METHOD /path/{id}": where its shapes come from}, operations no trimmed
#                    spec covers (listed in the output, not silently passed);
#   "query_gaps": {"name": why}, query parameters only in links the provider hands back;
#   "webhooks": the JSON schemas file its Fixtures/webhooks events are checked against.
# An exchange must validate against every listed spec that has its operation. A provider folder
# with fixtures and no spec is a problem: its fixtures would go unchecked.


def provider_folders():
    root = os.path.join(ROOT, "Providers")
    return sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, "Fixtures")))


def manifest(provider):
    path = os.path.join(ROOT, "Providers", provider, "Spec", "specs.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def spec_names(provider):
    listed = manifest(provider).get("validate")
    if listed:
        return listed
    spec_dir = os.path.join(ROOT, "Providers", provider, "Spec")
    return sorted(n for n in os.listdir(spec_dir) if n.endswith(".openapi.json")) if os.path.isdir(spec_dir) else []


QUERY_GAPS = {(p, name): why for p in provider_folders() for name, why in manifest(p).get("query_gaps", {}).items()}


def to_jsonschema(node):
    """OpenAPI 3.0 schema -> JSON Schema (nullable, oneOf-as-anyOf, drop x- keys)."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k.startswith("x-") or k in ("nullable", "example", "discriminator", "readOnly", "writeOnly", "deprecated"):
            continue
        out["anyOf" if k == "oneOf" else k] = to_jsonschema(v)
    if node.get("nullable"):
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
        if "type" in out:
            out["type"] = [out["type"], "null"]
        elif "anyOf" in out or "$ref" in out or "allOf" in out:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def load_spec(provider, name):
    with open(os.path.join(ROOT, "Providers", provider, "Spec", name)) as f:
        spec = json.load(f)
    return spec


def server_pattern(server):
    """A server URL as a regex over "scheme://host[:port]/path": templated variables (Chargebee's
    {protocol}://{site}.{environment}:{port}/api/v2) match their enum values, or any host label;
    the default port may be left out."""
    url = server["url"].rstrip("/")
    variables = server.get("variables", {})
    out, pos = "", 0
    for m in re.finditer(r"\{([^}]+)\}", url):
        out += re.escape(url[pos:m.start()])
        var = variables.get(m.group(1), {})
        if m.group(1) == "port":
            out = out[:-1] if out.endswith(":") else out  # drop the ':' escaped before
            out += "(?::(?:%s))?" % "|".join(re.escape(v) for v in var.get("enum", [var.get("default", "443")]))
        elif var.get("enum"):
            out += "(?:%s)" % "|".join(re.escape(v) for v in var["enum"])
        else:
            out += "[^./:]+"
        pos = m.end()
    out += re.escape(url[pos:])
    return re.compile("^" + out)


def operations(spec):
    default_servers = [server_pattern(s) for s in spec.get("servers", [])]
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            servers = [server_pattern(s) for s in op.get("servers", item.get("servers", []))] or default_servers
            regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path)) + "$"
            yield method.upper(), re.compile(regex), servers, op, path


def form_to_object(text):
    obj = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        parts = re.findall(r"[^\[\]]+", key)
        cur = obj
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    return obj


def coerce(value, schema, components):
    if isinstance(schema, dict) and "$ref" in schema:
        schema = components[schema["$ref"].split("/")[-1]]
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: coerce(v, props.get(k, extra if isinstance(extra, dict) else {}), components) for k, v in value.items()}
    for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
        coerced = coerce(value, branch, components)
        if coerced is not value:
            return coerced
    if isinstance(value, str):
        t = schema.get("type")
        try:
            if t == "integer":
                return int(value)
            if t == "number":
                return float(value)
            if t == "boolean" and value in ("true", "false"):
                return value == "true"
        except ValueError:
            return value
    return value


def validate(instance, schema, components, where, oas31=False):
    wrapped = copy.deepcopy(to_jsonschema(schema))
    if not isinstance(wrapped, dict):
        wrapped = {"allOf": [wrapped]}
    wrapped["components"] = {"schemas": to_jsonschema(components)}
    validator = (jsonschema.Draft202012Validator if oas31 else jsonschema.Draft7Validator)(wrapped)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    return ["%s: %s at %s" % (where, e.message[:300], "/".join(map(str, e.path)) or "(root)") for e in errors]


def split_server(url):
    parts = urlsplit(url)
    return "%s://%s" % (parts.scheme, parts.netloc), parts.path.rstrip("/")


def find_operation(ops, method, base, path):
    for m, regex, servers, op, template in ops:
        if m != method:
            continue
        for server in servers:
            match = server.match(base + path)
            if match and regex.match((base + path)[match.end():] or "/"):
                return op, template
    return None


def check_exchange(ex, ops, components, where, oas31=False, responses_components=None, parameter_components=None):
    problems = []
    req = ex["request"]
    url = urlsplit(req["url"])
    base = "%s://%s" % (url.scheme, url.netloc)
    found = find_operation(ops, req["method"].upper(), base, url.path)
    if not found:
        return ["%s: no spec operation for %s %s%s" % (where, req["method"], base, url.path)]
    op, path = found

    def check(instance, schema, comps, w):
        return validate(instance, schema, comps, w, oas31)
    body_spec = op.get("requestBody", {}).get("content", {})
    if "form" in req:
        schema = body_spec.get("application/x-www-form-urlencoded", {}).get("schema")
        if schema is None:
            problems.append("%s: %s takes no form body" % (where, path))
        else:
            obj = coerce(form_to_object(req["form"]), schema, components)
            problems += check(obj, schema, components, where + " request")
    elif "json" in req:
        sent = next((v for k, v in req.get("headers", {}).items() if k.lower() == "content-type"), "application/json").split(";")[0].strip()
        if body_spec and sent not in body_spec:
            problems.append("%s: %s takes no %s body (spec: %s)" % (where, path, sent, ", ".join(body_spec)))
        schema = body_spec.get(sent, body_spec.get("application/json", {})).get("schema")
        if schema is None:
            if req["json"] not in ({}, None):
                problems.append("%s: %s takes no JSON body" % (where, path))
        else:
            problems += check(req["json"], schema, components, where + " request")
    if url.query:
        resolved = [(parameter_components or {}).get(p["$ref"].split("/")[-1], {}) if "$ref" in p else p for p in op.get("parameters", [])]
        params = {p["name"]: p for p in resolved if p.get("in") == "query"}
        for name, value in parse_qsl(url.query, keep_blank_values=True):
            root = re.findall(r"[^\[\]]+", name)[0]
            gap = next((why for (prov, pname), why in QUERY_GAPS.items() if pname == name and "Providers/%s/" % prov in where), None)
            if root not in params and gap:
                problems.append("GAP %s: query parameter %s: %s" % (where, name, gap))
            elif root not in params:
                problems.append("%s: query parameter %s is not in the spec" % (where, name))
            else:
                schema = params[root].get("schema", {})
                if isinstance(schema, dict) and "$ref" in schema:
                    schema = components.get(schema["$ref"].split("/")[-1], schema)
                keys = re.findall(r"\[([^\]]*)\]", name)
                if isinstance(schema, dict) and schema.get("type") == "object" and keys:
                    # deepObject style: name[key]=value is the object {key: value}
                    instance = {keys[0]: coerce(value, schema.get("properties", {}).get(keys[0], {}), components)}
                elif isinstance(schema, dict) and schema.get("type") == "array":
                    # form style, explode: each occurrence is one item of the array
                    instance = [coerce(value, schema.get("items", {}), components)]
                else:
                    instance = coerce(value, schema, components)
                problems += check(instance, schema, components, where + " query " + name)
    resp = ex.get("response")
    if resp is not None and "json" in resp:
        responses = op.get("responses", {})
        spec_resp = responses.get(str(resp["status"])) or responses.get("default")
        if spec_resp and "$ref" in spec_resp:
            spec_resp = (responses_components or {}).get(spec_resp["$ref"].split("/")[-1])
        content = (spec_resp or {}).get("content", {})
        media = next((m for m in content if m == "application/json" or m.endswith("+json")), None)
        schema = content.get(media, {}).get("schema") if media else None
        if spec_resp is None:
            problems.append("GAP %s: the spec describes no response for status %s" % (where, resp["status"]))
        elif schema is None:
            problems.append("%s: the spec gives status %s no JSON body" % (where, resp["status"]))
        else:
            problems += check(resp["json"], schema, components, where + " response %s" % resp["status"])
    return problems


def main():
    problems, checked, gaps = [], 0, []
    for provider in provider_folders():
        names = spec_names(provider)
        if not names:
            problems.append("Providers/%s has fixtures and no Spec/*.openapi.json: vendor the trimmed official spec (see CONTRIBUTING.md)" % provider)
            continue
        specs = [load_spec(provider, n) for n in names]
        outside = [(key.split(" ", 1)[0], key.split(" ", 1)[1], src) for key, src in manifest(provider).get("outside_specs", {}).items()]
        fixture_dir = os.path.join(ROOT, "Providers", provider, "Fixtures")
        for dirpath, _, files in os.walk(fixture_dir):
            for name in sorted(files):
                if not name.endswith(".json") or os.path.basename(dirpath) == "webhooks":
                    continue
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    fixture = json.load(f)
                for i, ex in enumerate(fixture.get("exchanges", [])):
                    where = "%s exchange %d" % (os.path.relpath(path, ROOT), i + 1)
                    req_path = urlsplit(ex["request"]["url"]).path
                    gap = next((src for (m, t, src) in outside if m == ex["request"]["method"]
                                and re.match("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(t)) + "$", req_path)), None)
                    if gap:
                        gaps.append("%s: %s %s is outside the trimmed specs; shapes from %s" % (where, ex["request"]["method"], req_path, gap))
                        continue
                    checked += 1
                    matched = 0
                    for spec in specs:
                        ops = list(operations(spec))
                        components = spec.get("components", {}).get("schemas", {})
                        result = check_exchange(ex, ops, components, where + " [%s]" % spec.get("info", {}).get("title", "spec"),
                                                oas31=spec.get("openapi", "").startswith("3.1"),
                                                responses_components=spec.get("components", {}).get("responses", {}),
                                                parameter_components=spec.get("components", {}).get("parameters", {}))
                        if len(result) == 1 and "no spec operation" in result[0]:
                            continue
                        matched += 1
                        gaps += [r[4:] for r in result if r.startswith("GAP ")]
                        problems += [r for r in result if not r.startswith("GAP ")]
                    if matched == 0:
                        problems.append("%s: no spec operation for %s %s" % (where, ex["request"]["method"], ex["request"]["url"]))
        webhook_schemas = os.path.join(ROOT, "Providers", provider, "Spec", manifest(provider).get("webhooks", "-"))
        if os.path.exists(webhook_schemas):
            schemas = json.load(open(webhook_schemas))["schemas"]
            components = {}
            for spec in specs:
                components.update(spec.get("components", {}).get("schemas", {}))
            wdir = os.path.join(fixture_dir, "webhooks")
            for name in sorted(os.listdir(wdir)) if os.path.isdir(wdir) else []:
                event = json.load(open(os.path.join(wdir, name)))
                checked += 1
                problems += validate(event, schemas[event["type"]], components, "Providers/%s/Fixtures/webhooks/%s" % (provider, name))
    for g in gaps:
        print("gap: " + g)
    for p in problems:
        print(p)
    print("validate_fixtures: %d exchanges checked against the specs, %d outside them (listed), %d problems" % (checked, len(gaps), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
