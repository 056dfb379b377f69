#!/bin/sh
# Install Debian's `chromium` package (and a font, so screenshots have legible text) for
# the browser tests (tests/web/test_browser.py) when chromium is missing. Needs root and
# apt-get; otherwise says what to do and exits 0 (the browser tests skip outside CI).
# Never a Playwright browser download: the tests drive /usr/bin/chromium.
set -eu

command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium is missing: install Debian's chromium package as root" \
         "(apt-get install --no-install-recommends chromium fonts-dejavu-core)" >&2
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
