# Layer that turns a debootstrapped Debian root file system into a host-like
# container: systemd as PID 1, dbus, nothing else. Built by scripts/build-image.sh.
ARG ROOTFS_IMAGE
FROM ${ROOTFS_IMAGE}
ENV container=docker
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      systemd systemd-sysv dbus \
 && apt-get clean \
 && systemctl mask getty.target console-getty.service systemd-udevd.service \
      systemd-udev-trigger.service systemd-firstboot.service sys-kernel-debug.mount \
 && rm -f /etc/machine-id /var/lib/dbus/machine-id && touch /etc/machine-id
STOPSIGNAL SIGRTMIN+3
CMD ["/lib/systemd/systemd"]
