#!/usr/bin/env bash
# Raspberry Pi OS's userland in CI: a Debian arm64 root (Trixie, or Bookworm) built with debootstrap and run
# under qemu-user, where this checkout's setup.sh, `smartbin check`, `smartbin run --max-items 3` (the embedded
# default: belt simulator, bundled model) and `smartbin bench` on a dozen photos must pass.
#   tools/arm64-userland.sh [trixie] [bookworm]      (root; default: trixie)
# Roots and wheels are cached outside the checkout, in $SMARTBIN_ARM64_CACHE (default /var/cache/smartbin-arm64):
# the first run builds a root (~10 min), later runs reuse it. Wheels are fetched on the host for the target
# (aarch64, the root's Python) and installed there without an index, so nothing resolves under emulation.
set -euo pipefail
cd "$(dirname "$(readlink -f "$0")")/.."
suites=("$@")
((${#suites[@]})) || suites=(trixie)
cache=${SMARTBIN_ARM64_CACHE:-/var/cache/smartbin-arm64}
say() { printf 'arm64: %s\n' "$*"; }

((EUID == 0)) || { echo "arm64-userland.sh: needs root (debootstrap, chroot, mounts)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null || [[ ! -x /usr/bin/qemu-aarch64-static ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    debootstrap qemu-user-static binfmt-support >/dev/null
fi
# qemu-user 7.2 (Debian 12's) crashes in LiteRT's Interpreter(); 10.0 (bookworm-backports, Debian 13) runs it.
if (( $(qemu-aarch64-static --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p') < 8 )); then
  . /etc/os-release
  echo "deb http://deb.debian.org/debian $VERSION_CODENAME-backports main" >/etc/apt/sources.list.d/smartbin-backports.list
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -t "$VERSION_CODENAME-backports" qemu-user-static >/dev/null
fi
say "$(qemu-aarch64-static --version | head -1)"
# aarch64 binaries run through qemu: the kernel's binfmt_misc, with the interpreter opened at registration (F,
# so that it works inside the chroot too), registered afresh so that it is the qemu installed now.
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64-smartbin ]] && echo -1 >/proc/sys/fs/binfmt_misc/qemu-aarch64-smartbin
if grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then  # Debian's entry may hold an older qemu open
  echo 0 >/proc/sys/fs/binfmt_misc/qemu-aarch64 && say "Debian's qemu-aarch64 binfmt entry disabled for ours"
fi
printf '%s' ':qemu-aarch64-smartbin:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64-static:F' \
  >/proc/sys/fs/binfmt_misc/register
mkdir -p "$cache"

runtime_requirements() {  # the runtime dependencies of pyproject.toml, one per line, and the build backend
  python3 - <<'EOF'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))
print("\n".join(project["project"]["dependencies"] + project["build-system"]["requires"]))
EOF
}

for suite in "${suites[@]}"; do
  started=$SECONDS
  root=$cache/$suite
  if [[ ! -f $root/.smartbin-ready ]]; then
    say "$suite: building the root in $root (debootstrap, arm64, minbase)"
    rm -rf "$root"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,ca-certificates \
      "$suite" "$root" http://deb.debian.org/debian >"$cache/$suite-debootstrap.log" 2>&1 \
      || { tail -20 "$cache/$suite-debootstrap.log"; exit 1; }
    touch "$root/.smartbin-ready"
    say "$suite: root built in $((SECONDS - started)) s"
  fi
  pyver=$(chroot "$root" python3 -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')
  wheels=$cache/wheels-cp$pyver
  glibc=$(chroot "$root" getconf GNU_LIBC_VERSION | sed 's/.*2\.//')  # wheels built for this glibc or older
  platforms=()
  for ((minor = 17; minor <= glibc; minor++)); do platforms+=(--platform "manylinux_2_${minor}_aarch64"); done
  mkdir -p "$wheels"
  runtime_requirements | xargs -d '\n' python3 -m pip download --quiet --disable-pip-version-check --dest "$wheels" \
    --only-binary=:all: --implementation cp --python-version "$pyver" --abi "cp$pyver" --abi abi3 --abi none \
    "${platforms[@]}" --platform manylinux2014_aarch64 --platform any
  python3 -m pip download --quiet --disable-pip-version-check --dest "$wheels" --only-binary=:all: \
    --python-version "$pyver" --platform any pip
  # this checkout's tracked files (and the photos the bench reads) into the root, fresh every run; the venv of
  # the last run is kept: setup.sh is idempotent and updates it from the wheels (a warm run skips the installs)
  mkdir -p "$root/smartbin" && find "$root/smartbin" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  rm -rf "$root/photos" && mkdir -p "$root/photos"
  git ls-files -z | xargs -0 cp --parents -t "$root/smartbin"
  for class in battery cardboard clothes metal paper shoes; do
    mkdir -p "$root/photos/$class"
    find ../shared/data/garbage12/$class -type f | sort | sed -n 1,2p | xargs cp -t "$root/photos/$class"
  done
  rm -rf "$root/wheels" && cp -r "$wheels" "$root/wheels"
  for fs in proc sys dev; do mountpoint -q "$root/$fs" || mount --bind "/$fs" "$root/$fs"; done
  trap 'for fs in proc sys dev; do umount -l "'"$root"'/$fs" 2>/dev/null || true; done' EXIT
  say "$suite: setup.sh, check, run --max-items 3, bench (under qemu: slow)"
  chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels \
    bash -c 'set -euo pipefail; cd /smartbin && ./setup.sh && .venv/bin/smartbin check \
      && .venv/bin/smartbin run --max-items 3 && .venv/bin/smartbin bench --images /photos --threads 4 --out /tmp/bench \
      && .venv/bin/python -c "import sys, numpy, cv2; from importlib.metadata import version; from edge.runtime import interpreter_class; \
print(\"versions: Python\", sys.version.split()[0], \"numpy\", numpy.__version__, \"opencv\", cv2.__version__, \
\"gpiozero\", version(\"gpiozero\"), \"pydantic\", version(\"pydantic\"), interpreter_class()[1])"'
  for fs in proc sys dev; do umount -l "$root/$fs" 2>/dev/null || true; done
  trap - EXIT
  say "$suite: OK in $((SECONDS - started)) s ($(chroot "$root" sh -c '. /etc/os-release; echo $PRETTY_NAME'), $(chroot "$root" uname -m))"
done
