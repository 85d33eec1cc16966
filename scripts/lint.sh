#!/usr/bin/env bash
# Install the dev tools into .venv and run the linters and type checkers over the whole tree:
#   ruff check, ruff format --check     every Python file (pyproject.toml [tool.ruff])
#   mypy --strict shared/latentwire     the model package, strict
#   mypy services, tests, docker        the rest, with [tool.mypy] (check_untyped_defs, no --strict)
# Runs every check even when one fails; exits non-zero if any of them found something.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install.sh --dev

# The services are packages under other names than their folders (services/sender is
# latentwire_sender: [tool.setuptools.package-dir]); mypy cannot follow the editable install's
# import hook, so link each one by its package name under build/mypy-path, which [tool.mypy]
# mypy_path names. mypy reports files by those links: sed maps them back to services/....
links=build/mypy-path
rm -rf "$links"
mkdir -p "$links"
.venv/bin/python - "$links" <<'PY'
import os, sys, tomllib

links = sys.argv[1]
package_dir = tomllib.load(open("pyproject.toml", "rb"))["tool"]["setuptools"]["package-dir"]
for package, folder in sorted(package_dir.items()):
    if folder.startswith("services/"):
        os.symlink(os.path.relpath(folder, links), os.path.join(links, package))
PY
unlink=()
for link in "$links"/*; do
    unlink+=(-e "s#^$link/#$(readlink "$link" | sed 's#^\(\.\./\)*##')/#")
done

failed=()
check() {  # check NAME COMMAND...: print and run COMMAND, remember NAME if it fails
    local name=$1
    shift
    printf '\n==> %s\n' "$*"
    "$@" || failed+=("$name")
}
mypy_services_tests() {
    .venv/bin/mypy "$links"/* tests docker 2>&1 | sed "${unlink[@]}"
}

check "ruff check" .venv/bin/ruff check --output-format concise .
check "ruff format" .venv/bin/ruff format --check .
# Its own cache: --strict and the config's flags would otherwise invalidate each other's.
check "mypy --strict" .venv/bin/mypy --strict --cache-dir .mypy_cache/strict shared/latentwire
printf '\n==> .venv/bin/mypy %s tests docker   (services/*, by package name)\n' "$links/*"
mypy_services_tests || failed+=("mypy")

echo
if [ "${#failed[@]}" -gt 0 ]; then
    echo "lint: FAILED: $(IFS=,; echo "${failed[*]}" | sed 's/,/, /g')" >&2
    exit 1
fi
echo "lint: all checks passed"
