#!/usr/bin/env bash
# Validates deploy/k8s against the Kubernetes API schemas shipped by kubernetes-validate (PyPI),
# installed once into a venv under .build/. Strict: unknown fields fail. KEDA's resources have no
# schema there (a warning); Tests/BlendCoreTests/DeployFilesTests checks them.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.build/kubernetes-validate
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==1.37.0"
fi
"$venv/bin/kubernetes-validate" --strict --quiet deploy/k8s/*.yaml
echo "manifests: deploy/k8s valid against the Kubernetes schemas (kubernetes-validate --strict)" >&2
