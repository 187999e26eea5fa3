# shellcheck shell=bash
# Host side, part 1: packages, the guest kernel and the cached base initramfs.
# Sourced by run.sh; expects VM_ROOT, VM_CACHE and the helpers die/skip77/note from it.
#
# What comes from where:
#   apt-get install   qemu-system-x86 cpio kmod xz-utils nbd-client e2fsprogs util-linux
#                     coreutils btrfs-progs openssl (host tools, and guest binaries copied with
#                     their ldd libs)
#   apt-get download  linux-image-<version>-amd64 (never installed on the host) and
#                     busybox-static (static, so the guest needs nothing else for it),
#                     unpacked with dpkg-deb -x into $VM_CACHE.

# Host packages. Besides qemu, cpio (archive), kmod (depmod/modprobe --show-depends) and
# xz-utils (kernel payload), these provide the guest's binaries: nbd-client, mke2fs,
# e2fsck, resize2fs, blkdiscard, fstrim, blockdev, blkid, GNU dd and df, util-linux's mount
# and umount (portalbd-csi runs them in csi-node), mkfs.btrfs and btrfs, and openssl
# (the tls test makes its certificates in the guest), fio (reattach's verified writes),
# mkfs.xfs, xfs_growfs and xfs_repair (csi-grow-xfs-btrfs: portalbd-csi formats and grows xfs).
VM_HOST_PACKAGES=(qemu-system-x86 cpio kmod xz-utils nbd-client e2fsprogs util-linux mount
  coreutils btrfs-progs openssl fio xfsprogs)
# Host commands that must exist once the packages are installed.
VM_HOST_COMMANDS=(qemu-system-x86_64 cpio depmod modprobe xz nbd-client mke2fs e2fsck blkdiscard
  fstrim blockdev dd df mkfs.btrfs btrfs openssl fio ldd dpkg-deb sha256sum setpriv flock
  resize2fs blkid mount umount mkfs.xfs xfs_growfs xfs_repair)

vm_sudo=()

# Runs apt-get as root (directly or through passwordless sudo). Never prompts.
vm_apt() {
  DEBIAN_FRONTEND=noninteractive "${vm_sudo[@]}" apt-get "$@"
}

# Decides whether we can install at all; exits 77 (skipped) when we cannot.
vm_need_apt() {
  command -v apt-get >/dev/null 2>&1 || skip77 "apt-get is not available: cannot install $*"
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      vm_sudo=(sudo -n)
    else
      skip77 "not root and no passwordless sudo: cannot install $*"
    fi
  fi
}

vm_apt_updated=0
vm_apt_update() {
  [ "$vm_apt_updated" = 1 ] && return 0
  note "apt-get update"
  vm_apt update -qq >"$VM_CACHE/apt-update.log" 2>&1 ||
    skip77 "apt-get update failed (package archive unreachable?): $(tail -n 3 "$VM_CACHE/apt-update.log")"
  vm_apt_updated=1
}

vm_install_host_packages() {
  local missing=() p
  for p in "${VM_HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    vm_need_apt "${missing[*]}"
    vm_apt_update
    note "apt-get install ${missing[*]}"
    vm_apt install -y -qq --no-install-recommends "${missing[@]}" >"$VM_CACHE/apt-install.log" 2>&1 ||
      skip77 "apt-get install ${missing[*]} failed: $(tail -n 3 "$VM_CACHE/apt-install.log")"
  fi
  local c
  for c in "${VM_HOST_COMMANDS[@]}"; do
    # Packages installed, command still missing: that is a bug here, not a skip.
    command -v "$c" >/dev/null 2>&1 || PATH="$PATH:/sbin:/usr/sbin" command -v "$c" >/dev/null ||
      die "command '$c' not found although its package is installed"
  done
  export PATH="$PATH:/sbin:/usr/sbin"
}

