# shellcheck shell=sh
# vm-test basic: the Linux kernel's NBD client runs ext4 on portalbd, and what it wrote
# comes back byte for byte over a new connection.
# memory-mib: 2048
# timeout-s: 180

check "portalbd starts with a 1 GiB volume" portalbd_start --disk-size-gb 1
check "nbd-client connects to export 'portalbd'" nbd_connect /dev/nbd0
check_eq "kernel sees the device size" "$(dev_size /dev/nbd0)" 1073741824
check "mkfs.ext4 on /dev/nbd0" mkfs.ext4 -q -F /dev/nbd0
check "mount ext4" mount -t ext4 /dev/nbd0 /mnt

run random_file /tmp/data 10
sum=$(sha /tmp/data)
check "write 10 MiB of random data" cp /tmp/data /mnt/data
check "sync" sync
check "umount" umount /mnt
check "disconnect" nbd_disconnect /dev/nbd0
# Nothing may come from the guest's caches: every byte below is read from portalbd.
run drop_caches

check "reconnect" nbd_connect /dev/nbd0
check "mount again" mount -t ext4 /dev/nbd0 /mnt
check_eq "checksum of the data after reconnect" "$(sha /mnt/data)" "$sum"
check "umount" umount /mnt
check "e2fsck -fn is clean" e2fsck -fn /dev/nbd0
check "disconnect" nbd_disconnect /dev/nbd0
check "portalbd exits 0 on SIGTERM" portalbd_stop
