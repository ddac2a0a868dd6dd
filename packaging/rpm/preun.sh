# %preun: $1 is 0 on erase, 1 or more on upgrade.
# On erase: disable the timer (if the operator enabled it), so that no
# enablement symlink points at a removed unit, and stop the timer and a pass
# that may be running. On upgrade nothing is stopped: a pass in progress
# finishes with the old binary.
if [ "$1" -eq 0 ]; then
    systemctl --no-reload disable cert-rotator.timer >/dev/null 2>&1 || :
    if [ -d /run/systemd/system ]; then
        systemctl stop cert-rotator.timer cert-rotator.service >/dev/null 2>&1 || :
    fi
fi
