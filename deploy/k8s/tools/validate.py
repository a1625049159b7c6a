#!/usr/bin/env python3
"""Offline validation of the rendered kustomize overlays; scripts/check-k8s.sh runs it.

For every overlay (a file of `kubectl kustomize` output) it checks:

1. Core kinds (Namespace, Deployment, Service, ConfigMap, Secret, PodDisruptionBudget,
   NetworkPolicy) against the Kubernetes OpenAPI schemas bundled in the kubernetes-validate
   package, strictly (unknown fields are errors; so is an apiVersion/kind it has no schema for).
2. Custom resources against the openAPIV3Schema of their CRD (the CRD files check-k8s.sh fetched
   from package registries), converted to JSON Schema: `nullable`, `x-kubernetes-int-or-string`,
   `x-kubernetes-preserve-unknown-fields`, `x-kubernetes-embedded-resource` and list types are
   honoured, and objects that do not preserve unknown fields reject unknown fields, as the API
   server's strict field validation does. CEL rules (`x-kubernetes-validations`) are evaluated
   with cel-python where the field is set (transition rules, which compare with `oldSelf`, only
   apply to updates and are skipped). A custom resource without a CRD is an error.
3. Hand-written schemas (deploy/k8s/schemas/) for what a CRD leaves free-form: the metadata of
   KEDA kafka triggers and the parameters of their TriggerAuthentication.
4. The saga's own rules: KafkaTopics equal deploy/topics.conf, replication per overlay, ACLs,
   KEDA triggers per consumed topic, the Deployments of the services and of the read side
   (probes, security context, ports, grace period, token Secrets, the URLs of the APIs they
   call), every Secret/ConfigMap reference resolvable, dev-only secret values, and
   NetworkPolicies that select existing pods and let each caller reach the API it calls.

Then it runs negative controls: deliberately broken copies of rendered resources that each check
must reject, so a validator that silently accepts everything cannot pass.

Exits 1 at the first problem, with one line saying which overlay, resource and rule.
"""
from __future__ import annotations

import argparse
import base64
import copy
import functools
import json
import re
import sys
from collections import Counter, OrderedDict
from pathlib import Path

import celpy
import jsonschema
import kubernetes_validate
import yaml
from jsonschema import validators
from kubernetes_validate import utils as kv_utils

# The saga's topology (README.md, deploy/topics.conf): who reads and who writes which topic.
SERVICES = OrderedDict(
    order=dict(port=8080, db="orders",
               reads=["order.events", "payment.events", "inventory.events", "shipping.events",
                      "order.retry"]),
    payment=dict(port=8082, db="payments",
                 reads=["order.events", "inventory.events", "shipping.events", "payment.retry"]),
    inventory=dict(port=8083, db="inventory",
                   reads=["order.events", "payment.events", "shipping.events", "inventory.retry"]),
    shipping=dict(port=8084, db="shipping",
                  reads=["order.events", "inventory.events", "shipping.retry"]),
)
for _svc, _d in SERVICES.items():
    _d["writes"] = [f"{_svc}.events", f"{_svc}.retry", f"{_svc}.dlq"]
    # What its outbox relay publishes, and so also reads (the takeover probe): all it writes.
    _d["relay"] = _d["writes"]
# The read side (services/history): it reads every partition of the event topics by explicit
# assignment under a group id it never joins, so KEDA has no group lag to scale it on, and extra
# replicas read the same records again. It never writes an event topic: its projector's relay
# publishes only its own dead letters, and its console reads the services' dead letters and
# redrives them through their retry topics (as `sagactl dlq` does: written, never read back).
# The console also calls Payment's reviews API (`calls`: service -> the variable holding its URL)
# and checks the operator's token (`tokens`, from a Secret).
READ_SIDE = OrderedDict(
    history=dict(port=8085, db="history", group="history-projector",
                 reads=[f"{s}.events" for s in SERVICES] + [f"{s}.dlq" for s in SERVICES],
                 writes=["history.dlq"] + [f"{s}.retry" for s in SERVICES],
                 relay=["history.dlq"], calls=dict(payment="PAYMENT_URL"),
                 tokens=["CONSOLE_OPERATOR_TOKEN"]),
)

IMAGE = "ghcr.io/saga-example/order-saga"
# What each overlay must look like.
# (Upper bounds of replica counts come from the partitions, not from here.)
EXPECT = {
    "dev": dict(topic_replicas=1, min_isr=1, pg_instances=1, service_replicas=(1, 1),
                min_replicas=1, read_side_replicas=(1, 1)),
    "prod": dict(topic_replicas=3, min_isr=2, pg_instances=3, service_replicas=(2, None),
                 min_replicas=2, read_side_replicas=(1, None)),
}
# Secrets that neither overlays/prod nor an operator creates: the platform team does (see
# overlays/prod/kustomization.yaml). Everything else must resolve inside the render.
PROVIDED_BY_PLATFORM = {"orders-db-runtime", "payments-db-runtime", "inventory-db-runtime",
                        "shipping-db-runtime", "history-db-runtime", "inventory-admin",
                        "payment-reviewer", "console-operator"}


class Failure(Exception):
    pass


def fail(overlay, doc, message):
    where = f"{doc['kind']} {doc['metadata'].get('namespace', '-')}/{doc['metadata']['name']}" \
        if isinstance(doc, dict) else str(doc)
    raise Failure(f"[{overlay}] {where}: {message}")


def group_of(doc):
    api = doc["apiVersion"]
    return api.split("/", 1)[0] if "/" in api else ""


def load_docs(path):
    docs = []
    for i, doc in enumerate(yaml.safe_load_all(Path(path).read_text())):
        if doc is None:
            continue
        if not isinstance(doc, dict) or not {"apiVersion", "kind", "metadata"} <= doc.keys() \
                or "name" not in (doc.get("metadata") or {}):
            raise Failure(f"{path}: document {i} has no apiVersion, kind or metadata.name")
        docs.append(doc)
    return docs


def err_text(error):
    path = ".".join(str(p) for p in error.absolute_path) or "(root)"
    return f"at {path}: {error.message}"


# --------------------------------------------------------------------------------------------
# 1. Core kinds: kubernetes-validate

CORE_GROUPS = {"", "apps", "batch", "policy", "autoscaling"}


def is_core(doc):
    group = group_of(doc)
    return group in CORE_GROUPS or group.endswith(".k8s.io")


