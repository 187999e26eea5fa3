"""deploy/ is consistent with itself and with the programs of this build: every manifest
parses, the driver name is the plugin's everywhere, the sockets the sidecars and the plugin
share are the same paths on the same volumes, every portalbd and portalbd-csi argument is
accepted by the built binaries (portalbd --check-config with the ConfigMap's files;
portalbd-csi started with its arguments), images are pinned, and the Dockerfile names only
packages Debian 12 has. docker is not available on the test machines: the image itself is
not built here (only its package lists are checked)."""

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
DEPLOY = os.path.join(SOURCE, "deploy")
sys.path.insert(0, os.path.join(SOURCE, "tests", "interop"))

from harness import (Skip, build_dir, check, check_eq, portalbd_path, run,  # noqa: E402
                     run_cases, spawn)

try:
    import yaml  # noqa: E402
except ImportError:  # python3-yaml (scripts/setup.sh)
    print("SKIP: python3-yaml is not installed")
    sys.exit(77)
import tomllib  # noqa: E402  (Python 3.11: Debian 12's python3)

NAMESPACE = "portalbd-csi"
# Pinned sidecars: registry.k8s.io/sig-storage/NAME:vX.Y.Z.
PINNED_RE = re.compile(r"^[a-z0-9.\-/]+:v?\d+\.\d+\.\d+$")


def driver_name():
    """kDriverName of lib/csi/driver.h: the name the plugin answers GetPluginInfo with."""
    with open(os.path.join(SOURCE, "lib", "csi", "driver.h")) as f:
        m = re.search(r'kDriverName\s*=\s*"([^"]+)"', f.read())
    check(m is not None, "kDriverName not found in lib/csi/driver.h")
    return m.group(1)


def manifest_files():
    names = []
    for root, _dirs, files in os.walk(DEPLOY):
        names += [os.path.join(root, n) for n in files if n.endswith(".yaml")]
    check(names, f"no manifests under {DEPLOY}")
    return sorted(names)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def applied():
    """The documents `kubectl apply -k deploy/` creates, in kustomization.yaml's order."""
    kust = load(os.path.join(DEPLOY, "kustomization.yaml"))[0]
    docs = []
    for r in kust["resources"]:
        docs += load(os.path.join(DEPLOY, r))
    return docs


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind and (name is None or
                                                       d["metadata"]["name"] == name)]
    check_eq(len(found), 1, f"{kind} {name or ''} documents")
    return found[0]


def pod_spec(docs, kind):
    return one(docs, kind)["spec"]["template"]["spec"]


def containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def container(spec, name):
    found = [c for c in containers(spec) if c["name"] == name]
    check_eq(len(found), 1, f"containers named {name}")
    return found[0]


def flag(c, name):
    """The value of --name=VALUE (or --name VALUE) in container c's args, or None."""
    args = c.get("args", [])
    for i, a in enumerate(args):
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
        if a == f"--{name}" and i + 1 < len(args):
            return args[i + 1]
    return None


def mount_dir(spec, c, path):
    """The pod volume container c mounts at the directory holding `path`, and its mount."""
    directory = os.path.dirname(path)
    for m in c.get("volumeMounts", []):
        if m["mountPath"].rstrip("/") == directory and "subPath" not in m:
            vol = [v for v in spec["volumes"] if v["name"] == m["name"]]
            check_eq(len(vol), 1, f"volume {m['name']} of {c['name']}")
            return vol[0], m
    raise AssertionError(f"{c['name']} mounts nothing at {directory} (for {path})")


def configmap_key(docs, spec, c, path):
    """(key, text) of the ConfigMap key container c mounts at `path`."""
    for m in c.get("volumeMounts", []):
        if m["mountPath"] == path:
            vol = [v for v in spec["volumes"] if v["name"] == m["name"]][0]
            check("configMap" in vol, f"{path} of {c['name']} is not from a ConfigMap")
            cm = one(docs, "ConfigMap", vol["configMap"]["name"])
            check(m.get("subPath") in cm["data"], f"ConfigMap key {m.get('subPath')}")
            return m["subPath"], cm["data"][m["subPath"]]
    raise AssertionError(f"{c['name']}: nothing mounted at {path}")


