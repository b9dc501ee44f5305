#!/usr/bin/env bash
# pitelemetry installer: sudo ./install.sh [--influx-url URL] [--with-grafana]
#                        sudo ./install.sh --restore BACKUP
#                        sudo ./install.sh --uninstall | --purge
# Safe to run again: it upgrades in place and keeps your config, secrets and data.
set -Eeuo pipefail
trap 'echo "install.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
umask 022

PREFIX=/opt/pitelemetry
VENV=$PREFIX/venv
CONF_DIR=/etc/pitelemetry
CONFIG=$CONF_DIR/pitelemetry.toml
STATE_DIR=/var/lib/pitelemetry
CREDSTORE=/etc/credstore
UNIT_DIR=/usr/local/lib/systemd/system
INFLUX_DROP_IN=/etc/systemd/system/influxdb.service.d/50-pitelemetry.conf
SYSUSERS=/etc/sysusers.d/pitelemetry.conf
UNITS=(pitelemetry.service pitelemetry-provision.service pitelemetry-provision.path
    pitelemetry-backup.service pitelemetry-backup.timer)
BACKUP_DROP_IN=/etc/systemd/system/pitelemetry-backup.service.d/50-target.conf
CREDENTIALS=(influxdb.password influxdb.token grafana.token grafana.password mqtt.password
    finnhub.key twelvedata.key alphavantage.key stooq.key
    telegram.token pushover.user pushover.token webhook.url webhook.password discord.url
    slack.url teams.url googlechat.url)
HARDWARE_GROUPS=(gpio i2c spi video)
SOURCE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() {
    cat <<'EOF'
Usage: sudo ./install.sh [options]

Installs pitelemetry (or upgrades it in place) and starts it at every boot:
the service user "pitelemetry", the code in /opt/pitelemetry, the config in
/etc/pitelemetry/pitelemetry.toml (written once, never overwritten), secrets in
/etc/credstore, the systemd units, and InfluxDB from Debian unless --influx-url.

Options:
  --influx-url URL   write to an existing InfluxDB (a central one for a fleet of
                     Pis) instead of installing InfluxDB on this machine
  --with-grafana     also install Grafana, from Grafana's APT repository when it
                     is configured (otherwise the steps to configure it are shown)
  --restore BACKUP   install, then restore BACKUP (made by `pitelemetry backup`):
                     the readings, config and state of a Pi whose SD card died
  --uninstall        remove the units and the code; keep config, secrets and data
  --purge            remove everything, including config, secrets, data and the user
  -h, --help         this text
EOF
}

