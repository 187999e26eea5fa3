# shellcheck shell=bash
# Host side, part 2: the guest's initramfs, as two uncompressed newc cpio archives that
# the kernel unpacks one after the other (decompressing under TCG would cost boot time):
#
#   base-<key>.cpio     busybox, nbd-client, e2fsprogs, btrfs-progs, xfsprogs, util-linux tools, GNU
#                       dd and df, openssl (the tls test's certificates), kernel modules (the boot's and the sets tests load),
#                       their shared libraries. Cached: rebuilt only when one of those
#                       files (or this script) changes.
#   overlay-<key>.cpio  /init, the guest library and tests, and the freshly built portalbd
#                       binaries with their shared libraries (ldd). Rebuilt whenever any
#                       of them changes, which is every rebuild of portalbd.
#
# Sourced by run.sh; expects VM_ROOT, VM_CACHE, VM_KERNEL_DIR, VM_KERNEL_VERSION, VM_BUSYBOX
# and die/note.

# Host binaries that go into the guest's /sbin (the real tools; busybox's applets, in
# /bin, come later in PATH, so e.g. e2fsprogs' mke2fs is the one that runs).
VM_GUEST_TOOLS=(nbd-client mke2fs e2fsck tune2fs dumpe2fs blkdiscard fstrim blockdev dd df
  mkfs.btrfs btrfs openssl fio resize2fs blkid mount umount mkfs.xfs xfs_growfs xfs_repair)

# Prints the shared libraries (absolute paths, the loader included) that $1 needs.
vm_libs_of() {
  local out
  out=$(ldd "$1" 2>&1) || { [[ $out == *"not a dynamic executable"* ]] && return 0; die "ldd $1: $out"; }
  if grep -q "not found" <<<"$out"; then
    die "ldd $1: missing libraries: $(grep "not found" <<<"$out" | tr -s ' \t' ' ')"
  fi
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$out"
}

# Copies file $1 to $2/$1-as-path (or to $2/$3 when given), following symlinks.
vm_stage() {
  local src=$1 root=$2 dst=${3:-$1}
  mkdir -p "$root/$(dirname "$dst")"
  cp -L "$src" "$root/$dst"
}

# Stages binary $1 at $2/$3 together with its libraries at their own paths.
vm_stage_binary() {
  local bin=$1 root=$2 dst=$3 lib libs
  vm_stage "$bin" "$root" "$dst"
  libs=$(vm_libs_of "$bin") || exit 1
  for lib in $libs; do
    [ -e "$root/$lib" ] || vm_stage "$lib" "$root"
  done
}

# A content key over files: their paths and bytes.
vm_key_of_files() {
  local f
  for f in "$@"; do
    printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -c1-64)"
  done | sha256sum | cut -c1-16
}

# Packs directory $1 into the newc archive $2 (owner root, sorted, reproducible order).
vm_pack() {
  local dir=$1 out=$2
  (cd "$dir" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$out.tmp"
  mv "$out.tmp" "$out"
}

# Sets VM_BASE_CPIO.
vm_build_base() {
  local files=("$VM_BUSYBOX" "$VM_ROOT/host/image.sh" /etc/mke2fs.conf /usr/lib/ssl/openssl.cnf)
  local t path lib libs
  local -a bins=()
  for t in "${VM_GUEST_TOOLS[@]}"; do
    path=$(command -v "$t") || die "guest tool $t not found on the host"
    path=$(readlink -f "$path")
    bins+=("$path")
    files+=("$path")
    libs=$(vm_libs_of "$path") || exit 1
    for lib in $libs; do files+=("$lib"); done
  done
  local m lists=("$VM_KERNEL_DIR"/modules*.load) list
  for list in "${lists[@]}"; do
    while read -r m; do files+=("$VM_KERNEL_DIR/modules/$m"); done <"$list"
    files+=("$list")
  done
  local key
  key=$(vm_key_of_files "${files[@]}")
  VM_BASE_CPIO="$VM_CACHE/base-$key.cpio"
  [ -s "$VM_BASE_CPIO" ] && return 0

  note "building base initramfs ($key)"
  local root="$VM_CACHE/.base-root"
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,etc,dev,proc,sys,tmp,run,mnt,store,usr/bin,usr/sbin,usr/local/bin}
  vm_stage "$VM_BUSYBOX" "$root" /bin/busybox
  ln -s busybox "$root/bin/sh"
  local i
  for i in "${!VM_GUEST_TOOLS[@]}"; do
    vm_stage_binary "${bins[$i]}" "$root" "/sbin/${VM_GUEST_TOOLS[$i]}"
  done
  ln -s mke2fs "$root/sbin/mkfs.ext4"
  ln -s e2fsck "$root/sbin/fsck.ext4"
  vm_stage /etc/mke2fs.conf "$root"
  # openssl req reads its default configuration file and stops without it.
  vm_stage /usr/lib/ssl/openssl.cnf "$root"
  local moddir="$root/lib/modules/$VM_KERNEL_VERSION"
  mkdir -p "$moddir"
  for list in "${lists[@]}"; do
    while read -r m; do cp "$VM_KERNEL_DIR/modules/$m" "$moddir/"; done <"$list"
    cp "$list" "$moddir/"
  done
  rm -f "$VM_CACHE"/base-*.cpio
  vm_pack "$root" "$VM_BASE_CPIO"
  rm -rf "$root"
}