NODE_ENV = {"NODE_NAME": "node-1", "NODE_IP": "10.0.0.1"}


def config_file(docs, spec, c, tmp):
    """(name, TOML text) container c reads as --config: a ConfigMap key mounted there, or
    the file an init container writes there (its script run here, as in the pod, with
    portalbd from this build and NODE_ENV for the downward API)."""
    path = flag(c, "config")
    check(path is not None, f"{c['name']} has no --config")
    if any(m["mountPath"] == path for m in c["volumeMounts"]):
        return configmap_key(docs, spec, c, path)
    vol, _ = mount_dir(spec, c, path)
    check("emptyDir" in vol, f"{c['name']}: --config {path} is neither a ConfigMap nor made "
                             f"by an init container")
    writers = [i for i in spec.get("initContainers", [])
               if {e["name"]: e.get("value") for e in i.get("env", [])}.get("OUT") == path]
    check_eq(len(writers), 1, f"init containers writing {path}")
    init = writers[0]
    env = {e["name"]: e.get("value") for e in init["env"]}
    key, text = configmap_key(docs, spec, init, env["IN"])
    work = tempfile.mkdtemp(dir=tmp)
    env["IN"], env["OUT"] = os.path.join(work, key), os.path.join(work, "portalbd.toml")
    with open(env["IN"], "w") as f:
        f.write(text)
    for name in [n for n, v in env.items() if v is None]:
        check(name in NODE_ENV, f"{init['name']}: env {name} from the downward API unknown")
        env[name] = NODE_ENV[name]
    env["PATH"] = build_dir() + ":" + os.environ.get("PATH", "")
    check_eq(init["command"][:2], ["sh", "-c"], f"{init['name']} command")
    r = run(init["command"], env=env, check_exit=False)
    check_eq(r.returncode, 0, f"{init['name']}'s script: {r.stdout}{r.stderr}")
    with open(env["OUT"]) as f:
        return f"{key} (+{init['name']})", f.read()


def help_options(binary):
    """The long options a binary's --help lists (CLI11's format)."""
    out = run([binary, "--help"]).stdout
    return set(re.findall(r"^\s+(?:-\w,)?(--[a-z][a-z0-9-]*)", out, re.M))


def split_args(args):
    """[("--name", value or None)] of args in --name=value / --name value / --flag form."""
    result, i = [], 0
    while i < len(args):
        a = args[i]
        check(a.startswith("--"), f"argument {a!r} is not an option")
        if "=" in a:
            result.append(tuple(a.split("=", 1)))
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            result.append((a, args[i + 1]))
            i += 1
        else:
            result.append((a, None))
        i += 1
    return result


def our_containers(docs, program):
    """(pod spec, container) of every container running `program` in the applied docs."""
    found = []
    for kind in ("Deployment", "DaemonSet"):
        spec = pod_spec(docs, kind)
        found += [(spec, c) for c in containers(spec) if c.get("command", [None])[0] == program]
    return found


# ---------------------------------------------------------------------------------------


def case_manifests_parse(_tmp):
    """Every document parses and is an object with a kind and a name; kustomization.yaml
    lists every manifest of deploy/ but the example Secret."""
    for path in manifest_files():
        for d in load(path):
            rel = os.path.relpath(path, SOURCE)
            check(isinstance(d, dict), f"{rel}: a document is not a mapping")
            if os.path.basename(path) == "kustomization.yaml":
                continue
            for key in ("apiVersion", "kind", "metadata"):
                check(key in d, f"{rel}: a document has no {key}")
            check(d["metadata"].get("name"), f"{rel}: a {d['kind']} has no name")
    kust = load(os.path.join(DEPLOY, "kustomization.yaml"))[0]
    listed = set(kust["resources"])
    top = {n for n in os.listdir(DEPLOY) if n.endswith(".yaml")}
    check_eq(listed, top - {"kustomization.yaml", "secret.example.yaml"},
             "kustomization.yaml resources")