# Downloads package $1 (exact name) into $VM_CACHE/debs unless a .deb of its candidate
# version is already there; prints the .deb's path.
vm_fetch_deb() {
  local pkg=$1 version deb
  command -v apt-cache >/dev/null 2>&1 || skip77 "apt-cache is not available: cannot fetch $pkg"
  version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    vm_need_apt "$pkg"
    vm_apt_update
    version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    { [ -n "$version" ] && [ "$version" != "(none)" ]; } ||
      skip77 "package $pkg has no installation candidate"
  fi
  # Debian file names drop the epoch ("1:") of the version.
  deb="$VM_CACHE/debs/${pkg}_${version#*:}_amd64.deb"
  if [ ! -s "$deb" ]; then
    mkdir -p "$VM_CACHE/debs"
    command -v apt-get >/dev/null 2>&1 || skip77 "apt-get is not available: cannot download $pkg"
    note "apt-get download $pkg=$version"
    # apt drops to the _apt user for downloads; it cannot write into a root-only cache dir,
    # so download into a world-writable scratch dir and move the file.
    local tmp
    tmp=$(mktemp -d "$VM_CACHE/debs/.dl.XXXXXX")
    chmod 777 "$tmp"
    if ! (cd "$tmp" && apt-get download -q "$pkg=$version" >"$VM_CACHE/apt-download.log" 2>&1); then
      # A stale package list names a version the archive no longer has: refresh once.
      vm_need_apt "$pkg"
      vm_apt_update
      version=$(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
      deb="$VM_CACHE/debs/${pkg}_${version#*:}_amd64.deb"
      (cd "$tmp" && apt-get download -q "$pkg=$version" >"$VM_CACHE/apt-download.log" 2>&1) ||
        { rm -rf "$tmp"; skip77 "apt-get download $pkg failed: $(tail -n 3 "$VM_CACHE/apt-download.log")"; }
    fi
    mv "$tmp"/*.deb "$deb"
    rm -rf "$tmp"
  fi
  echo "$deb"
}

# Module sets that tests load on demand (guest/lib.sh load_modules SET): set name ->
# the modules modprobe resolves it from. A cached kernel directory without one of these
# sets' load files is rebuilt.
declare -A VM_MODULE_SETS=([btrfs]="btrfs" [xfs]="xfs")

vm_module_sets_cached() {
  local set
  for set in "${!VM_MODULE_SETS[@]}"; do
    [ -s "$VM_KERNEL_DIR/modules.$set.load" ] || return 1
  done
}

# Writes load list $2: the modules (dependencies and softdeps first, as modprobe orders
# them) that modules $3... need from the unpacked kernel package at $1, uncompressed into
# the modules/ directory next to $2. A module already in an earlier list
# ($VM_MODULES_SEEN) is not repeated.
vm_module_order() {
  local x=$1 list=$2 m line path name
  shift 2
  : >"$list"
  for m in "$@"; do
    modprobe -C /dev/null -d "$x" -S "$VM_KERNEL_VERSION" --show-depends "$m" |
      while read -r line; do
        case $line in insmod\ *) ;; *) continue ;; esac
        path=${line#insmod }
        path=${path%% *}
        echo "$path"
      done >"$x/order.$m" || die "modprobe --show-depends $m failed"
    [ -s "$x/order.$m" ] || die "module $m not found in the kernel package"
    while read -r path; do
      name=$(basename "$path")
      case $VM_MODULES_SEEN in *" $name "*) continue ;; esac
      VM_MODULES_SEEN="$VM_MODULES_SEEN$name "
      case $name in
        *.ko) cp "$path" "$(dirname "$list")/modules/$name" ;;
        *.ko.xz) xz -dc "$path" >"$(dirname "$list")/modules/${name%.xz}"; name=${name%.xz} ;;
        *.ko.zst) zstd -qdc "$path" >"$(dirname "$list")/modules/${name%.zst}"; name=${name%.zst} ;;
        *.ko.gz) gzip -dc "$path" >"$(dirname "$list")/modules/${name%.gz}"; name=${name%.gz} ;;
        *) die "unexpected module file $path" ;;
      esac
      echo "$name" >>"$list"
    done <"$x/order.$m"
  done
}

# The kernel: resolves the linux-image-amd64 metapackage to its linux-image-<ver>-amd64
# package, downloads it and keeps, in $VM_CACHE/kernel-<ver>/, the uncompressed vmlinux
# (microvm boots the ELF directly; decompressing the bzImage under TCG costs ~3 s per boot)
# and the few modules the guest needs with their load order.
# Sets VM_KERNEL_DIR and VM_KERNEL_VERSION.
vm_prepare_kernel() {
  local pkg
  command -v apt-cache >/dev/null 2>&1 || skip77 "apt-cache is not available: cannot find the kernel"
  pkg=${VMTEST_KERNEL_PACKAGE:-}
  if [ -z "$pkg" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
      awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    if [ -z "$pkg" ]; then
      vm_need_apt linux-image-amd64
      vm_apt_update
      pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
      [ -n "$pkg" ] || skip77 "cannot resolve linux-image-amd64 to a kernel package"
    fi
  fi
  local deb
  deb=$(vm_fetch_deb "$pkg") || exit $?
  VM_KERNEL_DIR="$VM_CACHE/kernel-$(basename "$deb" .deb)"
  if [ -s "$VM_KERNEL_DIR/vmlinux" ] && [ -s "$VM_KERNEL_DIR/modules.load" ] && vm_module_sets_cached; then
    VM_KERNEL_VERSION=$(cat "$VM_KERNEL_DIR/version")
    return 0
  fi
  note "unpacking $(basename "$deb")"
  local x="$VM_CACHE/.unpack"
  rm -rf "$x" "$VM_KERNEL_DIR.tmp"
  mkdir -p "$x" "$VM_KERNEL_DIR.tmp"
  dpkg-deb -x "$deb" "$x"
  local vmlinuz
  vmlinuz=$(find "$x/boot" -name 'vmlinuz-*' | head -n 1)
  [ -n "$vmlinuz" ] || die "no /boot/vmlinuz-* in $deb"
  VM_KERNEL_VERSION=${vmlinuz##*/vmlinuz-}
  vm_extract_vmlinux "$vmlinuz" "$VM_KERNEL_DIR.tmp/vmlinux"

  # The package ships no modules.dep: generate it, then let modprobe order the loads
  # (dependencies and softdeps first; crc32c is only a softdep of ext4). modules.load is
  # what the init loads at every boot; modules.SET.load are the extra modules a test loads
  # itself (guest/lib.sh load_modules SET), so that the boots that do not need them do not
  # pay for them (raid6_pq and xor benchmark their algorithms when they load: the btrfs
  # set took 0.8-1.7 s to load under TCG).
  depmod -b "$x" "$VM_KERNEL_VERSION"
  mkdir -p "$VM_KERNEL_DIR.tmp/modules"
  VM_MODULES_SEEN=" "
  vm_module_order "$x" "$VM_KERNEL_DIR.tmp/modules.load" nbd ext4 crc32c_generic
  local set boot_seen=$VM_MODULES_SEEN
  for set in "${!VM_MODULE_SETS[@]}"; do
    # Each set lists every module it needs beyond the boot's, even one another set has
    # too (btrfs and xfs both need libcrc32c): a test loads only its own sets.
    VM_MODULES_SEEN=$boot_seen
    # shellcheck disable=SC2086 # a list of module names
    vm_module_order "$x" "$VM_KERNEL_DIR.tmp/modules.$set.load" ${VM_MODULE_SETS[$set]}
  done
  echo "$VM_KERNEL_VERSION" >"$VM_KERNEL_DIR.tmp/version"
  rm -rf "$x" "$VM_KERNEL_DIR"
  mv "$VM_KERNEL_DIR.tmp" "$VM_KERNEL_DIR"
  vm_prune "kernel-linux-image-*" "$VM_KERNEL_DIR" "debs/linux-image-*.deb" "$deb"
}