class CoreValidator:
    def __init__(self, version):
        self.version = version
        # The package re-reads and re-parses its schema files for every resource; the negative
        # controls validate the overlay twenty times over, so read each file once.
        if not hasattr(kv_utils.schema_contents, "cache_info"):
            kv_utils.schema_contents = functools.lru_cache(maxsize=None)(kv_utils.schema_contents)

    def errors(self, doc):
        try:
            kubernetes_validate.validate(doc, self.version, strict=True)
            return []
        except kv_utils.SchemaNotFoundError as e:
            return [f"no Kubernetes {self.version} schema: {e.message}"]
        except kv_utils.ValidationError as e:
            return [err_text(e)]


# --------------------------------------------------------------------------------------------
# 2. Custom resources: the CRDs' openAPIV3Schema as JSON Schema

LOGIC = ("allOf", "anyOf", "oneOf")
DROP = {"description", "example", "externalDocs", "default", "format", "nullable", "title"}


def to_json_schema(node, in_logic=False):
    """openAPIV3Schema (structural, Kubernetes dialect) -> JSON Schema draft 4."""
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {k: to_json_schema(v, in_logic) for k, v in value.items()}
        elif key == "items":
            out[key] = to_json_schema(value, in_logic) if isinstance(value, dict) \
                else [to_json_schema(v, in_logic) for v in value]
        elif key == "additionalProperties":
            out[key] = to_json_schema(value, in_logic) if isinstance(value, dict) else value
        elif key in LOGIC:
            out[key] = [to_json_schema(v, True) for v in value]
        elif key == "not":
            out[key] = to_json_schema(value, True)
        elif key == "x-kubernetes-list-type":
            out["x-list-type"] = value
        elif key == "x-kubernetes-list-map-keys":
            out["x-list-map-keys"] = value
        elif key.startswith("x-kubernetes-") or key in DROP:
            continue
        else:
            out[key] = value
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        if "anyOf" not in out:
            out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        props = out.setdefault("properties", {})
        for k in ("apiVersion", "kind"):
            props.setdefault(k, {"type": "string"})
        props.setdefault("metadata", {"type": "object"})
    # A structural object that does not preserve unknown fields prunes them; with strict field
    # validation (kubectl's default) they are errors. Value-validation branches (allOf/anyOf/
    # oneOf/not) never declare structure, so they are left open.
    if not in_logic and not preserve and out.get("type") == "object" \
            and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = list(out["enum"]) + [None]
    return out


def _list_type(validator, list_type, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    if list_type == "set":
        seen = []
        for item in instance:
            if item in seen:
                yield jsonschema.ValidationError(f"duplicate item {item!r} in a list of type set")
            seen.append(item)
    elif list_type == "map":
        keys = schema.get("x-list-map-keys", [])
        seen = set()
        for item in instance:
            if not isinstance(item, dict):
                continue
            k = tuple(json.dumps(item.get(key), sort_keys=True) for key in keys)
            if k in seen:
                yield jsonschema.ValidationError(
                    f"duplicate entry for key(s) {keys} = {[item.get(key) for key in keys]}")
            seen.add(k)


K8sValidator = validators.extend(jsonschema.Draft4Validator, {"x-list-type": _list_type})

OBJECT_META = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253,
                 "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "generateName": {"type": "string"},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


class Cel:
    """Evaluates a CRD's x-kubernetes-validations rules on a resource, as the API server does on
    create: at every schema node whose field is present, with `self` bound to its value."""

    def __init__(self):
        self.env = celpy.Environment()
        self.programs = {}

    def _program(self, rule):
        if rule not in self.programs:
            self.programs[rule] = self.env.program(self.env.compile(rule))
        return self.programs[rule]

    def check(self, schema, value, path, stats):
        errors = []
        for r in schema.get("x-kubernetes-validations", []):
            if "oldSelf" in r["rule"]:
                stats["transition rules skipped"] += 1
                continue
            try:
                result = self._program(r["rule"]).evaluate({"self": celpy.json_to_cel(value)})
            except Exception as e:  # an expression cel-python cannot compile or run
                stats["could not evaluate"] += 1
                stats.setdefault("errors", []).append(f"{r['rule']}: {e}")
                continue
            if isinstance(result, celpy.CELEvalError):
                stats["could not evaluate"] += 1
                continue
            stats["evaluated"] += 1
            if not bool(result):
                message = r.get("message") or f"failed rule: {r['rule']}"
                errors.append(f"at {path or '(root)'}: {message} (CEL rule)")
        if isinstance(value, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for k, v in value.items():
                sub = props.get(k, extra if isinstance(extra, dict) else None)
                if sub is not None:
                    errors += self.check(sub, v, f"{path}.{k}" if path else k, stats)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, v in enumerate(value):
                errors += self.check(schema["items"], v, f"{path}.{i}", stats)
        return errors


class CrdRegistry:
    def __init__(self, crd_dir):
        self.crds = {}
        for path in sorted(Path(crd_dir).rglob("*.yaml")):
            for crd in yaml.safe_load_all(path.read_text()):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                spec = crd["spec"]
                self.crds[(spec["group"], spec["names"]["kind"])] = dict(
                    name=crd["metadata"]["name"], source=path.parent.name,
                    scope=spec["scope"], versions={v["name"]: v for v in spec["versions"]})
        self._validators = {}
        self.cel = Cel()
        self.cel_stats = {}

    def lookup(self, doc):
        group, version = doc["apiVersion"].split("/", 1)
        return self.crds.get((group, doc["kind"])), version

    def describe(self, doc):
        crd, version = self.lookup(doc)
        return f"{crd['name']} {version} ({crd['source']})" if crd else "no CRD"

    def errors(self, doc):
        crd, version = self.lookup(doc)
        if crd is None:
            return [f"no CRD for {doc['apiVersion']} {doc['kind']} (is it a typo, or is a CRD "
                    f"missing from scripts/check-k8s.sh?)"]
        v = crd["versions"].get(version)
        if v is None or not v.get("served", False):
            served = [n for n, x in crd["versions"].items() if x.get("served")]
            return [f"{crd['name']} does not serve {version} (served: {', '.join(served)})"]
        problems = []
        if v.get("deprecated"):
            problems.append(f"{crd['name']} {version} is deprecated: "
                            f"{v.get('deprecationWarning', '')}")
        key = (crd["name"], version)
        if key not in self._validators:
            raw = v["schema"]["openAPIV3Schema"]
            schema = to_json_schema(raw)
            schema.setdefault("properties", {})["metadata"] = OBJECT_META
            K8sValidator.check_schema(schema)
            self._validators[key] = (K8sValidator(schema), raw)
        validator, raw = self._validators[key]
        found = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
        problems += [err_text(e) for e in found[:5]]
        if not found:
            stats = self.cel_stats.setdefault(doc["kind"], Counter())
            problems += self.cel.check(raw, doc, "", stats)
        if crd["scope"] == "Namespaced" and not doc["metadata"].get("namespace"):
            problems.append("namespaced resource without a namespace")
        return problems

    def cel_summary(self, kind):
        stats = self.cel_stats.get(kind)
        if not stats:
            return ""
        parts = [f"{stats['evaluated']} CEL rule evaluation(s)"]
        for k in ("transition rules skipped", "could not evaluate"):
            if stats[k]:
                parts.append(f"{stats[k]} {k}")
        return "; " + ", ".join(parts)


# --------------------------------------------------------------------------------------------
# 3. Hand-written schemas

def kafka_trigger_instances(docs):
    """(ScaledObject, trigger index, {metadata, authParams}) for every kafka trigger."""
    auths = {d["metadata"]["name"]: d for d in docs if d["kind"] == "TriggerAuthentication"}
    for so in (d for d in docs if d["kind"] == "ScaledObject"):
        for i, trigger in enumerate(so["spec"].get("triggers", [])):
            if trigger.get("type") != "kafka":
                continue
            params = []
            ref = (trigger.get("authenticationRef") or {}).get("name")
            auth = auths.get(ref)
            if ref and auth is None:
                yield so, i, None
                continue
            if auth:
                for field in ("secretTargetRef", "configMapTargetRef", "env"):
                    params += [p["parameter"] for p in auth["spec"].get(field, [])]
            yield so, i, {"metadata": trigger.get("metadata", {}), "authParams": params}


def check_kafka_triggers(overlay, docs, schema):
    validator = jsonschema.Draft7Validator(schema)
    n = 0
    for so, i, instance in kafka_trigger_instances(docs):
        if instance is None:
            fail(overlay, so, f"triggers[{i}]: TriggerAuthentication "
                              f"{so['spec']['triggers'][i]['authenticationRef']['name']} not found")
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.path)))
        if errors:
            fail(overlay, so, f"triggers[{i}] (hand-written schema keda-kafka-trigger): "
                              f"{err_text(errors[0])}")
        n += 1
    return n