def case_driver_name_everywhere(_tmp):
    name = driver_name()
    check_eq(name, "portalbd.csi.portalbd.dev", "kDriverName")
    docs = applied()
    check_eq(one(docs, "CSIDriver")["metadata"]["name"], name, "CSIDriver name")
    csidriver = one(docs, "CSIDriver")["spec"]
    check_eq(csidriver["attachRequired"], True,
             "attachRequired (ControllerPublishVolume records the node before NodeStage)")
    check_eq(csidriver["volumeLifecycleModes"], ["Persistent"], "volumeLifecycleModes")
    sc = one(docs, "StorageClass")
    check_eq(sc["provisioner"], name, "StorageClass provisioner")
    check_eq(sc["allowVolumeExpansion"], True, "allowVolumeExpansion")
    check_eq(one(docs, "VolumeSnapshotClass")["driver"], name, "VolumeSnapshotClass driver")
    node = pod_spec(docs, "DaemonSet")
    reg = flag(container(node, "node-driver-registrar"), "kubelet-registration-path")
    check_eq(reg, f"/var/lib/kubelet/plugins/{name}/csi.sock", "kubelet-registration-path")
    # Every other mention of a driver-like name is this one.
    for path in manifest_files():
        with open(path) as f:
            for other in re.findall(r"[a-z0-9-]+\.csi\.[a-z0-9.-]+", f.read()):
                check_eq(other, name, f"driver name in {os.path.relpath(path, SOURCE)}")
    for path in (os.path.join(DEPLOY, "examples", n) for n in
                 os.listdir(os.path.join(DEPLOY, "examples"))):
        for d in load(path):
            spec = d.get("spec", {})
            if "storageClassName" in spec:
                check_eq(spec["storageClassName"], sc["metadata"]["name"], f"{path} class")
            if "volumeSnapshotClassName" in spec:
                check_eq(spec["volumeSnapshotClassName"],
                         one(docs, "VolumeSnapshotClass")["metadata"]["name"], f"{path}")


def case_sockets_shared(tmp):
    """The CSI socket the plugin listens on is the one every sidecar dials, through the same
    pod volume; the daemon's control socket (its config's [nbd] socket) is the one the
    plugin's --daemon-socket names, through the same pod volume; on the node, that volume
    is the directory kubelet was told by the registrar."""
    docs = applied()
    for kind, role in (("Deployment", "controller"), ("DaemonSet", "node")):
        spec = pod_spec(docs, kind)
        plugin = container(spec, "portalbd-csi")
        check_eq(flag(plugin, "role"), role, f"{kind}: --role")
        endpoint = flag(plugin, "endpoint")
        check(endpoint and endpoint.startswith("unix:///"), f"{kind}: --endpoint {endpoint}")
        sock = endpoint[len("unix://"):]
        csi_vol, _ = mount_dir(spec, plugin, sock)
        sidecars = [c for c in spec["containers"] if flag(c, "csi-address") is not None]
        want = {"Deployment": {"csi-provisioner", "csi-attacher", "csi-snapshotter",
                               "csi-resizer", "liveness-probe"},
                "DaemonSet": {"node-driver-registrar", "liveness-probe"}}[kind]
        check_eq({c["name"] for c in sidecars}, want, f"{kind}: sidecars")
        for c in sidecars:
            addr = flag(c, "csi-address")
            check_eq(addr, sock, f"{kind}/{c['name']}: --csi-address")
            vol, _ = mount_dir(spec, c, addr)
            check_eq(vol["name"], csi_vol["name"], f"{kind}/{c['name']}: the socket's volume")
        # The daemon's control socket.
        daemon = container(spec, "portalbd")
        _key, text = config_file(docs, spec, daemon, tmp)
        cfg = tomllib.loads(text)
        control = cfg.get("nbd", {}).get("socket") or cfg.get("socket")
        check_eq(flag(plugin, "daemon-socket"), control, f"{kind}: --daemon-socket")
        dvol, _ = mount_dir(spec, daemon, control)
        pvol, _ = mount_dir(spec, plugin, control)
        check_eq(pvol["name"], dvol["name"], f"{kind}: the control socket's volume")
        # The liveness probe serves the plugin container's probe port.
        probe = container(spec, "liveness-probe")
        port = int(flag(probe, "http-endpoint").rsplit(":", 1)[1])
        ports = {p["name"]: p["containerPort"] for p in plugin.get("ports", [])}
        check_eq(ports.get("healthz"), port, f"{kind}: healthz port")
        check_eq(plugin["livenessProbe"]["httpGet"]["port"], "healthz", f"{kind}: probe")
    node = pod_spec(docs, "DaemonSet")
    plugin = container(node, "portalbd-csi")
    csi_vol, _ = mount_dir(node, plugin, flag(plugin, "endpoint")[len("unix://"):])
    reg = flag(container(node, "node-driver-registrar"), "kubelet-registration-path")
    check_eq(csi_vol["hostPath"]["path"], os.path.dirname(reg), "node: CSI socket on the host")
    check_eq(os.path.basename(reg), os.path.basename(flag(plugin, "endpoint")),
             "node: socket file name")
    kubelet = [m for m in plugin["volumeMounts"] if m["mountPath"] == "/var/lib/kubelet"]
    check_eq(len(kubelet), 1, "node plugin mounts /var/lib/kubelet")
    check_eq(kubelet[0].get("mountPropagation"), "Bidirectional", "kubelet dir propagation")
    check(node.get("hostNetwork") is True, "node: hostNetwork (the owner's TCP listener)")
    daemon = container(node, "portalbd")
    check(daemon.get("securityContext", {}).get("privileged") is True, "node daemon privileged")
    for path in ("/dev", "/sys", "/lib/modules"):
        check(any(m["mountPath"] == path for m in daemon["volumeMounts"]),
              f"node daemon mounts {path}")
    # The daemon's state (attachments, cache) on the host: a restarted pod re-attaches.
    _key, text = config_file(docs, node, daemon, tmp)
    state = tomllib.loads(text)["storage"]["cache_dir"]
    svol = [v for v in node["volumes"] if v["name"] in
            {m["name"] for m in daemon["volumeMounts"] if m["mountPath"] == state}]
    check(svol and "hostPath" in svol[0], f"node: {state} is a hostPath")


