#!/usr/bin/env bash
# provision.sh: make QEMU with vfio-user-pci and a Debian 13 guest kernel
# available under one cache directory, idempotently.
#
#   YCQ_CACHE=/path qemu/provision.sh      (default: $HOME/.cache/ycq)
#
# Result, under $YCQ_CACHE:
#   trixie-root/   Debian 13 (trixie) minbase root with qemu-system-x86 from
#                  trixie-backports; QEMU runs from it through the root's own
#                  dynamic loader, without chroot (see qemu/env.go).
#   kernel/        the unpacked linux-image-<ver>-amd64 package:
#                  boot/vmlinuz-<ver>, lib/modules/<ver>/... with modules.dep.
#   stamps/        one file per finished step; a step whose stamp is missing
#                  is redone from its start, so an interrupted run recovers.
#
# YCQ_SKIP_QEMU=1 makes it do nothing.
#
# Needs root (re-runs itself through `sudo -n` otherwise), Debian's package
# mirrors, and nothing else. The mirror is debootstrap's default; this file
# names no host.
set -euo pipefail
export PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

YCQ_CACHE=${YCQ_CACHE:-$HOME/.cache/ycq}
SUITE=trixie
ROOT=$YCQ_CACHE/trixie-root
KERNEL_DIR=$YCQ_CACHE/kernel
STAMPS=$YCQ_CACHE/stamps
ARCH_LIB=usr/lib/x86_64-linux-gnu

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

# YCQ_SKIP_QEMU=1 (as in the README): no guest tier here, so nothing to
# provision; the guest tests skip instead of failing.
if [ "${YCQ_SKIP_QEMU:-}" = 1 ]; then
  log "YCQ_SKIP_QEMU=1: not provisioning QEMU or the guest kernel"
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
		exec sudo -n YCQ_CACHE="$YCQ_CACHE" bash "$0" "$@"
	fi
	die "must run as root (debootstrap and chroot need it) and sudo -n is not available"
fi

mkdir -p "$YCQ_CACHE" "$STAMPS"

# One provisioning run per cache at a time; a second one waits, then finds the
# stamps and does nothing.
exec 9>"$YCQ_CACHE/.provision.lock"
if ! flock -n 9; then
	log "another provisioning run holds $YCQ_CACHE/.provision.lock; waiting"
	flock 9
fi

# mounted lists what is mounted inside ROOT, innermost first.
mounted() {
	awk -v root="$(realpath -m "$ROOT")" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}

unmount_root() {
	local m
	for m in $(mounted); do
		umount "$m" 2>/dev/null || umount -l "$m" || log "warning: cannot unmount $m"
	done
}

mount_root() {
	mount -t proc proc "$ROOT/proc"
	mount --bind /dev "$ROOT/dev"
	mount --bind /dev/pts "$ROOT/dev/pts"
}

# remove_tree deletes a partial result, never crossing into a mount (a bind
# mount of the host's /dev left by a killed run must not be emptied).
remove_tree() {
	local dir=$1
	[[ -e $dir ]] || return 0
	unmount_root
	if [[ -n $(mounted) ]]; then
		die "cannot remove $dir: still mounted: $(mounted | tr '\n' ' ')"
	fi
	rm -rf --one-file-system "$dir"
}