# --------------------------------------------------------------------------------------------
# 4. The saga's rules

def read_topics_conf(path):
    topics = OrderedDict()
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, partitions, configs = line.split()
        topics[name] = dict(partitions=int(partitions),
                            config=dict(kv.split("=", 1) for kv in configs.split(",")))
    return topics


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def check_topics(overlay, docs, topics_conf, expect):
    kafka = by_kind(docs, "Kafka")
    if len(kafka) != 1:
        raise Failure(f"[{overlay}] expected one Kafka cluster, found {len(kafka)}")
    kafka = kafka[0]
    cluster = kafka["metadata"]["name"]
    brokers = sum(p["spec"]["replicas"] for p in by_kind(docs, "KafkaNodePool")
                  if "broker" in p["spec"]["roles"])
    topics = {}
    for t in by_kind(docs, "KafkaTopic"):
        name = t["spec"].get("topicName", t["metadata"]["name"])
        if t["metadata"].get("labels", {}).get("strimzi.io/cluster") != cluster:
            fail(overlay, t, f"label strimzi.io/cluster must be {cluster}")
        if name in topics:
            fail(overlay, t, f"topic {name} is declared twice")
        topics[name] = t
    if set(topics) != set(topics_conf):
        raise Failure(f"[{overlay}] KafkaTopics differ from deploy/topics.conf: missing "
                      f"{sorted(set(topics_conf) - set(topics))}, extra "
                      f"{sorted(set(topics) - set(topics_conf))}")
    for name, want in topics_conf.items():
        t = topics[name]
        spec = t["spec"]
        if spec.get("partitions") != want["partitions"]:
            fail(overlay, t, f"partitions {spec.get('partitions')} but deploy/topics.conf says "
                             f"{want['partitions']}")
        config = {k: str(v) for k, v in (spec.get("config") or {}).items()}
        for k, v in want["config"].items():
            if config.get(k) != v:
                fail(overlay, t, f"config {k}={config.get(k)} but deploy/topics.conf says {v}")
        extra = set(config) - set(want["config"]) - {"min.insync.replicas"}
        if extra:
            fail(overlay, t, f"configs not in deploy/topics.conf: {sorted(extra)}")
        if expect:
            if spec.get("replicas") != expect["topic_replicas"]:
                fail(overlay, t, f"replicas {spec.get('replicas')}, expected "
                                 f"{expect['topic_replicas']} in {overlay}")
            if config.get("min.insync.replicas") != str(expect["min_isr"]):
                fail(overlay, t, f"min.insync.replicas {config.get('min.insync.replicas')}, "
                                 f"expected {expect['min_isr']} in {overlay}")
        if spec.get("replicas", 1) > brokers:
            fail(overlay, t, f"replicas {spec.get('replicas')} > {brokers} broker(s)")
        if int(config.get("min.insync.replicas", 1)) >= spec.get("replicas", 1) > 1:
            fail(overlay, t, "min.insync.replicas must be below replicas, or one broker down "
                             "stops every acks=all producer")
    kconf = kafka["spec"]["kafka"].get("config", {})
    if str(kconf.get("auto.create.topics.enable")).lower() != "false":
        fail(overlay, kafka, "auto.create.topics.enable must be false")
    if expect:
        for key in ("offsets.topic.replication.factor", "default.replication.factor",
                    "transaction.state.log.replication.factor"):
            if kconf.get(key) != expect["topic_replicas"]:
                fail(overlay, kafka, f"{key} is {kconf.get(key)}, expected "
                                     f"{expect['topic_replicas']}")
        if kconf.get("min.insync.replicas") != expect["min_isr"]:
            fail(overlay, kafka, f"min.insync.replicas {kconf.get('min.insync.replicas')}, "
                                 f"expected {expect['min_isr']}")
    listeners = kafka["spec"]["kafka"]["listeners"]
    plain = [lst for lst in listeners if lst["name"] == "plain"]
    if not plain or plain[0]["port"] != 9092 or \
            plain[0].get("authentication", {}).get("type") != "scram-sha-512":
        fail(overlay, kafka, "needs a `plain` listener on 9092 with scram-sha-512 authentication")
    if kafka["spec"]["kafka"].get("authorization", {}).get("type") != "simple":
        fail(overlay, kafka, "authorization must be simple")
    return {n: t["spec"]["partitions"] for n, t in topics.items()}