def case_portalbd_args_and_config(tmp):
    """Each portalbd container's arguments with its ConfigMap file, through
    portalbd --check-config; both daemons name the same store and open no volume."""
    docs = applied()
    storage = {}
    known = help_options(portalbd_path())
    check("--check-config" in known, "portalbd --check-config exists")
    found = our_containers(docs, "portalbd")
    check_eq(len(found), 2, "portalbd containers (controller and node)")
    for spec, c in found:
        key, text = config_file(docs, spec, c, tmp)
        cfg_path = os.path.join(tmp, key.split()[0])
        with open(cfg_path, "w") as f:
            f.write(text)
        args = []
        for name, value in split_args(c.get("args", [])):
            check(name in known, f"portalbd {name} (in {c['name']}) is not an option of "
                                 f"portalbd --help")
            if name in ("--config", "-c"):
                value = cfg_path
            args += [name] if value is None else [f"{name}={value}"]
        r = run([portalbd_path(), *args, "--check-config"], check_exit=False)
        check_eq(r.returncode, 0, f"portalbd --check-config {key}: {r.stdout}{r.stderr}")
        cfg = tomllib.loads(text)
        check_eq(cfg["storage"].get("volumes"), [], f"{key}: opens no volume at start")
        storage[key] = cfg["storage"]
    check_eq(len(set(map(repr, storage.values()))), 1, f"[storage] of {sorted(storage)}")


