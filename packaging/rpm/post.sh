# %post: $1 is 1 on installation, 2 or more on upgrade.
# Drop-in directory for local configuration (cargo-generate-rpm cannot put an
# empty directory into the package).
mkdir -p /etc/cert-rotator/config.d
# The units are neither enabled nor started (docs/packaging.md): systemd only
# has to see the new or changed unit files.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