say() { printf '==> %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }
have_systemd() { [[ -d /run/systemd/system ]]; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
available() { [[ -n "$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2}' | grep -v '(none)')" ]]; }

INFLUX_URL=""
RESTORE=""
WITH_GRAFANA=0
ACTION=install
while (($#)); do
    case $1 in
        --influx-url) [[ $# -ge 2 ]] || die "--influx-url needs a URL"; INFLUX_URL=$2; shift ;;
        --influx-url=*) INFLUX_URL=${1#*=} ;;
        --with-grafana) WITH_GRAFANA=1 ;;
        --restore) [[ $# -ge 2 ]] || die "--restore needs a backup"; RESTORE=$2; shift ;;
        --restore=*) RESTORE=${1#*=} ;;
        --uninstall) ACTION=uninstall ;;
        --purge) ACTION=purge ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
[[ $EUID -eq 0 ]] || die "run it as root: sudo $0 $*"
if [[ -n $RESTORE ]]; then
    [[ -f $RESTORE/manifest.json ]] || die "--restore $RESTORE: no manifest.json there"
    RESTORE=$(cd "$RESTORE" && pwd)
fi
if [[ -n $INFLUX_URL && ! $INFLUX_URL =~ ^https?:// ]]; then
    die "--influx-url must start with http:// or https:// (got: $INFLUX_URL)"
fi

remove_units() {
    if have_systemd; then
        systemctl disable --now "${UNITS[@]}" 2>/dev/null || true
    fi
    for unit in "${UNITS[@]}"; do rm -f "$UNIT_DIR/$unit"; done
    rm -f "$BACKUP_DROP_IN"
    if [[ -e $INFLUX_DROP_IN ]]; then
        rm -f "$INFLUX_DROP_IN"
        rmdir --ignore-fail-on-non-empty "$(dirname "$INFLUX_DROP_IN")"
        say "InfluxDB is back to its own settings (restart it to apply)"
    fi
    if have_systemd; then systemctl daemon-reload; fi
}

if [[ $ACTION != install ]]; then
    say "removing the units and $PREFIX"
    remove_units
    rm -rf "$PREFIX"
    if [[ $ACTION == purge ]]; then
        say "removing config, secrets, data and the user"
        rm -rf "$CONF_DIR" "$STATE_DIR" /var/cache/pitelemetry "$SYSUSERS"
        for credential in "${CREDENTIALS[@]}"; do rm -f "$CREDSTORE/$credential"; done
        if id pitelemetry >/dev/null 2>&1; then userdel pitelemetry; fi
        if getent group pitelemetry >/dev/null; then groupdel pitelemetry; fi
    else
        say "kept $CONFIG, $CREDSTORE and $STATE_DIR (--purge removes them)"
    fi
    exit 0
fi

ARCH=$(dpkg --print-architecture)
case $ARCH in
    armhf|arm64|amd64) ;;
    *) say "warning: $ARCH is not tested (armhf, arm64 and amd64 are)" ;;
esac
say "installing pitelemetry on $ARCH"

# -- packages: only what is missing -------------------------------------------------------
packages=(python3-venv)
if [[ -z $INFLUX_URL ]]; then packages+=(influxdb); fi
missing=()
for package in "${packages[@]}"; do installed "$package" || missing+=("$package"); done
if ((${#missing[@]})); then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# gpiozero's GPIO backend; Raspberry Pi OS has it, plain Debian does not need it.
if ! installed python3-lgpio && available python3-lgpio; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-lgpio
fi
if ((WITH_GRAFANA)); then
    if installed grafana; then
        say "Grafana is installed"
    elif available grafana; then
        say "installing Grafana"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq grafana
        if have_systemd; then systemctl enable --now grafana-server || true; fi
    else
        cat <<'EOF'
==> Grafana's APT repository is not configured. To add it, then re-run this script:
      sudo mkdir -p /etc/apt/keyrings
      curl -fsSL https://apt.grafana.com/gpg.key | sudo tee /etc/apt/keyrings/grafana.asc >/dev/null
      echo "deb [signed-by=/etc/apt/keyrings/grafana.asc] https://apt.grafana.com stable main" \
        | sudo tee /etc/apt/sources.list.d/grafana.list
      sudo apt-get update && sudo ./install.sh --with-grafana
    Carrying on without Grafana.
EOF
    fi
fi

# -- the service user ---------------------------------------------------------------------
say "service user pitelemetry"
install -D -m0644 /dev/stdin "$SYSUSERS" <<'EOF'
# The pitelemetry collector's service user: no home, no login shell.
u pitelemetry - "pitelemetry telemetry collector" - -
# The unit's SupplementaryGroups= need these groups to exist. Raspberry Pi OS has them;
# on plain Debian they are created empty, which grants nothing.
g gpio - -
g i2c - -
g spi - -
g video - -
g systemd-journal - -
EOF
systemd-sysusers "$SYSUSERS"
for group in "${HARDWARE_GROUPS[@]}"; do
    if getent group "$group" >/dev/null && ! id -nG pitelemetry | grep -qw "$group"; then
        usermod -aG "$group" pitelemetry
    fi
done

# -- the code -----------------------------------------------------------------------------
python_minor=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ ! -x $VENV/bin/python ]] \
    || [[ $("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])') != "$python_minor" ]]; then
    say "creating $VENV (Python $python_minor)"
    rm -rf "$VENV"
    # System site packages: python3-lgpio comes from apt (it is source-only on PyPI).
    python3 -m venv --system-site-packages "$VENV"
fi
say "installing the package into $VENV"
# Debian 13's pip 25.1 crashes on a dependency marker in this venv (InvalidVersion: '');
# a current pip does not.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$SOURCE"
install -m0644 "$SOURCE/README.md" "$PREFIX/README.md"

# -- config and secrets -------------------------------------------------------------------
install -d -m0750 -o root -g pitelemetry "$CONF_DIR"
install -m0644 "$SOURCE/examples/pitelemetry.toml" "$CONFIG.example"
if [[ ! -e $CONFIG ]]; then
    say "writing $CONFIG"
    install -m0640 -o root -g pitelemetry "$SOURCE/examples/pitelemetry.toml" "$CONFIG"
    if [[ -n $INFLUX_URL ]]; then
        sed -i "s|^url = \"http://127.0.0.1:8086\"|url = \"$INFLUX_URL\"|" "$CONFIG"
    fi
else
    say "keeping your $CONFIG"
fi
install -d -m0700 "$CREDSTORE"
for credential in "${CREDENTIALS[@]}"; do
    # Empty until you fill it; systemd hands it to the service (LoadCredential=).
    [[ -e $CREDSTORE/$credential ]] || install -m0600 /dev/null "$CREDSTORE/$credential"
done

# -- the units ----------------------------------------------------------------------------
install -d "$UNIT_DIR"
for unit in "${UNITS[@]}"; do install -m0644 "$SOURCE/systemd/$unit" "$UNIT_DIR/$unit"; done
if [[ -z $INFLUX_URL ]]; then
    # The local InfluxDB, with what spares the SD card (bench/sdwear measures it).
    install -D -m0644 "$SOURCE/systemd/influxdb.service.d/50-pitelemetry.conf" "$INFLUX_DROP_IN"
fi
# The nightly backup, when [backup] to names a directory: the one place it may write.
backup_timer() {
    local to
    to=$("$VENV/bin/python" -c 'import sys, tomllib
print(tomllib.load(open(sys.argv[1], "rb")).get("backup", {}).get("to", ""))' "$CONFIG" \
        2>/dev/null || true)
    if [[ -z $to ]]; then
        rm -f "$BACKUP_DROP_IN"
        if have_systemd; then systemctl disable --quiet pitelemetry-backup.timer || true; fi
        return
    fi
    printf '[Service]\nReadWritePaths=%s\n' "$to" \
        | install -D -m0644 /dev/stdin "$BACKUP_DROP_IN"
    if [[ -d $to ]]; then
        chown pitelemetry:pitelemetry "$to"
    else
        say "warning: [backup] to = $to does not exist yet: mount the disk there"
    fi
    if have_systemd; then
        systemctl daemon-reload
        systemctl enable --now --quiet pitelemetry-backup.timer
    else
        systemctl enable pitelemetry-backup.timer >/dev/null 2>&1 || true
    fi
    say "nightly backup to $to (pitelemetry-backup.timer)"
}
ENABLE=(pitelemetry.service pitelemetry-provision.service pitelemetry-provision.path)
if have_systemd; then
    systemctl daemon-reload
    systemctl enable --quiet "${ENABLE[@]}"
    if [[ -z $INFLUX_URL ]]; then
        systemctl enable --quiet influxdb || true
        systemctl restart influxdb || true  # to apply the drop-in
    fi
    systemctl restart pitelemetry.service
    systemctl start --no-block pitelemetry-provision.path pitelemetry-provision.service
    say "pitelemetry is running: systemctl status pitelemetry, journalctl -u pitelemetry"
else
    systemctl enable "${ENABLE[@]}" >/dev/null 2>&1 || true
    say "systemd is not running here: pitelemetry starts at the next boot"
fi
if [[ -n $RESTORE ]]; then
    say "restoring $RESTORE"
    "$VENV/bin/pitelemetry" restore --config "$CONFIG" "$RESTORE"
fi
backup_timer

host=$(hostname -I 2>/dev/null | awk '{print $1}')
cat <<EOF

Done. Next:
  - edit $CONFIG (sensors: run '$VENV/bin/pitelemetry sensors')
    then: sudo systemctl reload pitelemetry
  - for Grafana dashboards, put a service-account token in $CREDSTORE/grafana.token
    then: sudo systemctl start pitelemetry-provision
  - Grafana: http://${host:-this-pi}:3000   status: $VENV/bin/pitelemetry status
EOF