def case_owner_listener(tmp):
    """The node daemon listens for the controller on TCP with the token of the Secret the
    controller's plugin holds too, and advertises this node's address on that port; the
    controller's daemon listens nowhere."""
    docs = applied()
    node = pod_spec(docs, "DaemonSet")
    daemon = container(node, "portalbd")
    _key, text = config_file(docs, node, daemon, tmp)
    control = tomllib.loads(text).get("control", {})
    check("listen" in control, "node.toml: [control] listen")
    port = control["listen"].rsplit(":", 1)[1]
    check_eq(control.get("advertise"), f"{NODE_ENV['NODE_IP']}:{port}", "advertise")
    check_eq(control.get("node_id"), NODE_ENV["NODE_NAME"], "node_id")
    token = control.get("token_file", "")
    vol, _ = mount_dir(node, daemon, token)
    check("secret" in vol, f"token_file {token} is not from a Secret")
    check_eq(vol["secret"].get("defaultMode"), 0o400, "the token's mode (portalbd refuses "
                                                      "a world-readable one)")
    example = {d["metadata"]["name"]: d for d in
               load(os.path.join(DEPLOY, "secret.example.yaml"))}
    secret = example[vol["secret"]["secretName"]]
    check(os.path.basename(token) in secret["stringData"], f"{token}: no such Secret key")
    check(len(secret["stringData"][os.path.basename(token)]) >= 32, "example token >= 32 B")
    ctl = pod_spec(docs, "Deployment")
    plugin = container(ctl, "portalbd-csi")
    held = [v for v in ctl["volumes"] if "secret" in v and
            v["secret"]["secretName"] == vol["secret"]["secretName"] and
            v["name"] in {m["name"] for m in plugin["volumeMounts"]}]
    check(held, "the controller's portalbd-csi holds the control token")
    _key, text = config_file(docs, ctl, container(ctl, "portalbd"), tmp)
    check("listen" not in tomllib.loads(text).get("control", {}), "controller daemon listens")


def secret_file(tmp, spec, c, path):
    """A path in a Secret container c mounts becomes a file in tmp holding the value of
    secret.example.yaml (mode 0400, as defaultMode gives it); other values are kept."""
    for m in c.get("volumeMounts", []):
        vol = [v for v in spec["volumes"] if v["name"] == m["name"]][0]
        if "secret" in vol and os.path.dirname(path) == m["mountPath"]:
            example = {d["metadata"]["name"]: d for d in
                       load(os.path.join(DEPLOY, "secret.example.yaml"))}
            data = example[vol["secret"]["secretName"]]["stringData"]
            key = os.path.basename(path)
            check(key in data, f"{path}: no key {key} in Secret {vol['secret']['secretName']}")
            local = os.path.join(tmp, f"secret-{key}")
            with open(local, "w") as f:
                f.write(data[key])
            os.chmod(local, 0o400)
            return local
    return path