def acl_set(user):
    out = set()
    for acl in user["spec"].get("authorization", {}).get("acls", []):
        r = acl["resource"]
        if acl.get("type", "allow") != "allow":
            continue
        for op in acl["operations"]:
            out.add((r["type"], r.get("name", ""), r.get("patternType", "literal"), op))
    return out


def check_users(overlay, docs, topics):
    users = {u["metadata"]["name"]: u for u in by_kind(docs, "KafkaUser")}
    for svc, d in list(SERVICES.items()) + list(READ_SIDE.items()):
        name = f"{svc}-service"
        group = d.get("group", name)
        user = users.get(name)
        if user is None:
            raise Failure(f"[{overlay}] no KafkaUser {name}")
        if user["spec"].get("authentication", {}).get("type") != "scram-sha-512":
            fail(overlay, user, "authentication must be scram-sha-512")
        acls = acl_set(user)
        if any(op == "All" or pattern != "literal" for _, _, pattern, op in acls):
            fail(overlay, user, "service users get literal ACLs and named operations only")
        writes = {n for t, n, _, op in acls if t == "topic" and op == "Write"}
        reads = {n for t, n, _, op in acls if t == "topic" and op == "Read"}
        if writes != set(d["writes"]):
            fail(overlay, user, f"may write {sorted(writes)}, must write exactly {d['writes']}")
        # Reads: what it consumes, plus what its outbox relay publishes (the takeover probe).
        if reads != set(d["reads"]) | set(d["relay"]):
            fail(overlay, user, f"may read {sorted(reads)}, must read exactly "
                                f"{sorted(set(d['reads']) | set(d['relay']))}")
        for t in reads | writes:
            if ("topic", t, "literal", "Describe") not in acls:
                fail(overlay, user, f"needs Describe on topic {t}")
            if t not in topics:
                fail(overlay, user, f"ACL names topic {t}, which no KafkaTopic declares")
        groups = {n for t, n, _, op in acls if t == "group" and op == "Read"}
        if groups != {group, "saga-reader"}:
            fail(overlay, user, f"may use groups {sorted(groups)}, must use {group} and "
                                f"saga-reader")
        if ("cluster", "", "literal", "IdempotentWrite") not in acls:
            fail(overlay, user, "idempotent producers need IdempotentWrite on the cluster")
    ctl = users.get("sagactl")
    if ctl is None:
        raise Failure(f"[{overlay}] no KafkaUser sagactl")
    acls = acl_set(ctl)
    writes = {n for t, n, _, op in acls if t == "topic" and op == "Write"}
    reads = {n for t, n, _, op in acls if t == "topic" and op == "Read"}
    if reads != set(topics) or writes != {f"{s}.retry" for s in SERVICES}:
        fail(overlay, ctl, "sagactl reads every topic and writes only the four *.retry topics")
    if ("group", "saga-reader", "prefix", "Read") not in acls or any(
            t == "group" and op == "Read" and n != "saga-reader" for t, n, _, op in acls):
        fail(overlay, ctl, "sagactl reads with groups prefixed saga-reader only")
    return len(users)


def check_scaledobjects(overlay, docs, partitions, expect):
    sos = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind(docs, "ScaledObject")}
    for svc in READ_SIDE:
        if f"{svc}-service" in sos:
            fail(overlay, sos[f"{svc}-service"], f"{svc}-service must not autoscale: its projector "
                                                 f"has no group lag, and every replica reads "
                                                 f"every record")
    for svc, d in SERVICES.items():
        name = f"{svc}-service"
        so = sos.get(name)
        if so is None:
            raise Failure(f"[{overlay}] no ScaledObject for Deployment {name}")
        spec = so["spec"]
        topics = []
        for t in spec["triggers"]:
            md = t.get("metadata", {})
            if t["type"] != "kafka" or md.get("consumerGroup") != name:
                fail(overlay, so, f"every trigger must be kafka lag of group {name}")
            topics.append(md.get("topic"))
        if sorted(topics) != sorted(d["reads"]):
            fail(overlay, so, f"triggers on {sorted(topics)}, expected one per consumed topic "
                              f"{sorted(d['reads'])}")
        lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
        most = max(partitions[t] for t in topics)
        if not 1 <= lo <= hi <= most:
            fail(overlay, so, f"needs 1 <= minReplicaCount ({lo}) <= maxReplicaCount ({hi}) <= "
                              f"partitions ({most}): extra replicas would idle")
        if expect and lo < expect["min_replicas"]:
            fail(overlay, so, f"minReplicaCount {lo}, expected at least {expect['min_replicas']} "
                              f"in {overlay}")
    return len(sos)


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


