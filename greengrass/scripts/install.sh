#!/bin/sh
# Greengrass Install step of the Lookout component.
#
# Creates a virtualenv under the component's work folder from the wheels shipped in
# this artifact, offline (pip --no-index): a core device rebooting without network
# still comes back. The nucleus runs Install at every start, so this exits at once
# when the virtualenv already holds exactly these wheels (a stamp with the
# wheelhouse digest). A new version is installed beside the old one and swapped in
# with one rename, so a failed install leaves the previous virtualenv untouched.
#
# Environment (set by the recipe): LOOKOUT_CODE_DIR (this unpacked artifact),
# LOOKOUT_WORK_DIR ({work:path}), LOOKOUT_PYTHON (interpreter, default python3).
set -eu

code="${LOOKOUT_CODE_DIR:?LOOKOUT_CODE_DIR is not set (the recipe sets it)}"
work="${LOOKOUT_WORK_DIR:?LOOKOUT_WORK_DIR is not set (the recipe sets it)}"
python="${LOOKOUT_PYTHON:-python3}"
wheels="$code/wheelhouse"
link="$work/venv"

say() { printf 'lookout install: %s\n' "$*"; }
fail() { printf 'lookout install: %s\n' "$*" >&2; exit 1; }

[ -f "$wheels/DIGEST" ] || fail "$wheels/DIGEST missing: the artifact is incomplete"
want="$(cat "$wheels/DIGEST")"
short="$(printf '%s' "$want" | cut -c1-12)"

if [ -f "$link/.lookout-wheelhouse" ] && [ "$(cat "$link/.lookout-wheelhouse")" = "$want" ] \
   && "$link/bin/python" -c "import lookout.greengrass.launch" >/dev/null 2>&1; then
  say "up to date (wheelhouse $short), nothing to install"
  exit 0
fi

need="$(cat "$wheels/PYTHON_TAG")"
have="$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null)" \
  || fail "cannot run '$python': install Python 3 (and its venv module) or set the component configuration 'python'"
[ "$have" = "$need" ] || fail "the wheels are built for $need but '$python' is $have: set the component configuration 'python' to a matching interpreter, or package again with --python for this one"

mkdir -p "$work"
new="$work/venv-$short"
rm -rf "$new"
say "creating $new with $python ($have)"
"$python" -m venv "$new" || fail "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
say "installing $(grep -c . "$wheels/requirements.txt") packages from $wheels (offline)"
PIP_CONFIG_FILE=/dev/null "$new/bin/python" -m pip install --no-index --find-links "$wheels" \
  --no-cache-dir --disable-pip-version-check --quiet -r "$wheels/requirements.txt" \
  || { rm -rf "$new"; fail "pip install from the shipped wheels failed (see above)"; }
"$new/bin/python" -c "import lookout.greengrass.launch" \
  || { rm -rf "$new"; fail "the new virtualenv cannot import lookout"; }
printf '%s\n' "$want" > "$new/.lookout-wheelhouse"

# swap in with one rename, then remove older virtualenvs
if [ -e "$link" ] && [ ! -L "$link" ]; then rm -rf "$link"; fi
ln -sfn "venv-$short" "$work/venv.swap"
mv -T "$work/venv.swap" "$link" 2>/dev/null || { rm -f "$link"; mv "$work/venv.swap" "$link"; }
for old in "$work"/venv-*; do
  [ "$old" = "$new" ] || rm -rf "$old"
done
say "installed (wheelhouse $short)"
