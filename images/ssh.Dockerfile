# Layer over the systemd image for hosts reached as real ones are: sshd, sudo and the non-root
# user of inventory/example (deploy), whose key the scenario installs. Built by scripts/build-image.sh.
ARG SYSTEMD_IMAGE
FROM ${SYSTEMD_IMAGE}
COPY ssh-host-keys.conf /etc/systemd/system/ssh.service.d/lbi-host-keys.conf
COPY sshd-lbi.conf /etc/ssh/sshd_config.d/lbi.conf
# Host keys are made at first boot: containers of one image must not share them.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server \
 && apt-get clean \
 && rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub \
 && useradd --create-home --shell /bin/bash deploy \
 && install -d -m 0700 -o deploy -g deploy /home/deploy/.ssh \
 && echo 'deploy ALL=(ALL:ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy \
 && chmod 0440 /etc/sudoers.d/deploy \
 && systemctl enable ssh.service