def check_services(overlay, docs, expect, partitions):
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    configmaps = {c["metadata"]["name"]: c for c in by_kind(docs, "ConfigMap")}
    pdbs = by_kind(docs, "PodDisruptionBudget")
    for svc, d in list(SERVICES.items()) + list(READ_SIDE.items()):
        name = f"{svc}-service"
        read_side = svc in READ_SIDE
        dep = deployments.get(name)
        if dep is None:
            raise Failure(f"[{overlay}] no Deployment {name}")
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        port = d["port"]

        def need(ok, message, doc=dep):
            if not ok:
                fail(overlay, doc, message)

        need(c.get("image", "").split("@")[0].rsplit(":", 1)[0] == IMAGE, f"image must be {IMAGE}")
        need(c.get("command") == [name], f"command must be [{name}]")
        need([p["containerPort"] for p in c.get("ports", [])] == [port], f"containerPort {port}")
        cm_names = [e["configMapRef"]["name"] for e in c.get("envFrom", []) if "configMapRef" in e]
        settings = {}
        for cm in cm_names:
            settings.update(configmaps.get(cm, {}).get("data", {}))
        need(settings.get("HTTP_ADDR") == f"0.0.0.0:{port}", f"HTTP_ADDR must be 0.0.0.0:{port}")
        need(settings.get("KAFKA_SASL_USERNAME") == name, f"KAFKA_SASL_USERNAME must be {name}")
        env = env_of(c)
        secret_env = ["MIGRATION_DATABASE_URL", "KAFKA_SASL_PASSWORD"] + \
            (["INVENTORY_ADMIN_TOKEN"] if svc == "inventory" else []) + \
            (["PAYMENT_REVIEWER_TOKEN"] if svc == "payment" else []) + d.get("tokens", [])
        for var in secret_env:
            need("secretKeyRef" in env.get(var, {}).get("valueFrom", {}), f"{var} from a Secret")
        # The APIs it calls, at their Service (an env entry overrides the ConfigMap, as in a pod).
        for callee, var in d.get("calls", {}).items():
            value = env[var].get("value", "") if var in env else settings.get(var, "")
            port_of = SERVICES[callee]["port"]
            need(re.fullmatch(rf"http://{callee}-service(\.saga(\.svc(\.cluster\.local)?)?)?"
                              rf":{port_of}/?", value),
                 f"{var} must be http://{callee}-service:{port_of} (the {callee}-service "
                 f"Service), not {value!r}")
        url = env.get("DATABASE_URL", {}).get("value", "")
        parts = re.findall(r"\$\(([A-Z_]+)\)", url)
        need(url.startswith("postgres://") and f"@{d['db']}-db-rw:5432/{d['db']}" in url,
             f"DATABASE_URL must point at {d['db']}-db-rw:5432/{d['db']}")
        need(parts and all("secretKeyRef" in env.get(p, {}).get("valueFrom", {}) for p in parts)
             and list(env).index("DATABASE_URL") > max(list(env).index(p) for p in parts),
             "DATABASE_URL must be built from Secret-backed variables defined before it")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c.get(probe, {}).get("httpGet", {})
            need(get.get("path") == path and get.get("port") in ("http", port),
                 f"{probe} must GET {path} on the HTTP port")
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True and psc.get("runAsUser") == 65534
             and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
             "pod must run as non-root 65534 with seccomp RuntimeDefault")
        need(csc.get("readOnlyRootFilesystem") is True
             and csc.get("allowPrivilegeEscalation") is False
             and csc.get("capabilities", {}).get("drop") == ["ALL"],
             "container needs readOnlyRootFilesystem, no privilege escalation, drop ALL")
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        need(tmp and "emptyDir" in vols.get(tmp[0]["name"], {}), "an emptyDir at /tmp")
        need(pod.get("terminationGracePeriodSeconds", 30) >= 75,
             "terminationGracePeriodSeconds must cover 30 s consumer + 30 s relay shutdown (75)")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        need(ann.get("prometheus.io/scrape") == "true"
             and ann.get("prometheus.io/port") == str(port)
             and ann.get("prometheus.io/path") == "/metrics", "Prometheus scrape annotations")
        res = c.get("resources", {})
        need(res.get("requests", {}).get("cpu") and res.get("requests", {}).get("memory")
             and res.get("limits", {}).get("memory"), "requests (cpu, memory) and a memory limit")
        replicas = dep["spec"].get("replicas", 1)
        # Every replica of the read side reads every partition: the partitions bound nothing.
        need(read_side or replicas <= max(partitions[t] for t in d["reads"]),
             f"replicas {replicas}: more than the partitions of any topic it reads")
        if expect:
            lo, hi = expect["read_side_replicas" if read_side else "service_replicas"]
            need(lo <= replicas and (hi is None or replicas <= hi),
                 f"replicas {replicas} outside {lo}..{hi or 'partitions'} for {overlay}")
        selector = dep["spec"]["selector"]["matchLabels"]
        s = services.get(name)
        need(s is not None and s["spec"].get("type", "ClusterIP") == "ClusterIP"
             and s["spec"]["selector"] == selector
             and [p["port"] for p in s["spec"]["ports"]] == [port],
             f"a ClusterIP Service {name} on {port} selecting the pods")
        pdb = [p for p in pdbs if p["spec"]["selector"].get("matchLabels") == selector]
        need(len(pdb) == 1 and pdb[0]["spec"].get("maxUnavailable") == 1,
             "one PodDisruptionBudget with maxUnavailable 1")
    if expect:
        for c in by_kind(docs, "Cluster"):
            if c["spec"]["instances"] != expect["pg_instances"]:
                fail(overlay, c, f"instances {c['spec']['instances']}, expected "
                                 f"{expect['pg_instances']} in {overlay}")
    return len(SERVICES) + len(READ_SIDE)