# Portalbd's binaries that exist in the build directory go into /usr/local/bin; the ones
# that do not exist yet are simply absent (tests that need them declare it and are
# reported as pending). Sets VM_OVERLAY_CPIO and VM_GUEST_BINARIES.
VM_PRODUCT_BINARIES=(portalbd portalctl trace-record trace-bench portalbd-csi csi-call)
vm_build_overlay() {
  local build=$1 b lib libs
  local files=("$VM_ROOT/host/image.sh" "$VM_ROOT/guest/init" "$VM_ROOT/guest/lib.sh")
  local tests=("$VM_ROOT"/tests/*.sh)
  files+=("${tests[@]}")
  VM_GUEST_BINARIES=()
  for b in "${VM_PRODUCT_BINARIES[@]}"; do
    [ -x "$build/$b" ] || continue
    VM_GUEST_BINARIES+=("$b")
    files+=("$build/$b")
    libs=$(vm_libs_of "$build/$b") || exit 1
    for lib in $libs; do files+=("$lib"); done
  done
  local key
  key=$(vm_key_of_files "${files[@]}")
  VM_OVERLAY_CPIO="$VM_CACHE/overlay-$key.cpio"
  [ -s "$VM_OVERLAY_CPIO" ] && return 0

  note "building overlay initramfs ($key: ${VM_GUEST_BINARIES[*]})"
  local root="$VM_CACHE/.overlay-root"
  rm -rf "$root"
  mkdir -p "$root/vmtests/tests" "$root/usr/local/bin"
  install -m 755 "$VM_ROOT/guest/init" "$root/init"
  install -m 644 "$VM_ROOT/guest/lib.sh" "$root/vmtests/lib.sh"
  install -m 644 "${tests[@]}" "$root/vmtests/tests/"
  for b in "${VM_GUEST_BINARIES[@]}"; do
    vm_stage_binary "$build/$b" "$root" "/usr/local/bin/$b"
  done
  rm -f "$VM_CACHE"/overlay-*.cpio
  vm_pack "$root" "$VM_OVERLAY_CPIO"
  rm -rf "$root"
}

# The initrd qemu loads: base followed by overlay. Sets VM_INITRD.
vm_build_initrd() {
  vm_build_base
  vm_build_overlay "$1"
  VM_INITRD="$VM_CACHE/initrd-$(basename "$VM_BASE_CPIO" .cpio)-$(basename "$VM_OVERLAY_CPIO" .cpio).cpio"
  if [ ! -s "$VM_INITRD" ]; then
    rm -f "$VM_CACHE"/initrd-*.cpio
    cat "$VM_BASE_CPIO" "$VM_OVERLAY_CPIO" >"$VM_INITRD.tmp"
    mv "$VM_INITRD.tmp" "$VM_INITRD"
  fi
}
