#!/usr/bin/env bash
# System packages the tests need on Debian 12 (bookworm): Chromium for the browser tests, and
# Mesa's software Vulkan driver from bookworm-backports (SAPIEN 3 / ManiSkill3 needs
# VK_KHR_external_semaphore_fd, which lavapipe has only from Mesa 24.3; bookworm's own 22.3 fails
# with "failed to find a rendering device"). Skips what is already installed.
set -euo pipefail
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need=()
dpkg -s chromium >/dev/null 2>&1 || need+=(chromium)
dpkg -s ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
case "$mesa" in 2[4-9].*|[3-9]*) ;; *) need+=(mesa) ;; esac
[ ${#need[@]} -eq 0 ] && exit 0
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null <<X
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
X
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q -t bookworm-backports mesa-vulkan-drivers libvulkan1
$SUDO apt-get install -y -q chromium ffmpeg