def case_portalbd_csi_args(tmp):
    """portalbd-csi starts with each container's arguments (its endpoint moved into tmp;
    $(VAR) from the container's env) and serves until SIGTERM."""
    docs = applied()
    binary = os.path.join(build_dir(), "portalbd-csi")
    check(os.access(binary, os.X_OK), f"portalbd-csi not built at {binary}")
    known = help_options(binary)
    found = our_containers(docs, "portalbd-csi")
    check_eq(len(found), 2, "portalbd-csi containers (controller and node)")
    for i, (_spec, c) in enumerate(found):
        env = {e["name"]: "node-1" for e in c.get("env", [])}
        sock = os.path.join(tmp, f"csi{i}.sock")
        args = []
        for name, value in split_args(c.get("args", [])):
            check(name in known, f"portalbd-csi {name} is not an option of --help")
            if value is not None:
                for var in re.findall(r"\$\((\w+)\)", value):
                    check(var in env, f"$({var}) of {c['name']} is not in its env")
                    value = value.replace(f"$({var})", env[var])
            if name == "--endpoint":
                value = f"unix://{sock}"
            elif value is not None:
                value = secret_file(tmp, _spec, c, value)
            args += [name] if value is None else [f"{name}={value}"]
        log = open(os.path.join(tmp, f"csi{i}.log"), "wb")
        proc = spawn([binary, *args], stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        listening = proc.poll() is None and os.path.exists(sock)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        status = proc.wait(timeout=10)
        log.close()
        with open(os.path.join(tmp, f"csi{i}.log")) as f:
            out = f.read()
        check(listening, f"portalbd-csi {shlex.join(args)} did not serve: {out}")
        check_eq(status, 0, f"portalbd-csi {shlex.join(args)} exit status: {out}")


def case_images_pinned(_tmp):
    docs = applied()
    kust = load(os.path.join(DEPLOY, "kustomization.yaml"))[0]
    ours = {i["name"]: i["newTag"] for i in kust.get("images", [])}
    for kind in ("Deployment", "DaemonSet"):
        for c in containers(pod_spec(docs, kind)):
            image = c["image"]
            check(PINNED_RE.match(image), f"{kind}/{c['name']}: image {image} not pinned to "
                                          f"a version")
            repo, tag = image.rsplit(":", 1)
            if repo in ours:
                check_eq(tag, ours[repo], f"{kind}/{c['name']}: our image's tag")
            else:
                check(repo.startswith("registry.k8s.io/sig-storage/"),
                      f"{kind}/{c['name']}: {image} is not a kubernetes-csi sidecar")
            check(c.get("imagePullPolicy") != "Always" or repo in ours,
                  f"{kind}/{c['name']}: pulls a pinned image Always")


def case_namespaces_accounts_secrets(_tmp):
    """Namespaced objects are in portalbd-csi; pods run as accounts that exist; bindings
    name roles and accounts that exist; the Secrets pods read are the example's."""
    docs = applied()
    cluster_kinds = {"Namespace", "CSIDriver", "StorageClass", "VolumeSnapshotClass",
                     "ClusterRole", "ClusterRoleBinding"}
    for d in docs:
        ns = d["metadata"].get("namespace")
        if d["kind"] in cluster_kinds:
            check(ns is None, f"{d['kind']} {d['metadata']['name']} has a namespace")
        else:
            check_eq(ns, NAMESPACE, f"{d['kind']} {d['metadata']['name']} namespace")
    accounts = {d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"}
    roles = {(d["kind"], d["metadata"]["name"]) for d in docs
             if d["kind"] in ("Role", "ClusterRole")}
    for kind in ("Deployment", "DaemonSet"):
        check(pod_spec(docs, kind)["serviceAccountName"] in accounts, f"{kind} account")
    for d in docs:
        if d["kind"] in ("RoleBinding", "ClusterRoleBinding"):
            ref = d["roleRef"]
            check((ref["kind"], ref["name"]) in roles, f"{d['metadata']['name']}: {ref}")
            for s in d["subjects"]:
                check(s["name"] in accounts and s["namespace"] == NAMESPACE, f"subject {s}")
    example = {d["metadata"]["name"]: d for d in
               load(os.path.join(DEPLOY, "secret.example.yaml"))}
    for kind in ("Deployment", "DaemonSet"):
        spec = pod_spec(docs, kind)
        used = {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        for c in containers(spec):
            used |= {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        check(used <= set(example), f"{kind}: Secrets {used - set(example)} not in "
                                    f"secret.example.yaml")


def case_attacher_may_do_its_work(_tmp):
    """attachRequired: true needs the csi-attacher sidecar in the controller, allowed to
    read PersistentVolumes and CSINodes and to patch VolumeAttachments and their status
    (what external-attacher v4 does), bound to the controller's account."""
    docs = applied()
    spec = pod_spec(docs, "Deployment")
    attacher = container(spec, "csi-attacher")
    check(attacher["image"].startswith("registry.k8s.io/sig-storage/csi-attacher:"),
          f"csi-attacher image {attacher['image']}")
    check("--leader-election" in attacher["args"], "csi-attacher --leader-election")
    account = spec["serviceAccountName"]
    granted = set()
    bound = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"
             and any(x["name"] == account for x in d["subjects"])}
    for d in docs:
        if d["kind"] == "ClusterRole" and d["metadata"]["name"] in bound:
            for rule in d["rules"]:
                for g in rule["apiGroups"]:
                    for r in rule["resources"]:
                        granted |= {(g, r, v) for v in rule["verbs"]}
    for need in [("", "persistentvolumes", v) for v in ("get", "list", "watch", "patch")] + \
            [("storage.k8s.io", "csinodes", v) for v in ("get", "list", "watch")] + \
            [("storage.k8s.io", "volumeattachments", v)
             for v in ("get", "list", "watch", "patch")] + \
            [("storage.k8s.io", "volumeattachments/status", "patch")]:
        check(need in granted, f"the controller's account may not {need[2]} {need[1]}")


def case_docs_match_manifests(_tmp):
    """README's and docs/csi.md's install steps name files that exist and the sidecar
    versions deployed."""
    with open(os.path.join(SOURCE, "README.md")) as f:
        readme = f.read()
    with open(os.path.join(SOURCE, "docs", "csi.md")) as f:
        doc = f.read()
    check("## Kubernetes (CSI)" in readme, "README has a 'Kubernetes (CSI)' section")
    for rel in set(re.findall(r"deploy/[\w./-]+\.(?:yaml|md)|deploy/Dockerfile", readme + doc)):
        check(os.path.exists(os.path.join(SOURCE, rel)), f"{rel} (named in the docs) exists")
    docs = applied()
    for kind in ("Deployment", "DaemonSet"):
        for c in containers(pod_spec(docs, kind)):
            repo, tag = c["image"].rsplit(":", 1)
            if repo.startswith("registry.k8s.io/sig-storage/"):
                name = repo.rsplit("/", 1)[1]
                check(f"{name} {tag}" in doc, f"docs/csi.md names {name} {tag}")


def dockerfile_packages():
    """[(stage, [packages])] of every apt-get install in deploy/Dockerfile."""
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    stages, current = [], None
    for line in text.splitlines():
        if line.startswith("FROM "):
            current = line.split()[-1]
            check_eq(line.split()[1], "debian:12", "base image")
        m = re.search(r"apt-get install (.*?)(?:&&|$)", line)
        if m:
            pkgs = [w for w in m.group(1).split() if not w.startswith("-")]
            stages.append((current, pkgs))
    check_eq(len(stages), 2, "apt-get install lines (build and runtime stages)")
    return stages


def case_dockerfile_packages_in_debian(_tmp):
    """docker is not available here: the image is not built. What can be checked is: every
    package the Dockerfile installs exists in Debian 12 (apt-cache policy has a
    candidate), and the build stage has every library scripts/setup.sh builds with."""
    # Building the image takes a docker daemon and the network (debian:12, apt): neither
    # is here, so the test says so rather than pretend.
    usable = shutil.which("docker") and run(["docker", "info"], check_exit=False,
                                            timeout=20).returncode == 0
    print("note: the image itself is not built by this test (docker "
          f"{'is usable, build it by hand' if usable else 'has no daemon here'})")
    if not shutil.which("apt-cache"):
        raise Skip("apt-cache not found (not Debian)")
    probe = run(["apt-cache", "policy", "libc6"]).stdout
    if "Candidate: (none)" in probe or "Candidate:" not in probe:
        raise Skip("apt lists are empty: run apt-get update")
    stages = dockerfile_packages()
    for stage, pkgs in stages:
        out = run(["apt-cache", "policy", *pkgs]).stdout
        have = {}
        for block in re.split(r"^(?=\S)", out, flags=re.M):
            m = re.match(r"(\S+):\n", block)
            if m:
                have[m.group(1)] = re.search(r"Candidate: (\S+)", block).group(1)
        for p in pkgs:
            check(have.get(p, "(none)") != "(none)", f"{stage}: no Debian package {p}")
    with open(os.path.join(SOURCE, "scripts", "setup.sh")) as f:
        setup = f.read()
    build_pkgs = set(stages[0][1])
    wanted = {p for p in re.findall(r"^\s+((?:[a-z0-9+.-]+ ?)+)$", setup, re.M)
              for p in p.split()}
    # The libraries the build needs; not the fuzzers' clang runtime, Google Benchmark
    # (optional: the micro-benchmarks only) nor dpkg-dev (the .deb).
    wanted = {p for p in wanted if (p.endswith("-dev") and p not in
                                    ("libclang-rt-14-dev", "libbenchmark-dev", "dpkg-dev"))
              or p.startswith("protobuf-compiler") or p == "catch2"}
    check(wanted, "no -dev packages found in scripts/setup.sh")
    check(wanted <= build_pkgs, f"Dockerfile build stage lacks {sorted(wanted - build_pkgs)} "
                                f"of scripts/setup.sh")


run_cases(globals())
