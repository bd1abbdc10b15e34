#!/usr/bin/env bash
# smartbin service installer. Run as root on the Pi, from a checkout:   sudo systemd/install.sh
#   install.sh [--config FILE] [--no-apt] [--no-start] [--dry-run]   install, or update (run it again)
#   install.sh --uninstall [--dry-run]                                  remove; keeps the records and the config
# Installs the apt packages it needs, the user smartbin (groups video and gpio), the code in /opt/smartbin and
# its venv (setup.sh), the unit, /etc/smartbin/smartbin.toml only if there is none (FILE, else the documented
# example), the `smartbin` command in /usr/local/bin; then enables and (re)starts the unit.
#   --dry-run    print every step, change nothing
#   --root DIR   plan for the system in DIR instead of / (an image, a test): reads DIR, implies --dry-run
set -euo pipefail

src=$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)
app=/opt/smartbin
conf=/etc/smartbin/smartbin.toml
state=/var/lib/smartbin
unit=/etc/systemd/system/smartbin.service
command=/usr/local/bin/smartbin

root="" dry=0 uninstall=0 apt=1 start=1 config=""
while (($#)); do
  case $1 in
    --config) config=$(readlink -f "${2:?--config needs a FILE}"); shift ;;
    --no-apt) apt=0 ;;
    --no-start) start=0 ;;
    --dry-run) dry=1 ;;
    --root) root=$(readlink -f "${2:?--root needs a DIR}"); dry=1; shift ;;
    --uninstall) uninstall=1 ;;
    -h|--help) sed -n '2,9p' "$0" | cut -c3-; exit 0 ;;
    *) echo "install.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf 'install.sh: %s\n' "$*"; }
run() {  # print the command (args with spaces quoted), then run it unless --dry-run
  local arg line="+"
  for arg; do [[ $arg == *[[:space:]]* ]] && arg="'$arg'"; line+=" $arg"; done
  echo "$line"
  ((dry)) || "$@"
}
die() { echo "install.sh: $*" >&2; exit 1; }
installed() { dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }
has_user() { grep -q "^$1:" "$root/etc/passwd" 2>/dev/null; }
has_group() { grep -q "^$1:" "$root/etc/group" 2>/dev/null; }
systemd_running() { [[ -z $root && -d /run/systemd/system ]]; }

copy_code() {  # the checkout without its venv, git data and caches; the installed venv is kept
  find "$2" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
  tar -C "$1" --exclude=./.git --exclude=./.venv --exclude=./var --exclude=./artifacts --exclude=./build \
      --exclude=./dist --exclude=.cache --exclude=.pytest_cache --exclude=__pycache__ --exclude='*.egg-info' -cf - . \
    | tar -C "$2" --no-same-owner --no-same-permissions -xf -
}

((dry)) || ((EUID == 0)) || die "run as root: sudo $0 $*"
((dry)) && say "dry run for ${root:-/}: nothing is changed"
[[ -f $src/systemd/smartbin.service && -f $src/setup.sh ]] || die "not in a smartbin checkout: $src"

if ((uninstall)); then
  if systemd_running; then
    run systemctl disable --now smartbin.service  # SIGTERM: gates safe, camera and database closed
  else
    run systemctl ${root:+--root="$root"} disable smartbin.service
  fi
  run rm -f "$unit" "$command"
  systemd_running && run systemctl daemon-reload
  run rm -rf "$app"
  has_user smartbin && run userdel smartbin
  say "kept the records in $state and the config in ${conf%/*} (remove them by hand if they should go)"
  exit 0
fi

[[ -z $config || -f $config ]] || die "config not found: $config"
model=$(tr -d '\0' 2>/dev/null <"$root/proc/device-tree/model" || true)
packages=(python3-venv)
# On a Pi the venv sees apt's packages: sd_notify through libsystemd, the camera, and GPIO (lgpio on a Pi 5).
[[ $model == "Raspberry Pi"* ]] && packages+=(python3-systemd python3-picamera2 python3-lgpio)
missing=()
for package in "${packages[@]}"; do installed "$package" || missing+=("$package"); done
if ((apt && ${#missing[@]})); then
  command -v apt-get >/dev/null || die "apt-get not found; install ${missing[*]} by hand, then use --no-apt"
  run apt-get update -qq
  run apt-get install -y --no-install-recommends "${missing[@]}"
fi

for group in video gpio; do has_group "$group" || run groupadd --system "$group"; done
if has_user smartbin; then
  run usermod --append --groups video,gpio smartbin
else
  run useradd --system --user-group --groups video,gpio --home-dir "$state" --no-create-home \
    --shell /usr/sbin/nologin --comment "smartbin waste sorter" smartbin
fi

run install -d -m 0755 "$app"
run copy_code "$src" "$app"
run "$app/setup.sh"
if [[ -e $root$conf ]]; then
  say "keeping $conf (never overwritten)${config:+; not installing $config}"
else
  run install -D -m 0644 "${config:-$app/edge/smartbin.toml}" "$conf"
fi
run install -D -m 0644 "$app/systemd/smartbin.service" "$unit"
run ln -sfn "$app/.venv/bin/smartbin" "$command"

if systemd_running; then
  run systemctl daemon-reload
  run systemctl enable smartbin.service
  if ((start)); then
    run systemctl restart smartbin.service
    ((dry)) || systemctl --no-pager --lines=5 status smartbin.service || true
  fi
else
  run systemctl ${root:+--root="$root"} enable smartbin.service
  say "systemd is not running here: enabled for the next boot, not started"
fi
say "config: $conf (then: sudo systemctl restart smartbin); check it: sudo smartbin check --config $conf"
say "follow the log: journalctl -u smartbin -f    status: sudo smartbin status"
