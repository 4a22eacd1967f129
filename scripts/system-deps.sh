#!/usr/bin/env bash
# System packages the tests use: Tesseract (OCR of scanned pages), Chromium (the UI browser test).
# Installs only what is missing; needs root (or sudo) and Debian's apt.
set -euo pipefail
need=()
command -v tesseract >/dev/null || need+=(tesseract-ocr tesseract-ocr-eng)
tesseract --list-langs 2>/dev/null | grep -qx osd || need+=(tesseract-ocr-osd)  # orientation of rotated scans
[ -x /usr/bin/chromium ] || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}" >&2
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "warning: no apt-get; install ${need[*]} yourself (tests that need them will skip)" >&2
fi
