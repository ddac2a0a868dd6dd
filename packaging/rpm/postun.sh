# %postun: $1 is 0 on erase, 1 or more on upgrade.
# Nothing here touches /var/lib/cert-rotator or the node's certificates.
if [ "$1" -eq 0 ]; then
    # rpm removed the package's files (a modified config.toml is kept as
    # config.toml.rpmsave); the directories go too if nothing is left in them.
    rmdir /etc/cert-rotator/config.d 2>/dev/null || :
    # The cert-renew symlink %posttrans made (not in the package's file list):
    # removed only if it is still ours, a symlink to cert-rotator.
    if [ -L /usr/bin/cert-renew ] && [ "$(readlink /usr/bin/cert-renew)" = cert-rotator ]; then
        rm -f /usr/bin/cert-renew
    fi
    rmdir /etc/cert-rotator 2>/dev/null || :
    rmdir /usr/share/doc/cert-rotator 2>/dev/null || :
    rmdir /usr/share/cert-rotator/prometheus /usr/share/cert-rotator 2>/dev/null || :
fi
# systemd forgets the removed (or picks up the changed) unit files.
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
