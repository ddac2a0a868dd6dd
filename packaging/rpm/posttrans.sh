# %posttrans: after the whole transaction (install or upgrade; no argument).
# /usr/bin/cert-renew is the cert-rotator executable under another name (it
# dispatches on the name it is run as). cargo-generate-rpm 0.21.1 cannot put a
# symlink into the package, so it is made here; %posttrans and not %post because
# an upgrade from a package that shipped cert-renew as a file of its own removes
# that file after the new package's %post, but before %posttrans. A cert-renew
# that is not a symlink to cert-rotator (something the operator put there) is
# left alone (and %postun leaves it too).
if [ ! -e /usr/bin/cert-renew ] && [ ! -L /usr/bin/cert-renew ]; then
    ln -s cert-rotator /usr/bin/cert-renew
fi
