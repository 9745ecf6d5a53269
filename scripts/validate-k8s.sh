#!/usr/bin/env bash
# Checks the deployment files, offline: every Kubernetes manifest under k8s/ (and what each
# kustomization directory renders to, with `kubectl kustomize`) against the Kubernetes API
# schemas (kubernetes-validate, strict: unknown fields are errors) for the oldest version the
# native sidecar needs (1.29) and the newest one bundled; the tailship config inside every
# ConfigMap with `tailship validate`; that every manifest belongs to a kustomization and every
# file a kustomization names exists; the Grafana dashboard's JSON; and that the runtime stage
# of ./Dockerfile and docker/Dockerfile.prebuilt agree.
#   pip install kubernetes-validate   # once (it bundles the schemas); kubectl must be installed
#   scripts/validate-k8s.sh
# Environment: TAILSHIP=path/to/tailship (default: cargo builds the debug binary).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import kubernetes_validate, yaml' 2>/dev/null; then
    echo "validate-k8s: kubernetes-validate is not installed (pip install kubernetes-validate)" >&2
    exit 1
fi
if ! command -v kubectl >/dev/null; then
    echo "validate-k8s: kubectl is not installed (it renders the kustomizations: kubectl kustomize)" >&2
    exit 1
fi
if [[ -z "${TAILSHIP:-}" ]]; then
    cargo build --quiet --locked --bin tailship
    TAILSHIP="${CARGO_TARGET_DIR:-target}/debug/tailship"
fi

rendered=$(mktemp -d "${TMPDIR:-/tmp}/validate-k8s.XXXXXX")
trap 'rm -rf "$rendered"' EXIT

manifests=()
kustomizations=()
while IFS= read -r f; do
    if [[ "$(basename "$f")" == kustomization.yaml ]]; then
        kustomizations+=("$(dirname "$f")")
    else
        manifests+=("$f")
    fi
done < <(find k8s -name '*.yaml' | sort)

echo "== kubectl kustomize: ${kustomizations[*]}"
for d in "${kustomizations[@]}"; do
    out="$rendered/$(echo "$d" | tr / _).yaml"
    kubectl kustomize "$d" >"$out"
    echo "ok: $d renders ($(grep -c '^kind:' "$out") objects)"
done

echo "== Kubernetes schemas (strict): ${manifests[*]} and the rendered kustomizations"
for version in 1.29.0 ""; do
    python3 -m kubernetes_validate --strict --quiet ${version:+-k "$version"} "${manifests[@]}" "$rendered"/*.yaml
    echo "ok: ${version:-newest bundled} schemas"
done

echo "== tailship validate on every ConfigMap's config, kustomization, dashboard, Dockerfiles"
TAILSHIP="$TAILSHIP" python3 - "${manifests[@]}" <<'EOF'
import json, os, pathlib, subprocess, sys, tempfile
import yaml

failed = []
configs = 0
with tempfile.TemporaryDirectory(prefix="validate-k8s-") as tmp:
    for path in sys.argv[1:]:
        for doc in yaml.safe_load_all(open(path)):
            if not doc:
                continue
            if doc["kind"] != "ConfigMap":
                continue
            for key, text in (doc.get("data") or {}).items():
                if not key.endswith((".toml", ".yaml", ".yml")):
                    continue
                # The include globs name paths inside the container; validate checks syntax
                # and values, not that those paths exist here.
                cfg = pathlib.Path(tmp, f"{doc['metadata']['name']}-{key}")
                cfg.write_text(text)
                configs += 1
                r = subprocess.run([os.environ["TAILSHIP"], "validate", "--config", str(cfg)],
                                   capture_output=True, text=True)
                where = f"{path}: ConfigMap {doc['metadata']['name']}, key {key}"
                if r.returncode != 0:
                    failed.append(f"{where}: tailship validate exited {r.returncode}:\n{r.stdout}{r.stderr}")
                else:
                    print(f"ok: {where}")

# Kustomizations: every file they name exists (kubectl kustomize above has rendered each, which
# also rejects an object defined twice), and every manifest belongs to one (as a resource or a
# patch), so none is left out of what `kubectl apply -k` deploys.
named = set()
for kpath in sorted(pathlib.Path("k8s").rglob("kustomization.yaml")):
    kust = yaml.safe_load(kpath.read_text())
    here = kpath.parent
    files = list(kust.get("resources", []))
    files += [p["path"] for p in kust.get("patches", []) if "path" in p]
    for gen in kust.get("configMapGenerator", []):
        files += [f.split("=", 1)[-1] for f in gen.get("files", [])]
    for f in files:
        target = (here / f).resolve()
        if not target.exists():
            failed.append(f"{kpath} names {f}, which does not exist")
        named.add(target)
    print(f"ok: {kpath}")
for path in sys.argv[1:]:
    if pathlib.Path(path).resolve() not in named:
        failed.append(f"{path} is in no kustomization.yaml (list it as a resource or a patch)")

# The dashboard is JSON and only uses metrics the agent exports (names from src/).
dash_text = open("k8s/grafana/grafana-dashboard.json").read()
json.loads(dash_text)
import re
exported = set()
for src in pathlib.Path("src").rglob("*.rs"):
    exported.update(re.findall(r"tailship_[a-z0-9_]+", src.read_text()))
for name in sorted(set(re.findall(r"tailship_[a-z0-9_]+", dash_text))):
    if name not in exported:
        failed.append(f"k8s/grafana/grafana-dashboard.json uses {name}, which src/ does not export")
print("ok: k8s/grafana/grafana-dashboard.json")

# The runtime stage exists twice; apart from where the binary comes from, it must not drift.
def runtime(path):
    lines = open(path).read().splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("FROM scratch AS runtime"))
    out = []
    for l in lines[start:]:
        if not l.strip() or l.lstrip().startswith("#"):
            continue
        if l.startswith("COPY") and l.rstrip().endswith(" /tailship"):
            l = "COPY <binary> /tailship"
        out.append(l)
    return out
if runtime("Dockerfile") != runtime("docker/Dockerfile.prebuilt"):
    failed.append("the runtime stages of Dockerfile and docker/Dockerfile.prebuilt differ")
else:
    print("ok: Dockerfile and docker/Dockerfile.prebuilt have the same runtime stage")

if configs == 0:
    failed.append("no tailship config found in any ConfigMap")
if failed:
    print("\n".join("FAILED: " + f for f in failed), file=sys.stderr)
    sys.exit(1)
print(f"all good: {len(sys.argv) - 1} manifests, {configs} tailship configs")
EOF
