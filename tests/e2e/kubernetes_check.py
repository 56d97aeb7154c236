#!/usr/bin/env python3
"""Checks deploy/kubernetes/*.yaml without a cluster (for tests/e2e/kubernetes.sh).

kubectl is not available here, so this parses every manifest and checks what a
cluster would need and what elliott's behaviour requires: the fields each kind
must have, that selectors, ports and names agree across files, that probes use
/health, that the termination grace period covers the server's drain, and that
every ELLIOTT_* variable is one docs/commands.md documents. It prints the
container's literal ELLIOTT_* settings as NAME=VALUE lines on stdout, so the
shell script can start elliott with them.
usage: kubernetes_check.py MANIFEST_DIR COMMANDS_MD
"""
import os
import re
import sys

import yaml

failures = []


def check(cond, msg):
    if not cond:
        failures.append(msg)
    return cond


def load_all(folder):
    docs = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(folder, name)) as f:
            parsed = [d for d in yaml.safe_load_all(f) if d is not None]
        check(parsed, "%s: no document" % name)
        for d in parsed:
            # A Kustomization is read by kubectl itself, not sent to the cluster.
            needed = ("apiVersion", "kind") if d.get("kind") == "Kustomization" else ("apiVersion", "kind", "metadata")
            for field in needed:
                check(field in d, "%s: no %s" % (name, field))
        docs[name] = parsed
    return docs


def by_kind(docs, kind):
    return [(name, d) for name, ds in docs.items() for d in ds if d.get("kind") == kind]


def documented_variables(commands_md):
    with open(commands_md) as f:
        return set(re.findall(r"`(ELLIOTT_[A-Z_]+)`", f.read()))


def check_probe(probe, what, port_names):
    if not check(probe is not None, "no %s" % what):
        return
    get = probe.get("httpGet", {})
    check(get.get("path") == "/health", "%s: path is %r, not /health" % (what, get.get("path")))
    check(get.get("port") in port_names, "%s: port %r is not a container port" % (what, get.get("port")))


def check_deployment(name, d, variables):
    spec = d["spec"]
    labels = spec["template"]["metadata"]["labels"]
    check(spec["selector"]["matchLabels"].items() <= labels.items(), "%s: selector does not match the pod labels" % name)
    pod = spec["template"]["spec"]
    containers = pod["containers"]
    check(len(containers) == 1, "%s: one container expected" % name)
    c = containers[0]
    env = {e["name"]: e for e in c.get("env", [])}
    for var in env:
        if var.startswith("ELLIOTT_"):
            check(var in variables, "%s: %s is not an option docs/commands.md documents" % (name, var))
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(str(ports.get("http")) == env.get("ELLIOTT_PORT", {}).get("value"),
          "%s: containerPort http differs from ELLIOTT_PORT" % name)
    check(env.get("ELLIOTT_HOST", {}).get("value") in ("0.0.0.0", "::"),
          "%s: ELLIOTT_HOST must be a wildcard address in a pod" % name)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check_probe(c.get(probe), "%s: %s" % (name, probe), set(ports) | set(ports.values()))
    res = c.get("resources", {})
    for kind in ("cpu", "memory"):
        check(kind in res.get("requests", {}), "%s: no %s request" % (name, kind))
    check("memory" in res.get("limits", {}), "%s: no memory limit" % name)
    threads = env.get("ELLIOTT_THREADS", {}).get("value")
    check(threads is not None and str(res.get("requests", {}).get("cpu")) == threads,
          "%s: ELLIOTT_THREADS differs from the CPU request" % name)
    # The grace period must cover preStop + the drain + the wait for cancelled requests (5 s).
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    pre_stop_s = int(pre_stop[1]) if len(pre_stop) == 2 and pre_stop[0] == "sleep" else 0
    drain_ms = int(env.get("ELLIOTT_GRACE_MS", {}).get("value", "10000"))
    needed = pre_stop_s + drain_ms / 1000 + 5
    check(pod.get("terminationGracePeriodSeconds", 30) > needed,
          "%s: terminationGracePeriodSeconds %s does not cover %s s of preStop and drain" %
          (name, pod.get("terminationGracePeriodSeconds", 30), needed))
    # The model file lies on a mounted volume that the pod defines.
    model = env.get("ELLIOTT_MODEL", {}).get("value", "")
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    mount = next((p for p in mounts if model.startswith(p.rstrip("/") + "/")), None)
    if check(mount is not None, "%s: ELLIOTT_MODEL %r is not on a mounted volume" % (name, model)):
        volumes = {v["name"] for v in pod.get("volumes", [])}
        check(mounts[mount] in volumes, "%s: volume %s is not defined" % (name, mounts[mount]))
        writers = [i for i in pod.get("initContainers", [])
                   if any(m["name"] == mounts[mount] and not m.get("readOnly") for m in i.get("volumeMounts", []))]
        for init in writers:
            cmd = init.get("command", [])
            check(cmd[:2] == ["elliott", "pull"], "%s: init container %s does not run elliott pull" % (name, init["name"]))
            out = cmd[cmd.index("-o") + 1] if "-o" in cmd else None
            fname = cmd[3] if len(cmd) > 3 and not cmd[3].startswith("-") else None
            check(out is not None and fname is not None and model == os.path.join(out, os.path.basename(fname)),
                  "%s: the init container does not write %s" % (name, model))
    return labels, env, set(ports) | set(ports.values())