def check_references(overlay, docs):
    """Every Secret/ConfigMap a resource names exists, or is made by an operator or the
    platform team (prod). Returns what must exist before `kubectl apply`."""
    secrets = {s["metadata"]["name"]: s for s in by_kind(docs, "Secret")}
    configmaps = {c["metadata"]["name"]: c for c in by_kind(docs, "ConfigMap")}
    by_operator = {f"{c['metadata']['name']}-app" for c in by_kind(docs, "Cluster")} | \
        {u["metadata"]["name"] for u in by_kind(docs, "KafkaUser")}
    external = set()

    def secret(doc, name, key, what):
        if name in secrets:
            data = secrets[name].get("data", {}) | secrets[name].get("stringData", {})
            if key is not None and key not in data:
                fail(overlay, doc, f"{what}: Secret {name} has no key {key}")
        elif name in by_operator:
            pass
        elif name in PROVIDED_BY_PLATFORM and overlay != "dev":
            external.add(name)
        else:
            fail(overlay, doc, f"{what}: Secret {name} is neither in this overlay nor made by an "
                               f"operator")

    def configmap(doc, name, key, what):
        if name not in configmaps:
            fail(overlay, doc, f"{what}: ConfigMap {name} not found")
        if key is not None and key not in configmaps[name].get("data", {}):
            fail(overlay, doc, f"{what}: ConfigMap {name} has no key {key}")

    for dep in by_kind(docs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for e in c.get("env", []):
                vf = e.get("valueFrom", {})
                if "secretKeyRef" in vf:
                    secret(dep, vf["secretKeyRef"]["name"], vf["secretKeyRef"]["key"], e["name"])
                if "configMapKeyRef" in vf:
                    configmap(dep, vf["configMapKeyRef"]["name"], vf["configMapKeyRef"]["key"],
                              e["name"])
            for e in c.get("envFrom", []):
                if "configMapRef" in e:
                    configmap(dep, e["configMapRef"]["name"], None, "envFrom")
                if "secretRef" in e:
                    secret(dep, e["secretRef"]["name"], None, "envFrom")
        for v in pod.get("volumes", []):
            if "secret" in v:
                secret(dep, v["secret"]["secretName"], None, f"volume {v['name']}")
            if "configMap" in v:
                configmap(dep, v["configMap"]["name"], None, f"volume {v['name']}")
    for ta in by_kind(docs, "TriggerAuthentication"):
        for r in ta["spec"].get("secretTargetRef", []):
            secret(ta, r["name"], r["key"], f"parameter {r['parameter']}")
        for r in ta["spec"].get("configMapTargetRef", []):
            configmap(ta, r["name"], r["key"], f"parameter {r['parameter']}")
    for c in by_kind(docs, "Cluster"):
        for role in c["spec"].get("managed", {}).get("roles", []):
            if "passwordSecret" in role:
                name = role["passwordSecret"]["name"]
                secret(c, name, "password", f"role {role['name']}")
                if name in secrets:
                    user = base64.b64decode(secrets[name]["data"]["username"]).decode()
                    if user != role["name"] or secrets[name].get("type") != \
                            "kubernetes.io/basic-auth":
                        fail(overlay, c, f"Secret {name} must be basic-auth for user "
                                         f"{role['name']}, not {user}")
    deployments = {d["metadata"]["name"] for d in by_kind(docs, "Deployment")}
    for so in by_kind(docs, "ScaledObject"):
        if so["spec"]["scaleTargetRef"]["name"] not in deployments:
            fail(overlay, so, "scaleTargetRef names no Deployment")
    return external


def check_secrets(overlay, docs):
    secrets = by_kind(docs, "Secret")
    if overlay == "prod" and secrets:
        fail(overlay, secrets[0], "prod must not carry secrets: reference them (see "
                                  "overlays/prod/kustomization.yaml)")
    for s in secrets:
        for key, value in (s.get("data") or {}).items():
            text = base64.b64decode(value).decode()
            if key in ("password", "token") and not text.startswith("dev-"):
                fail(overlay, s, f"key {key}: a committed secret value must be a clearly named "
                                 f"dev default (dev-...)")
        if s.get("stringData"):
            fail(overlay, s, "use data (generated), not stringData")
    return len(secrets)


def selector_matches(selector, labels):
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        present = expr["key"] in labels
        if expr["operator"] == "Exists" and not present:
            return False
        if expr["operator"] == "In" and labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def check_network_policies(overlay, docs):
    """Each policy's podSelector selects something that will exist (pods of a Deployment, of a
    CloudNativePG cluster, or Strimzi's), and each service accepts traffic on its port."""
    pods = [("Deployment " + d["metadata"]["name"], d["spec"]["template"]["metadata"]["labels"])
            for d in by_kind(docs, "Deployment")]
    pods += [(f"Cluster {c['metadata']['name']}", {"cnpg.io/cluster": c["metadata"]["name"]})
             for c in by_kind(docs, "Cluster")]
    for k in by_kind(docs, "Kafka"):
        pods.append((f"Kafka {k['metadata']['name']}",
                     {"strimzi.io/cluster": k["metadata"]["name"],
                      "strimzi.io/broker-role": "true"}))
    policies = by_kind(docs, "NetworkPolicy")
    for np in policies:
        sel = np["spec"]["podSelector"]
        if sel and not any(selector_matches(sel, labels) for _, labels in pods):
            fail(overlay, np, f"podSelector {sel} selects no pod of this overlay")
        for direction, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in np["spec"].get(direction, []):
                for peer in rule.get(peers_key, []):
                    ps = peer.get("podSelector")
                    if ps and "namespaceSelector" not in peer and \
                            not any(selector_matches(ps, labels) for _, labels in pods):
                        fail(overlay, np, f"{direction} peer {ps} selects no pod of this overlay")
    if not any(np["spec"]["podSelector"] == {} and
               set(np["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
               and not np["spec"].get("ingress") and not np["spec"].get("egress")
               for np in policies):
        raise Failure(f"[{overlay}] no default-deny NetworkPolicy")
    for svc, d in list(SERVICES.items()) + list(READ_SIDE.items()):
        labels = next(lbl for n, lbl in pods if n == f"Deployment {svc}-service")
        rules = [r for np in policies if selector_matches(np["spec"]["podSelector"], labels)
                 and np["spec"]["podSelector"] for r in np["spec"].get("ingress", [])
                 if any(p.get("port") == d["port"] for p in r.get("ports", []))]
        open_to_all = any(not r.get("from") for r in rules)
        if not rules or open_to_all != (svc == "order"):
            raise Failure(f"[{overlay}] NetworkPolicy of {svc}-service: port {d['port']} must be "
                          f"open to {'everyone' if svc == 'order' else 'this namespace only'}")
    # Whoever calls another service's API may leave by that port, and the callee admits it.
    for svc, d in list(SERVICES.items()) + list(READ_SIDE.items()):
        for callee in d.get("calls", {}):
            caller_labels = next(lbl for n, lbl in pods if n == f"Deployment {svc}-service")
            callee_labels = next(lbl for n, lbl in pods if n == f"Deployment {callee}-service")
            port = SERVICES[callee]["port"]
            if not flow_allowed(policies, "egress", caller_labels, callee_labels, port):
                raise Failure(f"[{overlay}] NetworkPolicy of {svc}-service: may not reach "
                              f"{callee}-service on {port}, whose API it calls")
            if not flow_allowed(policies, "ingress", callee_labels, caller_labels, port):
                raise Failure(f"[{overlay}] NetworkPolicy of {callee}-service: does not admit "
                              f"{svc}-service on {port}, which calls its API")
    return len(policies)


def flow_allowed(policies, direction, subject, peer, port):
    """Whether some policy selecting the pod labelled `subject` allows traffic in `direction`
    with the pod labelled `peer` (same namespace) on TCP `port`."""
    peers_key = "from" if direction == "ingress" else "to"
    for np in policies:
        if not selector_matches(np["spec"]["podSelector"], subject):
            continue
        for rule in np["spec"].get(direction, []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP"
                                 for p in ports):
                continue
            peers = rule.get(peers_key)
            if not peers or any("namespaceSelector" not in x and "podSelector" in x
                                and selector_matches(x["podSelector"], peer) for x in peers):
                return True
    return False


# --------------------------------------------------------------------------------------------

def validate_overlay(overlay, docs, ctx):
    """All checks for one rendered overlay. Returns {kind: (count, how)}, facts, and the Secrets
    that must exist before `kubectl apply`."""
    core, crds = ctx["core"], ctx["crds"]
    table = OrderedDict()
    for doc in docs:
        if doc["kind"] == "CustomResourceDefinition":
            fail(overlay, doc, "CRDs belong to the operators' installs, not to this overlay")
        if is_core(doc):
            problems = core.errors(doc)
            how = f"kubernetes-validate (Kubernetes {core.version}, strict)"
        else:
            problems = crds.errors(doc)
            how = f"CRD {crds.describe(doc)}"
        if problems:
            fail(overlay, doc, "; ".join(problems))
        count, _ = table.get(doc["kind"], (0, how))
        table[doc["kind"]] = (count + 1, how)
    expect = EXPECT.get(overlay)
    facts = OrderedDict()
    facts["kafka triggers (hand-written schema)"] = check_kafka_triggers(overlay, docs,
                                                                         ctx["trigger_schema"])
    partitions = check_topics(overlay, docs, ctx["topics"], expect)
    facts["topics = deploy/topics.conf"] = len(partitions)
    facts["users/ACLs"] = check_users(overlay, docs, partitions)
    facts["ScaledObjects vs partitions"] = check_scaledobjects(overlay, docs, partitions, expect)
    facts["service workloads"] = check_services(overlay, docs, expect, partitions)
    facts["secrets (dev-only values)"] = check_secrets(overlay, docs)
    external = check_references(overlay, docs)
    facts["network policies"] = check_network_policies(overlay, docs)
    return table, facts, external


# Negative controls: deliberately broken copies of the rendered overlay. Each must be rejected,
# with a message naming what is wrong, or the validator is not doing its job.
def _first(docs, kind, name=None):
    for d in docs:
        if d["kind"] == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise Failure(f"a negative control needs a {kind}")


def _containers(docs, name):
    return _first(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"]


def _rename(mapping, old, new):
    mapping[new] = mapping.pop(old)


def _literal(env_entry, value):
    env_entry.pop("valueFrom")
    env_entry["value"] = value


def _without(items, unwanted):
    items[:] = [i for i in items if not unwanted(i)]


def _retarget(scaled_object, deployment):
    scaled_object["metadata"]["name"] = deployment
    scaled_object["spec"]["scaleTargetRef"]["name"] = deployment
    return scaled_object


NEGATIVE_CONTROLS = [
    ("Deployment: unknown field livenessProbe.httpGet.paht", "'paht' was unexpected",
     lambda d: _containers(d, "order-service")[0]["livenessProbe"]["httpGet"].update(paht="/x")),
    ("Deployment: apiVersion apps/v1beta9", "no Kubernetes",
     lambda d: _first(d, "Deployment").update(apiVersion="apps/v1beta9")),
    ("Service: port as a word", "is not of type 'integer'",
     lambda d: _first(d, "Service")["spec"]["ports"][0].update(port="http")),
    ("KafkaTopic: spec.partitons (typo)", "'partitons' was unexpected",
     lambda d: _rename(_first(d, "KafkaTopic")["spec"], "partitions", "partitons")),
    ("KafkaUser: ACL operation Reed", "'Reed' is not one of",
     lambda d: _first(d, "KafkaUser")["spec"]["authorization"]["acls"][0].update(
         operations=["Reed"])),
    ("Kafka: listener authentication type scram", "'scram' is not one of",
     lambda d: _first(d, "Kafka")["spec"]["kafka"]["listeners"][0]["authentication"].update(
         type="scram")),
    ("KafkaNodePool: role brokr", "'brokr' is not one of",
     lambda d: _first(d, "KafkaNodePool")["spec"].update(roles=["brokr"])),
    ("Cluster: instances \"three\"", "is not of type 'integer'",
     lambda d: _first(d, "Cluster")["spec"].update(instances="three")),
    ("Cluster: managed.roles[0].passwordSecrets (typo)", "'passwordSecrets' was unexpected",
     lambda d: _rename(_first(d, "Cluster")["spec"]["managed"]["roles"][0], "passwordSecret",
                       "passwordSecrets")),
    ("Cluster: imageName and imageCatalogRef (CEL rule)", "mutually exclusive (CEL rule)",
     lambda d: _first(d, "Cluster")["spec"].update(imageCatalogRef={
         "apiGroup": "postgresql.cnpg.io", "kind": "ImageCatalog", "name": "pg", "major": 18})),
    ("ScaledObject: spec.minReplicas (typo)", "'minReplicas' was unexpected",
     lambda d: _rename(_first(d, "ScaledObject")["spec"], "minReplicaCount", "minReplicas")),
    ("ScaledObject: minReplicaCount above maxReplicaCount (CEL rule)", "(CEL rule)",
     lambda d: _first(d, "ScaledObject")["spec"].update(minReplicaCount=7)),
    ("TriggerAuthentication: secretTargetRef without key", "'key' is a required property",
     lambda d: _first(d, "TriggerAuthentication")["spec"]["secretTargetRef"][0].pop("key")),
    ("kafka trigger: metadata.consumergroup (hand-written schema)",
     "'consumergroup' was unexpected",
     lambda d: _rename(_first(d, "ScaledObject")["spec"]["triggers"][0]["metadata"],
                       "consumerGroup", "consumergroup")),
    ("KafkaTopic: partitions differ from deploy/topics.conf", "deploy/topics.conf says",
     lambda d: _first(d, "KafkaTopic")["spec"].update(partitions=7)),
    ("Deployment: Secret payment-db-app (typo of payments-db-app)", "Secret payment-db-app",
     lambda d: next(e for e in _containers(d, "payment-service")[0]["env"]
                    if e["name"] == "MIGRATION_DATABASE_URL")["valueFrom"]["secretKeyRef"].update(
         name="payment-db-app")),
    ("KafkaUser payment-service: Write on a topic it only consumes", "must write exactly",
     lambda d: _first(d, "KafkaUser", "payment-service")["spec"]["authorization"]["acls"][0][
         "operations"].append("Write")),
    ("Deployment order-service: terminationGracePeriodSeconds 30", "terminationGracePeriodSeconds",
     lambda d: _first(d, "Deployment", "order-service")["spec"]["template"]["spec"].update(
         terminationGracePeriodSeconds=30)),
    ("KafkaUser history-service: Write on order.events (the read side writes no event topic)",
     "must write exactly",
     lambda d: next(a for a in _first(d, "KafkaUser", "history-service")["spec"]["authorization"][
         "acls"] if a["resource"].get("name") == "order.events")["operations"].append("Write")),
    ("ScaledObject for history-service (lag autoscaling of the read side)", "must not autoscale",
     lambda d: d.append(_retarget(copy.deepcopy(_first(d, "ScaledObject")), "history-service"))),
    ("KafkaUser history-service: no ACL on order.retry (the console redrives through it)",
     "must write exactly",
     lambda d: _without(_first(d, "KafkaUser", "history-service")["spec"]["authorization"]["acls"],
                        lambda a: a["resource"].get("name") == "order.retry")),
    ("KafkaUser history-service: Read on payment.retry (the console only writes retry topics)",
     "must read exactly",
     lambda d: next(a for a in _first(d, "KafkaUser", "history-service")["spec"]["authorization"][
         "acls"] if a["resource"].get("name") == "payment.retry")["operations"].append("Read")),
    ("Deployment history-service: CONSOLE_OPERATOR_TOKEN as a literal value",
     "CONSOLE_OPERATOR_TOKEN from a Secret",
     lambda d: _literal(next(e for e in _containers(d, "history-service")[0]["env"]
                             if e["name"] == "CONSOLE_OPERATOR_TOKEN"), "dev-console-operator")),
    ("Deployment history-service: PAYMENT_URL on port 8080 (Order's, not Payment's)",
     "PAYMENT_URL must be",
     lambda d: _containers(d, "history-service")[0]["env"].append(
         {"name": "PAYMENT_URL", "value": "http://payment-service:8080"})),
    ("NetworkPolicy history-service: no egress to payment-service", "may not reach",
     lambda d: _without(_first(d, "NetworkPolicy", "history-service")["spec"]["egress"],
                        lambda r: any(p.get("podSelector", {}).get("matchLabels", {}).get(
                            "app.kubernetes.io/name") == "payment-service"
                            for p in r.get("to", [])))),
    ("NetworkPolicy payment-service: port 8082 for Prometheus only", "does not admit",
     lambda d: _without(_first(d, "NetworkPolicy", "payment-service")["spec"]["ingress"][0]["from"],
                        lambda p: "namespaceSelector" not in p)),
]


def negative_controls(overlay, docs, ctx):
    results = []
    for what, expected, mutate in NEGATIVE_CONTROLS:
        broken = copy.deepcopy(docs)
        mutate(broken)
        try:
            validate_overlay(overlay, broken, ctx)
        except Failure as e:
            if expected not in str(e):
                raise Failure(f"[{overlay}] negative control {what!r} was rejected for another "
                              f"reason than expected ({expected!r}): {e}")
            results.append((what, str(e)))
            continue
        raise Failure(f"[{overlay}] negative control not rejected: {what} (the validator "
                      f"accepts a broken manifest)")
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--overlay", action="append", required=True, metavar="NAME=RENDERED.yaml")
    ap.add_argument("--crds", required=True, help="directory of CRD files (one folder per source)")
    ap.add_argument("--schemas", required=True, help="deploy/k8s/schemas")
    ap.add_argument("--topics", required=True, help="deploy/topics.conf")
    ap.add_argument("--kubernetes-version", required=True)
    ap.add_argument("--negative-controls", default="dev", metavar="OVERLAY",
                    help="overlay to break on purpose (default dev; empty to skip)")
    args = ap.parse_args()

    ctx = dict(
        core=CoreValidator(args.kubernetes_version),
        crds=CrdRegistry(args.crds),
        topics=read_topics_conf(args.topics),
        trigger_schema=json.loads((Path(args.schemas) / "keda-kafka-trigger.schema.json")
                                  .read_text()),
    )
    if not ctx["crds"].crds:
        raise Failure(f"no CRDs found under {args.crds}")
    matrix = OrderedDict()
    overlays = []
    for spec in args.overlay:
        overlay, path = spec.split("=", 1)
        overlays.append(overlay)
        docs = load_docs(path)
        table, facts, external = validate_overlay(overlay, docs, ctx)
        for kind, (count, how) in table.items():
            matrix.setdefault(kind, dict(how=how, counts={}))
            matrix[kind]["counts"][overlay] = count
        print(f"  [{overlay}] {len(docs)} resources valid; saga checks passed: "
              + ", ".join(f"{k} ({v})" for k, v in facts.items()))
        if external:
            print(f"  [{overlay}] must exist before apply (created by the platform team): "
                  + ", ".join(sorted(external)))
    cel_notes = {kind: ctx["crds"].cel_summary(kind) for kind in matrix}
    if args.negative_controls in overlays:
        overlay = args.negative_controls
        docs = load_docs(dict(s.split("=", 1) for s in args.overlay)[overlay])
        results = negative_controls(overlay, docs, ctx)
        print(f"  [{overlay}] negative controls: {len(results)}/{len(NEGATIVE_CONTROLS)} "
              f"deliberately broken copies rejected for the expected reason, e.g.")
        for what, why in results[:2]:
            print(f"      {what}\n        -> {why}")

    print()
    width = max(len(k) for k in matrix) + 2
    header = "  " + "kind".ljust(width) + "".join(o.rjust(6) for o in overlays) + \
        "   validated against"
    print(header)
    print("  " + "-" * (len(header) + 40))
    for kind, row in matrix.items():
        counts = "".join(str(row["counts"].get(o, "-")).rjust(6) for o in overlays)
        print(f"  {kind.ljust(width)}{counts}   {row['how']}{cel_notes[kind]}")
    print("  " + "(kafka triggers)".ljust(width) + "".join("*".rjust(6) for _ in overlays)
          + "   hand-written deploy/k8s/schemas/keda-kafka-trigger.schema.json: trigger "
            "metadata is free-form in the CRD")


if __name__ == "__main__":
    try:
        main()
    except Failure as e:
        print(f"check-k8s: FAIL {e}", file=sys.stderr)
        sys.exit(1)
