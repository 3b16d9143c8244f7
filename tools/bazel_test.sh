#!/usr/bin/env bash
# Runs `bazel test //...` offline with Debian's Bazel 4.2.3.
#
#   bash tools/bazel_test.sh                    # every target
#   bash tools/bazel_test.sh //:test_math_grad  # some targets (any bazel test arguments)
#
# 1. makes sure the venv is ready (tools/setup_env.sh);
# 2. installs bazel-bootstrap, bazel-rules-java and bazel-platforms with apt
#    when one is missing;
# 3. writes bazel-offline.bazelrc (read by .bazelrc) with this machine's paths:
#    the repositories Bazel would download, pointed at the Debian packages'
#    directories and at third_party/bazel/, and the venv's interpreter as the
#    Python toolchain, so TensorFlow and pytest import inside the tests;
# 4. runs `bazel test`, which prints the results.
# Afterwards plain `bazel test //...` and `bazel run //:compare` work too.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
log() { echo "bazel_test: $*"; }

bash tools/setup_env.sh
venv="${TFGRAD_VENV:-$root/.venv}"
vpy="$venv/bin/python"

packages=(bazel-bootstrap bazel-rules-java bazel-platforms)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  log "installing ${missing[*]} with apt"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The folder holding a package's top-level WORKSPACE file.
package_repo() {
  dpkg -L "$1" | grep -E '/WORKSPACE(\.bazel)?$' | awk '{ print length, $0 }' \
    | sort -n | head -n 1 | cut -d' ' -f2- | xargs -r dirname
}
rules_java="$(package_repo bazel-rules-java)"
platforms="$(package_repo bazel-platforms)"
[ -n "$rules_java" ] && [ -n "$platforms" ] \
  || { log "no WORKSPACE in bazel-rules-java or bazel-platforms"; exit 1; }

# The venv's interpreter as Bazel's Python toolchain, in a small repository
# kept in the venv: Bazel starts it by that path, so the venv's packages
# import in tests and under `bazel run` alike.
toolchain="$venv/bazel_python"
mkdir -p "$toolchain"
echo 'workspace(name = "tfgrad_venv_python")' > "$toolchain/WORKSPACE"
cat > "$toolchain/BUILD" <<EOF
# Written by tools/bazel_test.sh: the venv's python as Bazel's Python 3.
load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")

py_runtime(
    name = "py3",
    interpreter_path = "$vpy",
    python_version = "PY3",
)

py_runtime_pair(
    name = "runtimes",
    py3_runtime = ":py3",
)

toolchain(
    name = "toolchain",
    toolchain = ":runtimes",
    toolchain_type = "@bazel_tools//tools/python:toolchain_type",
)
EOF

packages_hash="$("$vpy" -c 'from importlib import metadata; print("\n".join(sorted(d.metadata["Name"] + "==" + d.version for d in metadata.distributions())))' | cksum | cut -d' ' -f1)"

cat > bazel-offline.bazelrc <<EOF
# Written by tools/bazel_test.sh for this machine; read by .bazelrc.
build --override_repository=rules_java=$rules_java
build --override_repository=platforms=$platforms
build --override_repository=rules_cc=$root/third_party/bazel/rules_cc
build --override_repository=remote_coverage_tools=$root/third_party/bazel/remote_coverage_tools
build --override_repository=tfgrad_venv_python=$toolchain
build --extra_toolchains=@tfgrad_venv_python//:toolchain
# Bazel does not see the venv's packages; this makes a change there rerun the
# tests instead of reporting cached results.
test --test_env=TFGRAD_VENV_PACKAGES=$packages_hash
EOF

log "Bazel $(dpkg-query -W -f='${Version}' bazel-bootstrap) (bazel-bootstrap) with $vpy ($("$vpy" --version))"
start=$SECONDS
status=0
if [ "$#" -eq 0 ]; then set -- //...; fi
bazel test "$@" || status=$?
log "bazel test finished in $((SECONDS - start)) s with exit code $status"
# CI leaves no Bazel server behind.
if [ "${CI:-}" = "true" ]; then bazel shutdown; fi
exit "$status"