def main():
    folder, commands_md = sys.argv[1], sys.argv[2]
    docs = load_all(folder)
    variables = documented_variables(commands_md)
    check(len(variables) > 10, "no ELLIOTT_ variables found in %s" % commands_md)
    deployments = by_kind(docs, "Deployment")
    if not check(len(deployments) == 1, "one Deployment expected, found %d" % len(deployments)):
        return report()
    dep_file, dep = deployments[0]
    labels, env, port_names = check_deployment(dep_file, dep, variables)
    dep_name = dep["metadata"]["name"]

    services = by_kind(docs, "Service")
    check(services, "no Service")
    for name, s in services:
        check(s["spec"]["selector"].items() <= labels.items(), "%s: Service %s selects no pod" %
              (name, s["metadata"]["name"]))
        for p in s["spec"]["ports"]:
            check(p["targetPort"] in port_names, "%s: targetPort %r is not a container port" % (name, p["targetPort"]))

    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    check(hpas, "no HorizontalPodAutoscaler")
    for name, h in hpas:
        spec = h["spec"]
        target = spec["scaleTargetRef"]
        check(target["kind"] == "Deployment" and target["name"] == dep_name, "%s: scales something else" % name)
        check(1 <= spec["minReplicas"] <= spec["maxReplicas"], "%s: bad replica range" % name)
        check(spec.get("metrics"), "%s: no metric" % name)

    pdbs = by_kind(docs, "PodDisruptionBudget")
    if check(len(pdbs) == 1, "one PodDisruptionBudget expected"):
        name, p = pdbs[0]
        check(p["spec"]["selector"]["matchLabels"].items() <= labels.items(), "%s: selects no pod" % name)
        check(("minAvailable" in p["spec"]) != ("maxUnavailable" in p["spec"]),
              "%s: exactly one of minAvailable, maxUnavailable" % name)

    kust = docs.get("kustomization.yaml")
    if check(kust, "no kustomization.yaml"):
        for res in kust[0]["resources"]:
            check(res in docs, "kustomization.yaml names %s, which does not exist" % res)
        check(sum(1 for r in kust[0]["resources"] for _, h in hpas if r in docs and h in docs[r]) == 1,
              "kustomization.yaml must apply exactly one autoscaler")

    for var, e in sorted(env.items()):
        if var.startswith("ELLIOTT_") and "value" in e:
            print("%s=%s" % (var, e["value"]))
    return report()


def report():
    for f in failures:
        print("FAIL:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