on_exit() {
	local rc=$?
	unmount_root
	if [[ $rc -ne 0 ]]; then
		log "FAILED (exit $rc); finished steps keep their stamps, rerun to continue"
	fi
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

in_root() {
	chroot "$ROOT" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
		DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 "$@"
}

SUMMARY=()

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME FUNCTION: runs FUNCTION unless NAME's stamp exists; records time.
step() {
	local name=$1 fn=$2 start end
	if [[ -e $STAMPS/$name ]]; then
		SUMMARY+=("$(printf '%-16s cached' "$name")")
		return 0
	fi
	log "step $name: start"
	start=$(date +%s.%N)
	"$fn"
	end=$(date +%s.%N)
	date -u +%FT%TZ >"$STAMPS/$name"
	SUMMARY+=("$(printf '%-16s done in %s s' "$name" "$(elapsed "$start" "$end")")")
	log "step $name: done"
}

# --- steps -----------------------------------------------------------------

host_packages() {
	local want=() cmd pkg
	for cmd in debootstrap:debootstrap; do
		pkg=${cmd#*:}
		command -v "${cmd%%:*}" >/dev/null || want+=("$pkg")
	done
	# debootstrap verifies trixie against the host's archive keyring.
	[[ -e /usr/share/keyrings/debian-archive-keyring.gpg ]] || want+=(debian-archive-keyring)
	if [[ ${#want[@]} -gt 0 ]]; then
		log "installing host packages: ${want[*]}"
		apt-get update -q
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${want[@]}"
	fi
}

debootstrap_root() {
	host_packages
	remove_tree "$ROOT"
	# No mirror argument: debootstrap's default.
	debootstrap --variant=minbase "$SUITE" "$ROOT"
}

# add_backports reuses the mirror URL debootstrap wrote.
add_backports() {
	local url f list=$ROOT/etc/apt/sources.list.d/ycq-backports.list
	local lists=() sources=()
	for f in "$ROOT/etc/apt/sources.list" "$ROOT"/etc/apt/sources.list.d/*.list; do
		[[ -f $f && $f != "$list" ]] && lists+=("$f")
	done
	for f in "$ROOT"/etc/apt/sources.list.d/*.sources; do
		[[ -f $f ]] && sources+=("$f")
	done
	url=
	if [[ ${#lists[@]} -gt 0 ]]; then
		url=$(awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }' "${lists[@]}")
	fi
	if [[ -z $url && ${#sources[@]} -gt 0 ]]; then
		url=$(awk '$1 == "URIs:" { print $2; exit }' "${sources[@]}")
	fi
	[[ -n $url ]] || die "no mirror URL found in $ROOT/etc/apt/sources.list{,.d}"
	log "backports from $url"
	echo "deb $url $SUITE-backports main" >"$list.tmp"
	mv "$list.tmp" "$list"
}

install_qemu() {
	cp /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true
	# Nothing in the root may start a service.
	printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
	chmod 755 "$ROOT/usr/sbin/policy-rc.d"
	mount_root
	in_root apt-get update -q
	in_root apt-get install -y -q --no-install-recommends -t "$SUITE-backports" qemu-system-x86
	# kmod for depmod in the kernel step.
	in_root apt-get install -y -q --no-install-recommends kmod
	in_root apt-get clean
	unmount_root
}

# unpack_kernel takes the package linux-image-amd64 depends on (the real
# linux-image-<ver>-amd64, from trixie proper, not backports), unpacks it and
# generates modules.dep, which the package leaves to its postinst.
unpack_kernel() {
	local pkg ver stage=/var/tmp/ycq-kernel
	remove_tree "$KERNEL_DIR"
	mount_root
	pkg=$(in_root apt-cache depends linux-image-amd64 |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9].*-amd64$/ { print $2; exit }')
	[[ -n $pkg ]] || die "cannot resolve the package behind linux-image-amd64"
	log "kernel package $pkg"
	in_root rm -rf "$stage" /var/tmp/ycq-deb
	in_root mkdir -p "$stage" /var/tmp/ycq-deb
	in_root sh -c "cd /var/tmp/ycq-deb && apt-get download -q $pkg"
	in_root sh -c "dpkg-deb -x /var/tmp/ycq-deb/*.deb $stage"
	# trixie's packages put modules under /usr/lib/modules; older ones under
	# /lib/modules. The cache always has lib/modules/<ver>.
	local m moddir mods=()
	for m in "$ROOT$stage"/lib/modules/* "$ROOT$stage"/usr/lib/modules/*; do
		[[ -d $m ]] && mods+=("$m")
	done
	[[ ${#mods[@]} -eq 1 ]] || die "want one lib/modules/<version> in $pkg, found ${#mods[@]}"
	ver=$(basename "${mods[0]}")
	moddir=$(dirname "${mods[0]#"$ROOT$stage"}")
	[[ -e $ROOT$stage/boot/vmlinuz-$ver ]] || die "no boot/vmlinuz-$ver in $pkg"
	in_root depmod -b "$stage" -m "$moddir" "$ver"
	[[ -s $ROOT$stage$moddir/$ver/modules.dep ]] || die "depmod wrote no modules.dep"
	if [[ $moddir != /lib/modules ]]; then
		mkdir -p "$ROOT$stage/lib"
		mv "$ROOT$stage$moddir" "$ROOT$stage/lib/modules"
		rmdir -p --ignore-fail-on-non-empty "$ROOT$stage$(dirname "$moddir")"
	fi
	in_root rm -rf /var/tmp/ycq-deb
	unmount_root
	mv "$ROOT$stage" "$KERNEL_DIR"
}

# --- QEMU without chroot ------------------------------------------------------

qemu() {
	QEMU_MODULE_DIR=$ROOT/$ARCH_LIB/qemu \
		"$ROOT/$ARCH_LIB/ld-linux-x86-64.so.2" --library-path "$ROOT/$ARCH_LIB" \
		"$ROOT/usr/bin/qemu-system-x86_64" -L "$ROOT/usr/share/qemu" -L "$ROOT/usr/share/seabios" "$@"
}

verify() {
	local version devices
	version=$(qemu --version | head -1) || die "QEMU from $ROOT does not run"
	devices=$(qemu -device help) || die "qemu -device help failed"
	grep -q '"vfio-user-pci"' <<<"$devices" ||
		die "$version has no vfio-user-pci device; remove $STAMPS/install_qemu and rerun"
	local kernels=("$KERNEL_DIR"/boot/vmlinuz-*)
	[[ -e ${kernels[0]} ]] || die "no kernel under $KERNEL_DIR/boot"
	log "QEMU:   $version (has vfio-user-pci)"
	log "kernel: ${kernels[0]}"
}

START=$(date +%s.%N)
log "cache $YCQ_CACHE"
step debootstrap debootstrap_root
step backports add_backports
step install_qemu install_qemu
step kernel unpack_kernel
verify
for line in "${SUMMARY[@]}"; do log "  $line"; done
log "total $(elapsed "$START" "$(date +%s.%N)") s"