# Removes cache entries matching glob $1 other than $2, and files matching $3 other than
# $4: what an older package version left behind.
vm_prune() {
  local f
  for f in "$VM_CACHE"/$1 "$VM_CACHE"/$3; do
    [ -e "$f" ] || continue
    [ "$f" = "$2" ] || [ "$f" = "$4" ] || rm -rf "$f"
  done
}

# Extracts the ELF kernel from a bzImage: finds each compressed-payload magic (the
# approach of the kernel's scripts/extract-vmlinux) and keeps the first candidate that
# decompresses to an ELF file.
vm_extract_vmlinux() {
  local in=$1 out=$2 magic tool off
  # (Bash strings stop at NUL, so xz's magic is matched without its trailing zero byte.)
  for spec in $'\xfd7zXZ:xz -dc' $'\x1f\x8b\x08:gzip -dc' $'\x28\xb5\x2f\xfd:zstd -qdc'; do
    magic=${spec%%:*}
    tool=${spec#*:}
    command -v "${tool%% *}" >/dev/null 2>&1 || continue
    for off in $(LC_ALL=C grep -obUaF -- "$magic" "$in" 2>/dev/null | cut -d: -f1); do
      # Trailing bytes after the payload make the decompressor complain: judge the
      # output, not the exit status.
      tail -c +$((off + 1)) "$in" | $tool >"$out" 2>/dev/null || true
      if [ "$(head -c 4 "$out" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
        return 0
      fi
    done
  done
  rm -f "$out"
  die "could not extract an uncompressed vmlinux from $in"
}

# busybox-static: downloaded and unpacked (a static binary needs no libraries, and the
# host's own busybox, if any, is left alone). Sets VM_BUSYBOX.
vm_prepare_busybox() {
  local deb dir
  deb=$(vm_fetch_deb busybox-static) || exit $?
  dir="$VM_CACHE/$(basename "$deb" .deb)"
  if [ ! -x "$dir/bin/busybox" ]; then
    rm -rf "$dir.tmp"
    mkdir -p "$dir.tmp"
    dpkg-deb -x "$deb" "$dir.tmp/x"
    mkdir -p "$dir.tmp/bin"
    cp "$dir.tmp/x/bin/busybox" "$dir.tmp/bin/busybox"
    rm -rf "$dir.tmp/x" "$dir"
    mv "$dir.tmp" "$dir"
    vm_prune "busybox-static_*" "$dir" "debs/busybox-static_*.deb" "$deb"
  fi
  # shellcheck disable=SC2034 # used by image.sh
  VM_BUSYBOX="$dir/bin/busybox"
}
